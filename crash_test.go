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
		fmt.Println("error", err)
		os.Exit(3)
	}
	round := os.Getenv(crashRoundEnv)
	var outMu sync.Mutex
	report := func(format string, args ...any) {
		outMu.Lock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
		outMu.Unlock()
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), uint64(len(round))))
			var acked []string
			for i := 0; ; i++ {
				switch n := r.IntN(10); {
				case n == 0 && len(acked) > 0: // cancel an acknowledged event
					id := acked[r.IntN(len(acked))]
					report("cancelling %s", id) // the cancellation may commit even if the kill comes before its acknowledgement
					if err := db.Cancel(ctx, crashEvent, id); err == nil {
						report("cancel %s", id)
					} else if !errors.Is(err, event.ErrAlreadyCancelled) {
						report("error %v", err)
						os.Exit(4)
					}
				case n == 1: // a batch of five
					evs := make([]event.Event, 5)
					for j := range evs {
						evs[j] = crashEventOf(fmt.Sprintf("r%s-w%d-%d-%d", round, w, i, j))
					}
					errs, err := db.RecordBatch(ctx, evs)
					if err != nil {
						report("error %v", err)
						os.Exit(4)
					}
					for j, e := range errs {
						if e != nil {
							report("error %v", e)
							os.Exit(4)
						}
						report("ack %s", evs[j].Identifier)
						acked = append(acked, evs[j].Identifier)
					}
				default:
					id := fmt.Sprintf("r%s-w%d-%d", round, w, i)
					if _, err := db.Record(ctx, crashEventOf(id)); err != nil {
						report("error %v", err)
						os.Exit(4)
					}
					report("ack %s", id)
					acked = append(acked, id)
				}
			}
		}()
	}
	wg.Wait()
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
			kind, id, _ := strings.Cut(l.text, " ")
			switch kind {
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
				t.Fatalf("round %d: child failed: %s", round, l.text)
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

type crashLine struct {
	at   time.Time
	text string
}

// crashRun starts a child writing to path, kills it with SIGKILL after d,
// and returns the kill time and what it printed, each line with its
// arrival time.
func crashRun(t *testing.T, path, mode string, round int, d time.Duration) (time.Time, []crashLine) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path, crashModeEnv+"="+mode, crashRoundEnv+"="+strconv.Itoa(round))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []crashLine
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines = append(lines, crashLine{at: time.Now(), text: sc.Text()})
		}
	}()
	// Wait for the first acknowledgement (the child must have opened the
	// file), then for d.
	deadline := time.Now().Add(30 * time.Second)
	time.Sleep(d)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	killAt := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-done
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended by %v before the kill; output: %v", err, lines)
	}
	return killAt, lines
}
