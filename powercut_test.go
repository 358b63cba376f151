package meterdb_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/internal/lazyfs"
	"github.com/meterdb/meterdb/meter"
)

var (
	powercutCuts = flag.Int("powercut.cuts", 0, "power cuts in TestPowerCut, across both durability modes; 0 means $METERDB_POWERCUT_CUTS, or else 20")
	powercutSeed = flag.Uint64("powercut.seed", 0, "seed of TestPowerCut; 0 means $METERDB_POWERCUT_SEED, or else a random one")
	powercutTorn = flag.Bool("powercut.torn", true, "let half of TestPowerCut's cuts write back a random half of the unsynced blocks; false: every cut drops them all")
)

const (
	powercutChildEnv = "METERDB_POWERCUT_CHILD" // the child's powercutConfig, as JSON
	// powercutEpoch is how many cuts one store file goes through before
	// the next cut starts a new one: Open reads every identifier of the
	// last 24 hours, so a store that kept growing would make each cut
	// slower than the last.
	powercutEpoch = 10
	// powercutCommitAllowance is, with buffered durability, how long past
	// Options.FlushInterval an acknowledged write may still be lost: the
	// "one commit" of the documented loss window, generously. A commit on
	// the mount takes milliseconds, but a loaded machine can stall the
	// child or the file system for longer: the window also grows by twice
	// the longest time the child's store went without completing an fsync
	// (a write that arrives during a commit waits for it, then for the
	// flush interval, then for its own commit).
	powercutCommitAllowance = 300 * time.Millisecond
)

// powercutConfig is one power cut: how the child writes, and when and how
// the power is cut.
type powercutConfig struct {
	Cut                int
	Path               string // the store, on the mount
	Buffered           bool
	Writers            int
	MinBatch, MaxBatch int
	Pace               time.Duration // writers pause up to this long between calls
	Flush              time.Duration // Options.FlushInterval
	Checkpoint         time.Duration // Options.CheckpointInterval
	MaxBatchSize       int           // Options.MaxBatchSize
	Seed               uint64        // of the writers
	CreateMeter        bool          // the child creates the meter (and the store)
	// Parent only:
	SyncDelay time.Duration // lazyfs.Options.SyncDelay: fsync latency
	CutAfter  time.Duration // after the child opened the store, the cut is armed
	// Trigger is what cuts the power once armed: "now" (the child is
	// stopped, then the power cut), "fsync" (the TriggerN-th fsync request
	// from then on, before it takes effect: written data is then never
	// durable yet) or "write" (the TriggerN-th write, within a commit). The
	// child runs on until killed, seeing its requests fail. Without the
	// trigger within powercutTriggerWait the power is cut anyway.
	Trigger  string
	TriggerN int
	Torn     bool // the disk wrote back a random half of the unsynced blocks
}

const powercutTriggerWait = 300 * time.Millisecond

func (c powercutConfig) mode() string {
	if c.Buffered {
		return "buffered"
	}
	return "sync"
}

func (c powercutConfig) String() string {
	return fmt.Sprintf("cut %d: durability=%s writers=%d batch=%d..%d pace=%v flush=%v checkpoint=%v max-batch-size=%d sync-delay=%v cut-after=%v trigger=%s/%d torn=%v",
		c.Cut, c.mode(), c.Writers, c.MinBatch, c.MaxBatch, c.Pace, c.Flush, c.Checkpoint, c.MaxBatchSize, c.SyncDelay, c.CutAfter, c.Trigger, c.TriggerN, c.Torn)
}

// TestPowerCutChild is the child process of TestPowerCut; it does nothing
// unless started by it. It opens the store on the lazy mount, says "open",
// and writes (runWriters) until it is killed.
func TestPowerCutChild(t *testing.T) {
	js := os.Getenv(powercutChildEnv)
	if js == "" {
		t.Skip("runs only as the child of TestPowerCut")
	}
	var c powercutConfig
	if err := json.Unmarshal([]byte(js), &c); err != nil {
		t.Fatal(err)
	}
	opts := &meterdb.Options{FlushInterval: c.Flush, CheckpointInterval: c.Checkpoint, MaxBatchSize: c.MaxBatchSize}
	if c.Buffered {
		opts.Durability = meterdb.DurabilityBuffered
	}
	db, err := meterdb.Open(c.Path, opts)
	if err != nil {
		fmt.Printf("%d error opening: %v\n", time.Now().UnixNano(), err)
		select {}
	}
	if c.CreateMeter {
		if _, err := db.CreateMeter(context.Background(), meter.Params{DisplayName: "powercut", EventName: crashEvent, Formula: meter.Sum}); err != nil {
			fmt.Printf("%d error creating the meter: %v\n", time.Now().UnixNano(), err)
			select {}
		}
	}
	fmt.Printf("%d open %s\n", time.Now().UnixNano(), c.Path)
	runWriters(db, writerConfig{round: strconv.Itoa(c.Cut), writers: c.Writers, minBatch: c.MinBatch, maxBatch: c.MaxBatch, pace: c.Pace, seed: c.Seed})
}

