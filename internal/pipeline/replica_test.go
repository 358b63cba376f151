package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/meterdb/meterdb/internal/record"
	"github.com/meterdb/meterdb/internal/sharedlogtest"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/store"
)

// newReplica opens an in-memory replica of shared, its clock at now0.
func newReplica(t *testing.T, shared *sharedlogtest.Shared) *Engine {
	t.Helper()
	e, err := Open(Config{Shards: 4, DedupeWindow: 24 * time.Hour, CancelWindow: 24 * time.Hour,
		CheckpointInterval: time.Hour, Now: func() time.Time { return now0 }, Logger: slog.New(slog.DiscardHandler),
		Shared: shared.Client(), SnapshotInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// TestApplyForeignRecords appends records as another process would and
// checks what the replica makes of them: events of another writer are
// applied with that writer's stamp, and a record that fails its checksum
// stops the applier (Ready reports it) rather than being skipped.
func TestApplyForeignRecords(t *testing.T) {
	ctx := context.Background()
	shared := sharedlogtest.New()
	e := newReplica(t, shared)
	if _, err := e.CreateMeter(ctx, meter.Params{DisplayName: "calls", EventName: "calls", Formula: meter.Sum}); err != nil {
		t.Fatal(err)
	}
	other := shared.Client()
	stamp := now0.Add(time.Hour).Unix() // another writer, its clock an hour ahead
	rec := record.Append(nil, &record.Record{Kind: record.KindEvents, Origin: 7, Nonce: 1, Stamp: stamp, Events: []record.Event{
		{Meter: 1, Customer: "cus", Identifier: "a", Value: 3, Timestamp: stamp},
		{Meter: 1, Customer: "cus", Identifier: "a", Value: 4, Timestamp: stamp}, // a duplicate within the record
	}})
	if _, err := other.Append(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := e.WaitApplied(ctx); err != nil {
		t.Fatal(err)
	}
	if s := e.Stats(); s.Accepted != 1 || s.Duplicates != 1 || s.Replica.Applied != 2 {
		t.Fatalf("after the foreign record: accepted %d duplicates %d applied %d", s.Accepted, s.Duplicates, s.Replica.Applied)
	}
	// The writer cancels 25 hours later by its clock: too late, though
	// this replica's clock, which has not moved, would allow it.
	if _, err := other.Append(ctx, record.Append(nil, &record.Record{Kind: record.KindCancel, Stamp: now0.Add(26 * time.Hour).Unix(),
		Cancel: record.Cancel{Meter: 1, Identifier: "a"}})); err != nil {
		t.Fatal(err)
	}
	if err := e.WaitApplied(ctx); err != nil {
		t.Fatal(err)
	}
	if s := e.Stats(); s.Cancels != 0 {
		t.Fatalf("an event received 25 hours before the cancellation's stamp was cancelled")
	}

	// A damaged record.
	bad := record.Append(nil, &record.Record{Kind: record.KindKV, Stamp: now0.Unix(), KV: []record.KV{{NS: "n", Key: "k", Value: []byte("v"), Expires: now0.Unix() + 60}}})
	bad[len(bad)-5] ^= 1
	if _, err := other.Append(ctx, bad); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.Ready() == nil {
		if time.Now().After(deadline) {
			t.Fatal("Ready reports nothing about a record that fails its checksum")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := e.Ready(); !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, record.ErrCorrupt) {
		t.Fatalf("Ready: %v, want ErrUnavailable and record.ErrCorrupt", err)
	}
	if s := e.Stats(); s.Replica.Applied != 3 || s.Replica.Last != 4 || s.Replica.ApplyErr == nil {
		t.Fatalf("after the damaged record: %+v", s.Replica)
	}
	if _, ok, _ := e.GetKV("n", "k"); ok {
		t.Fatal("the damaged record was applied")
	}
}

// TestReplicaFreezesByLogTime checks that replicas freeze by the apply
// time, the greatest writer stamp of the log, and that the refusal of an
// event whose day that time has made final is a rule of the log: a
// writer whose clock lags by days sends one, and a replica that froze the
// day (in memory: at its prune) and one that did not yet (with a file: at
// its next checkpoint) both refuse it.
func TestReplicaFreezesByLogTime(t *testing.T) {
	ctx := context.Background()
	shared := sharedlogtest.New()
	mem := newReplica(t, shared)
	file, err := Open(Config{Path: filepath.Join(t.TempDir(), "replica.db"), Shards: 4, DedupeWindow: 24 * time.Hour,
		CancelWindow: 24 * time.Hour, CheckpointInterval: time.Hour, Now: func() time.Time { return now0 },
		Logger: slog.New(slog.DiscardHandler), Shared: shared.Client(), SnapshotInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if _, err := mem.CreateMeter(ctx, meter.Params{DisplayName: "calls", EventName: "calls", Formula: meter.Sum}); err != nil {
		t.Fatal(err)
	}
	other := shared.Client()
	appendEvent := func(nonce uint64, stamp time.Time, id string, ts time.Time) {
		t.Helper()
		rec := record.Append(nil, &record.Record{Kind: record.KindEvents, Origin: 7, Nonce: nonce, Stamp: stamp.Unix(),
			Events: []record.Event{{Meter: 1, Customer: "cus", Identifier: id, Value: 1, Timestamp: ts.Unix()}}})
		if _, err := other.Append(ctx, rec); err != nil {
			t.Fatal(err)
		}
		for _, e := range []*Engine{mem, file} {
			if err := e.WaitApplied(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendEvent(1, now0, "old", now0.Add(-time.Hour))
	later := now0.Add(40 * 24 * time.Hour)
	appendEvent(2, later, "new", later)
	if got, want := mem.Stats().FrozenBefore, horizonAt(later.Unix()); got != want {
		t.Fatalf("in-memory replica frozen before %v, want %v (the horizon of the log's time)", time.Unix(got, 0).UTC(), time.Unix(want, 0).UTC())
	}
	if got := file.Stats().FrozenBefore; got >= horizonAt(later.Unix()) {
		t.Fatalf("file-backed replica frozen before %v before a checkpoint", time.Unix(got, 0).UTC())
	}
	// A writer whose clock lags the log's by 39 days: by its clock the
	// event is 35 days old at most, by the log's its day is final.
	lagging := now0.Add(24 * time.Hour)
	appendEvent(3, lagging, "late", now0)
	for name, e := range map[string]*Engine{"in memory": mem, "with a file": file} {
		s := e.Stats()
		if s.Accepted != 2 || s.Rejected != 1 {
			t.Errorf("replica %s: accepted %d rejected %d, want 2 and 1", name, s.Accepted, s.Rejected)
		}
	}
	// The file-backed replica freezes at its checkpoint, by the log's
	// time too.
	if err := file.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if got, want := file.Stats().FrozenBefore, horizonAt(later.Unix()); got != want {
		t.Fatalf("file-backed replica frozen before %v after a checkpoint, want %v", time.Unix(got, 0).UTC(), time.Unix(want, 0).UTC())
	}
}
