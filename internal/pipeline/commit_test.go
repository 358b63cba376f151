package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meterdb/meterdb/aggregate"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/store"
)

var now0 = time.Date(2026, 3, 10, 10, 30, 0, 0, time.UTC)

// faultLog wraps a Log: Append fails while fail is set, and the commits
// it hands out wait for release while hold is set.
type faultLog struct {
	Log
	fail    atomic.Bool
	hold    atomic.Bool
	release chan struct{}
}

func (f *faultLog) Append(g *store.Group, kvs []store.KVWrite) (commit, error) {
	if f.fail.Load() {
		return commit{}, fmt.Errorf("%w: injected", store.ErrUnavailable)
	}
	c, err := f.Log.Append(g, kvs)
	if err != nil || !f.hold.Load() {
		return c, err
	}
	// Deliver the commit only once released: a store whose fsync is slow.
	p := &heldCommit{done: make(chan struct{}), loc: c.loc}
	go func() { <-f.release; close(p.done) }()
	return commit{held: p, first: c.first}, nil
}

func newTestEngine(t *testing.T) (*Engine, *faultLog) {
	t.Helper()
	return newTestEngineWith(t, nil)
}

// newTestEngineWith is newTestEngine with its Config changed by set.
func newTestEngineWith(t *testing.T, set func(*Config)) (*Engine, *faultLog) {
	t.Helper()
	f := &faultLog{release: make(chan struct{})}
	cfg := Config{Shards: 4, DedupeWindow: 24 * time.Hour, CancelWindow: 24 * time.Hour,
		CheckpointInterval: time.Hour, Now: func() time.Time { return now0 }, Logger: slog.New(slog.DiscardHandler),
		wrapLog: func(l Log) Log { f.Log = l; return f }}
	if set != nil {
		set(&cfg)
	}
	e, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if _, err := e.CreateMeter(context.Background(), meter.Params{DisplayName: "calls", EventName: "calls", Formula: meter.Sum}); err != nil {
		t.Fatal(err)
	}
	return e, f
}

func usage(id, customer string, v int64) event.Usage {
	return event.Usage{Name: "calls", Customer: customer, Value: v, Identifier: id}
}

// total returns customer's sum on the meter over the day of now0.
func total(t *testing.T, e *Engine, customer string) int64 {
	t.Helper()
	reg, table, err := e.Enter()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Exit()
	m, _ := reg.Lookup("calls")
	day := now0.Truncate(24 * time.Hour).Unix()
	ws, err := table.Query(aggregate.Key{Meter: m.Seq, Customer: customer}, day, day+86400, aggregate.Total)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := ws[0].Value("sum").Int64()
	return v
}

// TestFailedAppendLeavesNoTrace checks invariant 1: a batch whose log
// write fails changes no aggregate and keeps no identifier, so that the
// same batch, retried, is recorded once.
func TestFailedAppendLeavesNoTrace(t *testing.T) {
	e, f := newTestEngine(t)
	batch := []event.Usage{usage("a", "c", 5), usage("b", "c", 7)}
	f.fail.Store(true)
	if _, err := e.Record(context.Background(), &Batch{Usages: batch}); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Record with a failing log: %v, want ErrUnavailable", err)
	}
	if got := total(t, e, "c"); got != 0 {
		t.Fatalf("total %d after a failed write, want 0", got)
	}
	f.fail.Store(false)
	errs, err := e.Record(context.Background(), &Batch{Usages: batch})
	if err != nil || errs[0] != nil || errs[1] != nil {
		t.Fatalf("retry: %v %v", errs, err)
	}
	if got := total(t, e, "c"); got != 12 {
		t.Fatalf("total %d after the retry, want 12", got)
	}
	if s := e.Stats(); s.Accepted != 2 || s.Duplicates != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestOneIdentifierOneEvent checks invariant 3: of many concurrent events
// with one identifier, exactly one is recorded.
func TestOneIdentifierOneEvent(t *testing.T) {
	e, _ := newTestEngine(t)
	var wg sync.WaitGroup
	var accepted, dups atomic.Int64
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs, err := e.Record(context.Background(), &Batch{Usages: []event.Usage{usage("same", "c", int64(i+1))}})
			switch {
			case err != nil:
				t.Error(err)
			case errs[0] == nil:
				accepted.Add(1)
			case errors.Is(errs[0], event.ErrDuplicate):
				dups.Add(1)
			default:
				t.Error(errs[0])
			}
		}()
	}
	wg.Wait()
	if accepted.Load() != 1 || dups.Load() != 31 {
		t.Fatalf("%d accepted and %d duplicates, want 1 and 31", accepted.Load(), dups.Load())
	}
}

