package meterdb_test

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

var crashRounds = flag.Int("crash.rounds", 20, "kill points per durability mode in TestCrashRecovery")

const (
	crashChildEnv = "METERDB_CRASH_CHILD" // path of the database the child writes
	crashModeEnv  = "METERDB_CRASH_MODE"  // "sync" or "buffered"
	crashRoundEnv = "METERDB_CRASH_ROUND"
	crashEvent    = "crash_usage"
	crashFlush    = 20 * time.Millisecond
	// crashLossWindow is how long before the kill a buffered acknowledgement
	// may still be lost: the flush interval plus a generous commit time.
	crashLossWindow = 700 * time.Millisecond
)

// TestCrashChild is the child process of TestCrashRecovery; it does nothing
// unless started by it.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		t.Skip("runs only as the child of TestCrashRecovery")
	}
	opts := &meterdb.Options{CheckpointInterval: 30 * time.Millisecond, FlushInterval: crashFlush}
	if os.Getenv(crashModeEnv) == "buffered" {
		opts.Durability = meterdb.DurabilityBuffered
	}
	db, err := meterdb.Open(path, opts)
	if err != nil {
		fmt.Printf("%d error %v\n", time.Now().UnixNano(), err)
		os.Exit(3)
	}
	runWriters(db, writerConfig{round: os.Getenv(crashRoundEnv), writers: 4, minBatch: 5, maxBatch: 5})
}

// writerConfig says how runWriters writes.
type writerConfig struct {
	round              string        // in every identifier, unique per child
	writers            int           // goroutines
	minBatch, maxBatch int           // sizes of RecordBatch calls
	pace               time.Duration // each writer pauses up to this long before each call
	seed               uint64        // of the writers' choices
}

// runWriters writes to db from cfg.writers goroutines until the process
// is killed: one call in ten is a RecordBatch, one a Cancel of an event the
// writer had recorded, the others Record. Each event has its own customer
// (crashEventOf). Every step is reported on stdout as it happens, one line
// each, as "UNIXNANO KIND ARG": "try ID" before an event is written, "ack
// ID" once it is recorded, "cancelling ID" before a cancellation, "cancel
// ID" once it is acknowledged, and "error MESSAGE" for a failure, after
// which that writer stops. It never returns.
func runWriters(db *meterdb.DB, cfg writerConfig) {
	var outMu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	report := func(kind, arg string) {
		outMu.Lock()
		fmt.Fprintf(out, "%d %s %s\n", time.Now().UnixNano(), kind, arg)
		out.Flush()
		outMu.Unlock()
	}
	ctx := context.Background()
	for w := range cfg.writers {
		go func() {
			r := rand.New(rand.NewPCG(uint64(w), cfg.seed^uint64(len(cfg.round))))
			fail := func(err error) {
				report("error", err.Error())
				select {} // this writer stops; the process waits for its kill
			}
			var acked []string
			for i := 0; ; i++ {
				if cfg.pace > 0 {
					time.Sleep(time.Duration(r.Int64N(int64(cfg.pace))))
				}
				switch n := r.IntN(10); {
				case n == 0 && len(acked) > 0: // cancel an acknowledged event
					id := acked[r.IntN(len(acked))]
					report("cancelling", id) // the cancellation may commit even if the kill comes before its acknowledgement
					if err := db.Cancel(ctx, crashEvent, id); err == nil {
						report("cancel", id)
					} else if !errors.Is(err, event.ErrAlreadyCancelled) {
						fail(err)
					}
				case n == 1: // a batch
					evs := make([]event.Event, cfg.minBatch+r.IntN(cfg.maxBatch-cfg.minBatch+1))
					for j := range evs {
						evs[j] = crashEventOf(fmt.Sprintf("r%s-w%d-%d-%d", cfg.round, w, i, j))
						report("try", evs[j].Identifier)
					}
					errs, err := db.RecordBatch(ctx, evs)
					if err != nil {
						fail(err)
					}
					for j, e := range errs {
						if e != nil {
							fail(e)
						}
						report("ack", evs[j].Identifier)
						acked = append(acked, evs[j].Identifier)
					}
				default:
					id := fmt.Sprintf("r%s-w%d-%d", cfg.round, w, i)
					report("try", id)
					if _, err := db.Record(ctx, crashEventOf(id)); err != nil {
						fail(err)
					}
					report("ack", id)
					acked = append(acked, id)
				}
			}
		}()
	}
	select {}
}