// pcEvent is what the parent knows of one identifier.
type pcEvent struct {
	cut        int
	buffered   bool      // written with buffered durability
	acked      bool      // the write was acknowledged, at ackAt
	ackAt      time.Time //
	cancelling bool      // a cancellation was started
	cancelled  bool      // ... and acknowledged, at cancelAt
	cancelAt   time.Time //
	count      int64     // how often the store counts it, as last checked (0 or 1)
}

// powercutRun is the state of TestPowerCut across its cuts.
type powercutRun struct {
	t          *testing.T
	seed       uint64
	rng        *rand.Rand
	backing    string
	mountpoint string
	file       string // the current store, in backing (on the mount, in mountpoint)
	meter      string
	events     map[string]*pcEvent // of the current store
	ids        []string            // every key of events, for sampling
	totals     struct {
		cuts, acked, cancelsAcked, lostBuffered, inFlightKept, inFlightLost, reused, taken, errorsAfterCut, dirtyCuts int
		maxLostAge, maxLostOver, maxGap                                                                               time.Duration
		fsyncs, dropped, kept                                                                                         int64
	}
}

func powercutCount() int {
	if *powercutCuts > 0 {
		return *powercutCuts
	}
	if v := os.Getenv("METERDB_POWERCUT_CUTS"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return n
		}
	}
	return 20
}

func powercutSeedValue() uint64 {
	if *powercutSeed != 0 {
		return *powercutSeed
	}
	if v := os.Getenv("METERDB_POWERCUT_SEED"); v != "" {
		if n, err := strconv.ParseUint(v, 10, 64); err == nil {
			return n
		}
	}
	return rand.Uint64()
}

// TestPowerCut cuts the power of a machine while a child process writes to
// a store, with a FUSE file system (internal/lazyfs) that loses whatever
// was not fsynced. At a random moment the parent arms the cut: it stops
// the child and cuts at once, or cuts at the child's n-th next fsync
// request (before it takes effect) or n-th next write, so that many cuts
// find a commit half done. Every unsynced write is dropped (on some cuts
// the disk is taken to have written back a random half of them); the
// parent kills the child, unmounts, and opens the store from what was
// synced. Against the child's acknowledgements it checks that with
// DurabilitySync no acknowledged event or cancellation is lost; that with
// DurabilityBuffered nothing acknowledged before the loss window is
// (Options.FlushInterval plus one commit: powercutCommitAllowance, plus
// twice the longest time the store went without completing an fsync);
// that nothing counts twice in either mode (an event written but not
// acknowledged counts at most once); that the identifiers of events that
// survived are taken and those of lost events are free; that events of
// earlier cuts are unchanged; and that the store opens again after more
// writes. A store file goes through powercutEpoch cuts; the mode (half of
// the cuts each), the writers, batch sizes, fsync latency, options and the
// moment and kind of the cut are drawn from the seed.
//
// -powercut.cuts (or METERDB_POWERCUT_CUTS) sets the number of cuts, 20 by
// default; -powercut.seed (or METERDB_POWERCUT_SEED) draws the same
// choices again (timing still differs). It needs root and /dev/fuse, and
// skips without them unless CI=true.
func TestPowerCut(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes on a FUSE mount")
	}
	if err := lazyfs.Check(); err != nil {
		lazyfs.Unavailable(t, err)
	}
	cuts, seed := powercutCount(), powercutSeedValue()
	t.Logf("%d cuts, seed %d", cuts, seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("failed with seed %d: go test -run '^TestPowerCut$' -powercut.seed=%d -powercut.cuts=%d .", seed, seed, cuts)
		}
	})
	r := &powercutRun{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, 0x70c)), events: map[string]*pcEvent{}}
	// The mount point is made before any mount's cleanup is registered, so
	// it is removed after every unmount.
	r.backing, r.mountpoint = t.TempDir(), t.TempDir()

	// Half of the cuts in each mode, in random order.
	modes := make([]bool, cuts)
	for i := range modes {
		modes[i] = i%2 == 1
	}
	r.rng.Shuffle(len(modes), func(i, j int) { modes[i], modes[j] = modes[j], modes[i] })
	start := time.Now()
	for cut, buffered := range modes {
		if cut%powercutEpoch == 0 {
			if cut > 0 {
				r.checkAll()
			}
			r.newStore(cut / powercutEpoch)
		}
		r.cut(r.config(cut, buffered))
	}
	r.checkAll()
	tt := r.totals
	t.Logf("%d cuts (%d with unsynced data to drop) in %v: %d events and %d cancellations acknowledged; with buffered durability %d acknowledged events lost within the window (the oldest %v before the cut, at most %v past its flush interval; the longest the store went without an fsync was %v); of the events written but not acknowledged %d survived and %d were lost; %d lost identifiers recorded again, %d surviving ones refused as duplicates; the child saw %d failures after the cut; %d fsyncs; %d unsynced bytes dropped, %d written back by torn cuts",
		tt.cuts, tt.dirtyCuts, time.Since(start).Round(time.Millisecond), tt.acked, tt.cancelsAcked, tt.lostBuffered, tt.maxLostAge.Round(time.Millisecond), tt.maxLostOver.Round(time.Millisecond), tt.maxGap.Round(time.Millisecond),
		tt.inFlightKept, tt.inFlightLost, tt.reused, tt.taken, tt.errorsAfterCut, tt.fsyncs, tt.dropped, tt.kept)
}