// TestContextEndsWait checks that a cancelled context ends the wait for
// the commit, and that the commit, once it is over, is applied all the
// same: the event counts, and its identifier is taken.
func TestContextEndsWait(t *testing.T) {
	e, f := newTestEngine(t)
	f.hold.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := e.Record(ctx, &Batch{Usages: []event.Usage{usage("slow", "c", 3)}})
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Record after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		close(f.release) // let Close finish
		t.Fatal("Record kept waiting for the commit after its context was cancelled")
	}
	f.hold.Store(false)
	close(f.release)
	deadline := time.Now().Add(5 * time.Second)
	for total(t, e, "c") != 3 {
		if time.Now().After(deadline) {
			t.Fatal("the committed event was never applied")
		}
		time.Sleep(time.Millisecond)
	}
	errs, err := e.Record(context.Background(), &Batch{Usages: []event.Usage{usage("slow", "c", 3)}})
	if err != nil || !errors.Is(errs[0], event.ErrDuplicate) {
		t.Fatalf("resend of the committed event: %v %v, want duplicate", errs, err)
	}
}

// TestAllocsPerEvent checks that the typed path allocates per batch, not
// per event, in steady state. The dedupe index is sized ahead
// (DedupeMinEpoch) so that it does not grow during the measurement: while
// a window fills, a shard's new epoch allocates its table (three
// allocations in each of the 64 shards, at about the same batch), which
// is per epoch, not per event, and which the measurement would otherwise
// catch or miss depending on where the growth steps fall.
func TestAllocsPerEvent(t *testing.T) {
	e, _ := newTestEngineWith(t, func(c *Config) { c.DedupeMinEpoch = 4096 })
	next := 0
	perEvent := func(n int) float64 {
		us := make([]event.Usage, n)
		allocs := testing.AllocsPerRun(20, func() {
			for i := range us {
				us[i] = usage(ids[next%len(ids)], customers[next%len(customers)], 1)
				next++
			}
			errs, err := e.Record(context.Background(), &Batch{Usages: us})
			if err != nil || errs[0] != nil || errs[n-1] != nil {
				t.Fatal(errs[0], errs[n-1], err)
			}
		})
		return allocs / float64(n)
	}
	perEvent(1000) // warm the pools
	a := perEvent(1000)
	t.Logf("%.4f allocations per event", a)
	if a > 0.02 {
		t.Fatalf("%.3f allocations per event in batches of 1000, want none beyond the batch's own", a)
	}
}

var ids, customers = func() ([]string, []string) {
	ids := make([]string, 1<<16)
	for i := range ids {
		ids[i] = fmt.Sprintf("id-%08d", i)
	}
	cs := make([]string, 100)
	for i := range cs {
		cs[i] = fmt.Sprintf("cus_%03d", i)
	}
	return ids, cs
}()

// TestConcurrentPrunes runs writers whose clock moves a minute and more
// between reads, so that several of them win the right to prune at once
// and an in-memory database freezes days while others do: under -race it
// checks that prunes, and the freezes they run, are serialized.
func TestConcurrentPrunes(t *testing.T) {
	var clock atomic.Int64
	clock.Store(now0.Unix())
	now := func() time.Time { return time.Unix(clock.Add(61), 0) }
	e, err := Open(Config{Shards: 4, DedupeWindow: 24 * time.Hour, CancelWindow: 24 * time.Hour,
		CheckpointInterval: time.Hour, Now: now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := e.CreateMeter(context.Background(), meter.Params{DisplayName: "calls", EventName: "calls", Formula: meter.Sum}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				u := usage(fmt.Sprintf("w%d-%d", w, i), customers[i%len(customers)], 1)
				if errs, err := e.Record(context.Background(), &Batch{Usages: []event.Usage{u}}); err != nil || errs[0] != nil {
					t.Error(errs, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// 4,000 records move the clock by more than 60 days: days froze.
	_, table, err := e.Enter()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Exit()
	if h := table.Horizon(); h <= now0.Unix()-freezeAge {
		t.Fatalf("freeze horizon %d did not move past %d", h, now0.Unix()-freezeAge)
	}
}