// crashEventOf returns the event with identifier id: its own customer (so
// that a summary per customer shows whether it counts, and how often) and
// a value derived from the identifier.
func crashEventOf(id string) event.Event {
	return event.Event{Name: crashEvent, Identifier: id, Payload: map[string]string{
		"stripe_customer_id": "cus_" + id, "value": strconv.Itoa(crashValue(id)),
	}}
}

func crashValue(id string) int { return 1 + len(id)%7 }

// TestCrashRecovery kills a writing child process with SIGKILL at random
// moments, reopens the file and checks that every acknowledged event
// counts exactly once, cancelled ones not at all, and that nothing counts
// twice; with buffered durability only acknowledgements within the loss
// window before the kill may be missing.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	for _, mode := range []string{"sync", "buffered"} {
		t.Run("durability="+mode, func(t *testing.T) { crashRecovery(t, mode, *crashRounds) })
	}
}

type crashAck struct {
	at         time.Time
	cancelled  bool // the cancellation was acknowledged at cancelAt
	cancelAt   time.Time
	cancelling bool // a cancellation was started and not acknowledged
}

func crashRecovery(t *testing.T, mode string, rounds int) {
	path := filepath.Join(t.TempDir(), "crash.db")
	ctx := context.Background()
	db, err := meterdb.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := db.CreateMeter(ctx, meter.Params{DisplayName: "crash", EventName: crashEvent, Formula: meter.Sum})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	acks := map[string]*crashAck{}
	for round := range rounds {
		killAt, lines := crashRun(t, path, mode, round, 50*time.Millisecond+time.Duration(rng.IntN(int(600*time.Millisecond))))
		for _, l := range lines {
			switch kind, id := l.kind, l.arg; kind {
			case "ack":
				acks[id] = &crashAck{at: l.at}
			case "cancelling", "cancel":
				a := acks[id]
				if a == nil {
					t.Fatalf("round %d: cancel of unknown identifier %s", round, id)
				}
				a.cancelling = kind == "cancelling"
				if kind == "cancel" {
					a.cancelled, a.cancelAt = true, l.at
				}
			case "error":
				t.Fatalf("round %d: child failed: %s", round, id)
			}
		}
		db, err := meterdb.Open(path, nil)
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		checked := 0
		for id, a := range acks {
			count, value := crashCount(t, db, m.ID, id)
			mayBeLost := mode == "buffered" && killAt.Sub(a.at) < crashLossWindow
			cancelMayBeLost := mode == "buffered" && a.cancelled && killAt.Sub(a.cancelAt) < crashLossWindow
			switch {
			case count > 1:
				t.Fatalf("round %d: event %s counted %d times", round, id, count)
			case count == 1 && value != int64(crashValue(id)):
				t.Fatalf("round %d: event %s has value %d, want %d", round, id, value, crashValue(id))
			case a.cancelled && count == 1 && !cancelMayBeLost:
				t.Fatalf("round %d: cancelled event %s still counts (cancel acknowledged %v before the kill)", round, id, killAt.Sub(a.cancelAt))
			case !a.cancelled && count == 0 && !mayBeLost && !a.cancelling:
				t.Fatalf("round %d: acknowledged event %s lost (acknowledged %v before the kill)", round, id, killAt.Sub(a.at))
			}
			switch {
			case count == 0 && mayBeLost:
				// The event may be lost within the loss window (or cancelled):
				// whether its identifier is taken is unknown, so it is no
				// longer tracked.
				delete(acks, id)
			case count == 0 && a.cancelling:
				a.cancelled = true // the cancellation committed before the kill
			case count == 1 && a.cancelled:
				a.cancelled = false // the cancellation was lost within the loss window
			}
			a.cancelling = false
			checked++
		}
		// An identifier that survived must be taken: recording it again is a
		// duplicate, whether or not its event was cancelled.
		n := 0
		for id := range acks {
			if n == 5 {
				break
			}
			n++
			ev := crashEventOf(id)
			ev.Payload["stripe_customer_id"] = "cus_dupcheck"
			if _, err := db.Record(ctx, ev); !errors.Is(err, event.ErrDuplicate) {
				t.Fatalf("round %d: re-recording %s after reopen: got %v, want a duplicate error", round, id, err)
			}
		}
		if c, _ := crashCount(t, db, m.ID, "dupcheck"); c != 0 {
			t.Fatalf("round %d: %d duplicates were counted", round, c)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: killed after %d lines, %d acknowledged events checked", round, len(lines), checked)
	}
}

// crashCount returns the count and sum of customer cus_<id>.
func crashCount(t *testing.T, db *meterdb.DB, meterID, id string) (int64, int64) {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Hour)
	s, err := db.Summaries(context.Background(), meterdb.SummaryParams{
		Meter: meterID, Customer: "cus_" + id, Start: now.Add(-36 * 24 * time.Hour), End: now.Add(2 * time.Hour),
	})
	if err != nil || len(s) != 1 {
		t.Fatalf("summary of %s: %v %v", id, s, err)
	}
	v, _ := s[0].Value.Int64()
	return s[0].Count, v
}