// newStore starts the store file of an epoch. The store and its meter are
// made in the backing directory: this process must not map a file of a
// mount it serves itself. (TestPowerCutNewFile creates a store on the
// mount.)
func (r *powercutRun) newStore(epoch int) {
	r.file = fmt.Sprintf("powercut-%d.db", epoch)
	db, err := meterdb.Open(filepath.Join(r.backing, r.file), nil)
	if err != nil {
		r.t.Fatal(err)
	}
	m, err := db.CreateMeter(context.Background(), meter.Params{DisplayName: "powercut", EventName: crashEvent, Formula: meter.Sum})
	if err != nil {
		r.t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		r.t.Fatal(err)
	}
	r.meter, r.events, r.ids = m.ID, map[string]*pcEvent{}, nil
}

// config draws the parameters of one cut.
func (r *powercutRun) config(cut int, buffered bool) powercutConfig {
	rng := r.rng
	c := powercutConfig{
		Cut: cut, Path: filepath.Join(r.mountpoint, r.file), Buffered: buffered,
		Writers:    1 + rng.IntN(8),
		Flush:      time.Duration(5+rng.IntN(46)) * time.Millisecond,
		Checkpoint: time.Duration(20+rng.IntN(31)) * time.Millisecond,
		Seed:       rng.Uint64(),
		SyncDelay:  []time.Duration{0, 0, 200 * time.Microsecond, time.Millisecond, 3 * time.Millisecond}[rng.IntN(5)],
		Torn:       rng.IntN(2) == 0 && *powercutTorn,
	}
	c.MinBatch = 1 + rng.IntN(5)
	c.MaxBatch = c.MinBatch + rng.IntN(40)
	if rng.IntN(2) == 0 {
		c.MaxBatchSize = 50 + rng.IntN(2000)
	}
	if buffered {
		// Unthrottled buffered writers would only fill memory: they pace
		// themselves to a few thousand events a second.
		c.Pace = time.Duration(200+rng.IntN(1800)) * time.Microsecond
	} else if rng.IntN(3) == 0 {
		c.Pace = time.Duration(rng.IntN(500)) * time.Microsecond
	}
	// Half of the cuts come at an fsync: a commit's data is written, not
	// yet durable, and acknowledging it now would be a bug.
	switch c.Trigger = []string{"now", "fsync", "fsync", "write"}[rng.IntN(4)]; c.Trigger {
	case "fsync":
		c.TriggerN = 1 + rng.IntN(5)
	case "write":
		c.TriggerN = 1 + rng.IntN(30)
	}
	switch rng.IntN(4) {
	case 0: // early: the first commits, before the first checkpoint
		c.CutAfter = time.Duration(rng.IntN(60)) * time.Millisecond
	case 1: // late: checkpoints ran, the file grew
		c.CutAfter = time.Duration(300+rng.IntN(500)) * time.Millisecond
	default:
		c.CutAfter = time.Duration(rng.IntN(400)) * time.Millisecond
	}
	return c
}

