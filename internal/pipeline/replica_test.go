package pipeline

import (
	"context"
	"errors"
	"log/slog"
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
