package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/internal/record"
	"github.com/meterdb/meterdb/internal/sharedlogtest"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/store"
)

// newCombiningReplica opens an in-memory replica of shared that appends
// one events record at a time, with a meter "calls" (sum).
func newCombiningReplica(t *testing.T, shared *sharedlogtest.Shared) *Engine {
	t.Helper()
	e, err := Open(Config{Shards: 4, DedupeWindow: 24 * time.Hour, CancelWindow: 24 * time.Hour,
		CheckpointInterval: time.Hour, Now: func() time.Time { return now0 }, Logger: slog.New(slog.DiscardHandler),
		Shared: shared.Client(), SnapshotInterval: time.Hour, SharedInflight: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if _, err := e.CreateMeter(context.Background(), meter.Params{DisplayName: "calls", EventName: "calls", Formula: meter.Sum}); err != nil {
		t.Fatal(err)
	}
	return e
}

// writerResult is what one writer's Record returned.
type writerResult struct {
	errs []error
	err  error
}

// startWriter records us in a goroutine of its own.
func startWriter(e *Engine, us ...event.Usage) chan writerResult {
	ch := make(chan writerResult, 1)
	go func() {
		errs, err := e.Record(context.Background(), &Batch{Usages: us})
		ch <- writerResult{errs, err}
	}()
	return ch
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// queued returns how many writers wait in e's combiner.
func queued(e *Engine) int {
	e.repl.mu.Lock()
	defer e.repl.mu.Unlock()
	return len(e.repl.comb.pending)
}

// holdAndQueue holds shared's appends, starts a first writer whose
// append is then in flight, and one writer after another for the rest,
// each queued before the next starts. It returns their results in order.
func holdAndQueue(t *testing.T, e *Engine, shared *sharedlogtest.Shared, batches ...[]event.Usage) []chan writerResult {
	t.Helper()
	shared.Hold()
	before := shared.Appends()
	chs := []chan writerResult{startWriter(e, batches[0]...)}
	waitFor(t, "the first append", func() bool { return shared.Appends() == before+1 })
	for i, b := range batches[1:] {
		chs = append(chs, startWriter(e, b...))
		waitFor(t, "a queued writer", func() bool { return queued(e) == i+1 })
	}
	return chs
}

// readRecord returns the record at pos of shared.
func readRecord(t *testing.T, shared *sharedlogtest.Shared, pos uint64) *record.Record {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got *record.Record
	shared.Client().Read(ctx, pos-1, func(p uint64, b []byte) error {
		r, err := record.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		got = r
		cancel()
		return nil
	})
	if got == nil {
		t.Fatalf("no record at %d", pos)
	}
	return got
}

// TestCombinedRecord checks the replicated group commit: writers that
// queue while an append is in flight go out as one record, and each gets
// the outcome of its own events, duplicates across writers included.
func TestCombinedRecord(t *testing.T) {
	shared := sharedlogtest.New()
	e := newCombiningReplica(t, shared)
	base, appends := shared.Last(), shared.Appends()

	chs := holdAndQueue(t, e, shared,
		[]event.Usage{usage("a1", "cus_a", 1)},
		[]event.Usage{usage("b1", "cus_b", 10), usage("b2", "cus_b", 20)},
		[]event.Usage{usage("c1", "cus_c", 100), usage("b1", "cus_c", 1000), {Name: "calls", Value: 1, Identifier: "c-invalid"}},
		[]event.Usage{usage("d1", "cus_d", 7)},
	)
	shared.Release()
	var res []writerResult
	for _, ch := range chs {
		res = append(res, <-ch)
	}
	for i, r := range res {
		if r.err != nil {
			t.Fatalf("writer %d: %v", i, r.err)
		}
	}
	for i, want := range [][]bool{{true}, {true, true}, {true, false, false}, {true}} {
		for k, ok := range want {
			if got := res[i].errs[k] == nil; got != ok {
				t.Errorf("writer %d event %d: error %v, want accepted %v", i, k, res[i].errs[k], ok)
			}
		}
	}
	if err := res[2].errs[1]; !errors.Is(err, event.ErrDuplicate) {
		t.Errorf("writer 2's copy of b1: %v, want a duplicate", err)
	}
	if err := res[2].errs[2]; err == nil || errors.Is(err, event.ErrDuplicate) {
		t.Errorf("writer 2's event without a customer: %v, want a validation error", err)
	}
	if got := shared.Appends() - appends; got != 2 {
		t.Fatalf("%d appends for a writer in flight and three queued, want 2", got)
	}
	if got := shared.Last() - base; got != 2 {
		t.Fatalf("%d records for a writer in flight and three queued, want 2", got)
	}
	rec := readRecord(t, shared, base+2)
	var ids []string
	for _, ev := range rec.Events {
		ids = append(ids, ev.Identifier)
	}
	if got := strings.Join(ids, ","); got != "b1,b2,c1,b1,d1" {
		t.Fatalf("the combined record holds %s, want b1,b2,c1,b1,d1", got)
	}
	for cus, want := range map[string]int64{"cus_a": 1, "cus_b": 30, "cus_c": 100, "cus_d": 7} {
		if got := total(t, e, cus); got != want {
			t.Errorf("%s: sum %d, want %d", cus, got, want)
		}
	}
}

// TestCombinedRecordFails checks that a failed append fails every writer
// of the record with ErrUnavailable and records none of them.
func TestCombinedRecordFails(t *testing.T) {
	shared := sharedlogtest.New()
	e := newCombiningReplica(t, shared)
	appends := shared.Appends()
	chs := holdAndQueue(t, e, shared,
		[]event.Usage{usage("e1", "cus_e", 1)},
		[]event.Usage{usage("f1", "cus_f", 2)},
		[]event.Usage{usage("g1", "cus_g", 3), usage("g2", "cus_g", 4)},
	)
	shared.SetAvailable(false)
	shared.Release()
	for i, ch := range chs {
		if r := <-ch; !errors.Is(r.err, store.ErrUnavailable) {
			t.Errorf("writer %d: %v, want ErrUnavailable", i, r.err)
		}
	}
	if got := shared.Appends() - appends; got != 2 {
		t.Fatalf("%d appends for a writer in flight and two queued, want 2", got)
	}
	shared.SetAvailable(true)
	errs, err := e.Record(context.Background(), &Batch{Usages: []event.Usage{usage("g1", "cus_g", 3), usage("g2", "cus_g", 4)}})
	if err != nil || errs[0] != nil || errs[1] != nil {
		t.Fatalf("the retry: %v %v", errs, err)
	}
	if got := total(t, e, "cus_g"); got != 7 {
		t.Fatalf("cus_g: sum %d after the retry, want 7", got)
	}
}

// TestCombinedRecordLimit checks that writers are combined only up to the
// log's record limit, cut between their batches, and that one batch above
// the limit fails alone.
func TestCombinedRecordLimit(t *testing.T) {
	shared := sharedlogtest.New()
	e := newCombiningReplica(t, shared)
	batch := func(p string, n int) []event.Usage {
		var us []event.Usage
		for i := range n {
			us = append(us, usage(p+strings.Repeat("x", 20)+string(rune('a'+i)), "cus_"+p, 1))
		}
		return us
	}
	// Room for one batch of 3 events, not two.
	limit := recordOverhead + 3*(eventOverhead+len("cus_h")+21) + 1
	shared.SetMaxRecord(limit)
	base := shared.Last()
	chs := holdAndQueue(t, e, shared, batch("h", 3), batch("i", 3), batch("j", 3), batch("k", 40))
	shared.Release()
	for i, ch := range chs {
		r := <-ch
		if i < 3 && (r.err != nil || r.errs[0] != nil) {
			t.Fatalf("writer %d: %v %v", i, r.errs, r.err)
		}
		if i == 3 && !errors.Is(r.err, sharedlogtest.ErrTooLarge) {
			t.Fatalf("a batch above the limit alone: %v, want the log's ErrTooLarge", r.err)
		}
	}
	if got := shared.Last() - base; got != 3 {
		t.Fatalf("%d records for three batches that fit one at a time, want 3", got)
	}
	for p := base + 1; p <= base+3; p++ {
		if n := len(readRecord(t, shared, p).Events); n != 3 {
			t.Fatalf("record %d holds %d events, want one batch of 3", p, n)
		}
	}
	if got := total(t, e, "cus_k"); got != 0 {
		t.Fatalf("cus_k: sum %d, want nothing of the batch too large", got)
	}
}