// cut runs one child on a fresh mount, cuts the power, and checks the
// store against what the child acknowledged.
func (r *powercutRun) cut(c powercutConfig) {
	t := r.t
	lfs, err := lazyfs.Mount(r.mountpoint, r.backing, &lazyfs.Options{SyncDelay: c.SyncDelay})
	if err != nil {
		if c.Cut == 0 {
			lazyfs.Unavailable(t, err)
		}
		t.Fatalf("%v: %v", c, err)
	}
	t.Cleanup(func() { lfs.Unmount() }) // for a test that fails before the unmount below
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	ch := startChild(t, "TestPowerCutChild", powercutChildEnv+"="+string(js))
	if !ch.waitFirst(60 * time.Second) {
		t.Fatalf("%v: the child said nothing; output: %v", c, ch.lines)
	}
	opened := time.Now()
	time.Sleep(c.CutAfter)
	armed := time.Now()

	// The power cut: unsynced data is gone.
	var keep func(int64) bool
	if c.Torn {
		torn := rand.New(rand.NewPCG(r.rng.Uint64(), 1))
		keep = func(int64) bool { return torn.IntN(2) == 0 }
	}
	cut := func() {
		if err := lfs.PowerCutKeeping(keep); err != nil {
			t.Fatalf("%v: power cut: %v", c, err)
		}
	}
	switch c.Trigger {
	case "now": // the child stops at once
		if err := ch.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		cut()
	default:
		target, n := lazyfs.OpFsync, c.TriggerN
		if c.Trigger == "write" {
			target = lazyfs.OpWrite
		}
		lfs.ArmCut(func(op lazyfs.Op) bool {
			if op == target {
				n--
			}
			return n == 0
		}, keep)
		select {
		case <-lfs.Cut():
		case <-time.After(powercutTriggerWait):
			cut()
		}
	}
	cutAt := lfs.CutTime()
	cutDone := time.Now()
	lines := ch.kill(t)
	if err := lfs.Unmount(); err != nil {
		t.Fatalf("%v: %v", c, err)
	}
	st := lfs.Stats()
	r.totals.cuts++
	r.totals.fsyncs += st.Fsyncs
	r.totals.dropped += st.DroppedBytes
	r.totals.kept += st.KeptBytes
	if st.DroppedBytes+st.KeptBytes > 0 {
		r.totals.dirtyCuts++
	}

	// What the child said.
	touched := map[string]*pcEvent{}
	get := func(id string) *pcEvent {
		e := touched[id]
		if e == nil {
			if r.events[id] != nil {
				t.Fatalf("%v: identifier %s was used by an earlier cut", c, id)
			}
			e = &pcEvent{cut: c.Cut, buffered: c.Buffered}
			touched[id] = e
		}
		return e
	}
	for _, l := range lines {
		switch l.kind {
		case "open":
		case "try":
			get(l.arg)
		case "ack":
			e := get(l.arg)
			e.acked, e.ackAt = true, l.at
			r.totals.acked++
		case "cancelling":
			get(l.arg).cancelling = true
		case "cancel":
			e := get(l.arg)
			e.cancelled, e.cancelAt = true, l.at
			r.totals.cancelsAcked++
		case "error":
			if l.at.Before(cutAt) {
				t.Fatalf("%v: the child failed before the cut: %s", c, l.arg)
			}
			r.totals.errorsAfterCut++
		default:
			t.Fatalf("%v: unexpected output from the child: %q", c, l.kind+" "+l.arg)
		}
	}
	fail := func(format string, args ...any) {
		t.Helper()
		tail := lines[max(0, len(lines)-20):]
		t.Fatalf("%v (cut at %s; file system %+v):\n%s\nthe child's last lines: %v", c, cutAt.Format("15:04:05.000000"), st, fmt.Sprintf(format, args...), tail)
	}

	// What the store holds. A file whose pages lie past its end (a lost
	// size) faults bbolt's map: a panic then, which Open reports as
	// corrupt, rather than the end of the test process.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	path := filepath.Join(r.backing, r.file)
	db, err := meterdb.Open(path, nil)
	if err != nil {
		fail("reopening after the cut: %v", err)
	}
	// The loss window with buffered durability, stretched by the longest
	// stall of the store's fsyncs.
	var openAt time.Time
	if len(lines) > 0 && lines[0].kind == "open" {
		openAt = lines[0].at
	}
	var maxGap time.Duration
	prev := openAt
	for _, at := range append(lfs.SyncTimes(), cutAt) {
		if at.After(prev) {
			maxGap = max(maxGap, at.Sub(prev))
			prev = at
		}
	}
	window := c.Flush + powercutCommitAllowance + 2*maxGap
	r.totals.maxGap = max(r.totals.maxGap, maxGap)
	ids := slices.Sorted(func(yield func(string) bool) {
		for id := range touched {
			if !yield(id) {
				return
			}
		}
	})
	var taken, free []string
	for _, id := range ids {
		e := touched[id]
		count, value := crashCount(t, db, r.meter, id)
		durable := e.acked && (!c.Buffered || cutAt.Sub(e.ackAt) > window)
		cancelDurable := e.cancelled && (!c.Buffered || cutAt.Sub(e.cancelAt) > window)
		switch {
		case count > 1:
			fail("event %s counted %d times", id, count)
		case count == 1 && value != int64(crashValue(id)):
			fail("event %s has value %d, want %d", id, value, crashValue(id))
		case count == 1 && cancelDurable:
			fail("the cancellation of event %s was lost (acknowledged %v before the cut, durability %s, loss window %v)", id, cutAt.Sub(e.cancelAt), c.mode(), window)
		case count == 0 && durable && !e.cancelling:
			fail("acknowledged event %s lost (acknowledged %v before the cut, durability %s, loss window %v)", id, cutAt.Sub(e.ackAt), c.mode(), window)
		}
		switch {
		case count == 0 && e.acked && !e.cancelling:
			r.totals.lostBuffered++
			r.totals.maxLostAge = max(r.totals.maxLostAge, cutAt.Sub(e.ackAt))
			r.totals.maxLostOver = max(r.totals.maxLostOver, cutAt.Sub(e.ackAt)-c.Flush)
		case !e.acked && count == 1:
			r.totals.inFlightKept++
		case !e.acked && count == 0:
			r.totals.inFlightLost++
		}
		if count == 1 || (durable && e.cancelling) {
			taken = append(taken, id) // its event is in the store, counted or cancelled
		} else if !e.cancelling {
			free = append(free, id) // its event is not in the store
		}
		e.count = count
		r.events[id] = e
		r.ids = append(r.ids, id)
	}
	if len(ids) == 0 {
		t.Logf("%v: no event was written before the cut", c)
	}

	// Identifiers: a surviving event's is taken, a lost event's is free
	// (a lost write leaves no trace).
	ctx := context.Background()
	for _, i := range r.sample(len(taken), 5) {
		ev := crashEventOf(taken[i])
		ev.Payload["stripe_customer_id"] = "cus_dupcheck"
		if _, err := db.Record(ctx, ev); !errors.Is(err, event.ErrDuplicate) {
			fail("recording %s again after the cut: %v, want a duplicate error", taken[i], err)
		}
		r.totals.taken++
	}
	for _, i := range r.sample(len(free), 5) {
		if _, err := db.Record(ctx, crashEventOf(free[i])); err != nil {
			fail("recording the lost event %s again: %v", free[i], err)
		}
		r.events[free[i]].count = 1
		r.totals.reused++
	}
	if n, _ := crashCount(t, db, r.meter, "dupcheck"); n != 0 {
		fail("%d duplicates were counted", n)
	}
	// Events of earlier cuts are as they were.
	if older := len(r.ids) - len(ids); older > 0 {
		for _, i := range r.sample(older, 100) {
			r.checkEvent(db, r.ids[i], fail)
		}
	}

	// A second Open after more writes: new events and a cancellation.
	var added []string
	for k := range 3 {
		id := fmt.Sprintf("p%d-%d", c.Cut, k)
		if _, err := db.Record(ctx, crashEventOf(id)); err != nil {
			fail("recording %s after the cut: %v", id, err)
		}
		r.events[id] = &pcEvent{cut: c.Cut, acked: true, count: 1}
		r.ids = append(r.ids, id)
		added = append(added, id)
	}
	if len(taken) > 0 {
		id := taken[r.rng.IntN(len(taken))]
		switch err := db.Cancel(ctx, crashEvent, id); {
		case err == nil:
			r.events[id].count = 0
			added = append(added, id)
		case errors.Is(err, event.ErrAlreadyCancelled) && r.events[id].count == 0:
		default:
			fail("cancelling %s after the cut: %v", id, err)
		}
	}
	if err := db.Close(); err != nil {
		fail("closing: %v", err)
	}
	if db, err = meterdb.Open(path, nil); err != nil {
		fail("second open: %v", err)
	}
	for _, id := range added {
		r.checkEvent(db, id, fail)
	}
	if err := db.Close(); err != nil {
		fail("closing: %v", err)
	}
	t.Logf("%v: %d lines, %d identifiers checked; loss window %v; %d fsyncs, %d unsynced bytes in %d files dropped, %d written back; child up in %v, cut %v after arming, checked in %v",
		c, len(lines), len(ids), window.Round(time.Millisecond), st.Fsyncs, st.DroppedBytes, st.DroppedFiles, st.KeptBytes,
		opened.Sub(started).Round(time.Millisecond), cutDone.Sub(armed).Round(time.Millisecond), time.Since(cutDone).Round(time.Millisecond))
}