// crashLine is a line of a child's output: "UNIXNANO KIND ARG" (see
// runWriters), or anything else, which has the time it arrived and the
// whole line as kind.
type crashLine struct {
	at        time.Time
	kind, arg string
}

func parseCrashLine(text string) crashLine {
	stamp, rest, _ := strings.Cut(text, " ")
	ns, err := strconv.ParseInt(stamp, 10, 64)
	if err != nil {
		return crashLine{at: time.Now(), kind: text}
	}
	kind, arg, _ := strings.Cut(rest, " ")
	return crashLine{at: time.Unix(0, ns), kind: kind, arg: arg}
}

func (l crashLine) String() string {
	return fmt.Sprintf("%s %s %s", l.at.Format("15:04:05.000000"), l.kind, l.arg)
}

// child is a child process: the test binary running one test, with its
// output collected line by line.
type child struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []crashLine
	first chan struct{} // closed at the first line
	done  chan struct{} // closed at the end of the output
}

// startChild runs the test binary as a child running only test, with env
// added to the environment.
func startChild(t *testing.T, test string, env ...string) *child {
	t.Helper()
	c := &child{first: make(chan struct{}), done: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	c.cmd.Env = append(os.Environ(), env...)
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stderr = os.Stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // a test that fails half way leaves no process
		if c.cmd.ProcessState == nil {
			c.cmd.Process.Kill()
			c.cmd.Wait()
		}
	})
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.mu.Lock()
			c.lines = append(c.lines, parseCrashLine(sc.Text()))
			if len(c.lines) == 1 {
				close(c.first)
			}
			c.mu.Unlock()
		}
	}()
	return c
}

// waitFirst waits for the child's first line, or its end, or timeout.
func (c *child) waitFirst(timeout time.Duration) bool {
	select {
	case <-c.first:
		return true
	case <-c.done:
	case <-time.After(timeout):
	}
	return false
}

// kill ends the child with SIGKILL and returns all it printed. The child
// must not have ended before.
func (c *child) kill(t *testing.T) []crashLine {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.done
	err := c.cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended by %v before the kill; output: %v", err, c.lines)
	}
	return c.lines
}

// crashRun starts a child writing to path, kills it with SIGKILL after d,
// and returns the kill time and what it printed.
func crashRun(t *testing.T, path, mode string, round int, d time.Duration) (time.Time, []crashLine) {
	t.Helper()
	c := startChild(t, "TestCrashChild", crashChildEnv+"="+path, crashModeEnv+"="+mode, crashRoundEnv+"="+strconv.Itoa(round))
	time.Sleep(d) // which may end the child before it has opened the file

	killAt := time.Now()
	return killAt, c.kill(t)
}