// checkEvent checks that id counts as often as last seen.
func (r *powercutRun) checkEvent(db *meterdb.DB, id string, fail func(string, ...any)) {
	e := r.events[id]
	count, value := crashCount(r.t, db, r.meter, id)
	if count != e.count || (count == 1 && value != int64(crashValue(id))) {
		fail("event %s (of cut %d) counts %d times with value %d, want %d times", id, e.cut, count, value, e.count)
	}
}

// sample returns up to k distinct indexes below n.
func (r *powercutRun) sample(n, k int) []int {
	if n <= k {
		return slices.Collect(func(yield func(int) bool) {
			for i := range n {
				if !yield(i) {
					return
				}
			}
		})
	}
	return r.rng.Perm(n)[:k]
}

// checkAll checks every event written to the current store once more.
func (r *powercutRun) checkAll() {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	db, err := meterdb.Open(filepath.Join(r.backing, r.file), nil)
	if err != nil {
		r.t.Fatalf("final open of %s: %v", r.file, err)
	}
	defer db.Close()
	fail := func(format string, args ...any) {
		r.t.Helper()
		r.t.Fatalf("final check: "+format, args...)
	}
	for _, id := range r.ids {
		r.checkEvent(db, id, fail)
	}
	if n, _ := crashCount(r.t, db, r.meter, "dupcheck"); n != 0 {
		fail("%d duplicates were counted", n)
	}
}

// TestPowerCutNewFile has a child create a store on the lazy mount and
// record events with sync durability, and cuts the power: the events
// acknowledged must survive, which needs the new file's name to be durable
// too, that is Open to sync the directory of a file it creates (lazyfs
// drops a created name unless its directory was synced: see its package
// documentation).
func TestPowerCutNewFile(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process on a FUSE mount")
	}
	backing := t.TempDir()
	lfs := lazyfs.MountTest(t, backing, nil)
	c := powercutConfig{Path: filepath.Join(lfs.Mountpoint(), "new.db"), Writers: 2, MinBatch: 1, MaxBatch: 3,
		Checkpoint: 20 * time.Millisecond, CreateMeter: true}
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	ch := startChild(t, "TestPowerCutChild", powercutChildEnv+"="+string(js))
	if !ch.waitFirst(60 * time.Second) {
		t.Fatalf("the child said nothing; output: %v", ch.lines)
	}
	time.Sleep(200 * time.Millisecond)
	if err := ch.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := lfs.PowerCut(); err != nil {
		t.Fatal(err)
	}
	lines := ch.kill(t)
	if err := lfs.Unmount(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	for _, l := range lines {
		switch l.kind {
		case "ack":
			acked = append(acked, l.arg)
		case "error":
			t.Fatalf("the child failed: %s", l.arg)
		}
	}
	if len(acked) == 0 {
		t.Fatal("no event was acknowledged before the cut")
	}
	path := filepath.Join(backing, "new.db")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the new store is gone after the cut, with the %d events acknowledged in it: %v", len(acked), err)
	}
	db, err := meterdb.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m, err := db.MeterByEventName(context.Background(), crashEvent)
	if err != nil {
		t.Fatalf("the meter is gone after the cut: %v", err)
	}
	for _, id := range acked {
		if n, _ := crashCount(t, db, m.ID, id); n == 0 && !slices.ContainsFunc(lines, func(l crashLine) bool { return l.kind == "cancelling" && l.arg == id }) {
			t.Fatalf("acknowledged event %s lost", id)
		}
	}
}
