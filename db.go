package meterdb

import (
	"context"
	"fmt"
	"time"

	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/internal/pipeline"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/store"
)

// DB is a metering database. It is safe for concurrent use. Its write
// path, state and recovery live in internal/pipeline; DB is the facade.
//
// Every method that takes a context returns the context's error at once
// when it is already done. Record, RecordBatch, RecordBatchKV, RecordUsage
// and Cancel also stop waiting for their commit when it ends: the write
// may then still be recorded, so retry it with the same identifiers to
// learn its outcome. Meter changes and key-value writes are single short
// commits that a context does not interrupt once they started.
type DB struct {
	opts Options
	e    *pipeline.Engine
}

// Open opens the database at path, creating it when missing. An empty path
// gives a database that lives in memory only and is lost on Close; it suits
// tests and short-lived processes. It keeps no events: for each event of
// the retention window (the dedupe window or 24 hours, whichever is
// longer), 114 bits (14.25 bytes) of the 128-bit fingerprint of its
// identifier (the dedupe index's ≈ 4.7 bytes point to that one event, and
// the slot that does implies the fingerprint's other 14 bits) and what Cancel needs of it
// (sequence, meter, value and timestamp, 48 bytes, and the customer string
// shared with the aggregates). A fingerprint match is taken as the same
// identifier: two identifiers collide with probability 2^-128. A database
// with a file confirms every match against the identifiers it stored.
func Open(path string, opts *Options) (*DB, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	e, err := pipeline.Open(pipeline.Config{
		Path: path, Shards: o.Shards, DedupeWindow: o.DedupeWindow, CancelWindow: CancelWindow,
		CheckpointInterval: o.CheckpointInterval, HistoryCacheBytes: o.HistoryCacheBytes, Now: o.Now, Logger: o.Logger,
		DedupeEpoch: o.dedupeEpoch, DedupeMinEpoch: o.dedupeMinEpoch,
		Shared: o.Log, SnapshotInterval: o.SnapshotInterval,
		Store: store.Options{
			Durability: o.Durability.storeDurability(), MaxBatchSize: o.MaxBatchSize, MaxBatchDelay: o.MaxBatchDelay,
			FlushInterval: o.FlushInterval, LockTimeout: o.LockTimeout, NoFsync: o.NoFsync, Logger: o.Logger,
			ReadOnly: o.ReadOnly,
		},
	})
	if err != nil {
		return nil, err
	}
	return &DB{opts: o, e: e}, nil
}

// consistent returns ctx's error, and with Options.ConsistentReads waits
// until the replica applied the shared log's newest record: reads then see
// every write acknowledged anywhere before them, and writes validate
// against every meter created anywhere before them.
func (db *DB) consistent(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if db.opts.ConsistentReads {
		return db.e.WaitApplied(ctx)
	}
	return nil
}

// WaitApplied returns once this replica applied every record the shared
// log (Options.Log) held when it was called: a read after it sees every
// write any replica acknowledged before the call. It is what
// Options.ConsistentReads does before each read; without Options.Log it
// returns at once. Errors wrap ErrUnavailable when the log cannot be
// reached.
func (db *DB) WaitApplied(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return db.e.WaitApplied(ctx)
}

// Replicated reports whether db is a replica of a shared log
// (Options.Log).
func (db *DB) Replicated() bool { return db.opts.Log != nil }

// Snapshot writes a snapshot of this replica's local state to the shared
// log (Options.Log) now, as replicas do every Options.SnapshotInterval,
// and returns the log position it covers. A replica in memory has no file
// to copy: it returns ErrInMemory.
func (db *DB) Snapshot(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return db.e.Snapshot(ctx)
}

// Close waits for operations in flight, makes everything accepted durable
// and releases the database. Calling it again returns nil; every other
// method returns ErrClosed after it.
func (db *DB) Close() error { return db.e.Close() }

// Sync makes every acknowledged event durable. With the default durability
// every acknowledged event already is, and Sync returns at once.
func (db *DB) Sync() error { return db.e.Sync() }

// Now returns the database clock's current time (Options.Now).
func (db *DB) Now() time.Time { return db.e.Now() }

// CreateMeter creates a meter. Its event name must not be used by any
// other meter, active or not.
func (db *DB) CreateMeter(ctx context.Context, p meter.Params) (meter.Meter, error) {
	if err := db.consistent(ctx); err != nil {
		return meter.Meter{}, err
	}
	return db.e.CreateMeter(ctx, p)
}

// Meter returns the meter with the given id; the error unwraps to
// meter.ErrNotFound when there is none.
func (db *DB) Meter(ctx context.Context, id string) (meter.Meter, error) {
	if err := db.consistent(ctx); err != nil {
		return meter.Meter{}, err
	}
	reg, _, err := db.e.Enter()
	if err != nil {
		return meter.Meter{}, err
	}
	defer db.e.Exit()
	return reg.Get(id)
}

// MeterByEventName returns the meter that events named name go to; the
// error unwraps to meter.ErrNotFound when there is none.
func (db *DB) MeterByEventName(ctx context.Context, name string) (meter.Meter, error) {
	if err := db.consistent(ctx); err != nil {
		return meter.Meter{}, err
	}
	reg, _, err := db.e.Enter()
	if err != nil {
		return meter.Meter{}, err
	}
	defer db.e.Exit()
	m, ok := reg.Lookup(name)
	if !ok {
		return meter.Meter{}, &meter.Error{Code: meter.CodeResourceMissing, Param: "event_name", Err: meter.ErrNotFound,
			Message: fmt.Sprintf("No meter has event_name %q.", name)}
	}
	return *m, nil
}

// UpdateMeter changes a meter's display name, the only mutable field.
func (db *DB) UpdateMeter(ctx context.Context, id, displayName string) (meter.Meter, error) {
	if err := ctx.Err(); err != nil {
		return meter.Meter{}, err
	}
	return db.e.SetDisplayName(ctx, id, displayName)
}

// DeactivateMeter stops a meter from accepting events; its data stays
// queryable. Deactivating an inactive meter returns it unchanged.
func (db *DB) DeactivateMeter(ctx context.Context, id string) (meter.Meter, error) {
	if err := ctx.Err(); err != nil {
		return meter.Meter{}, err
	}
	return db.e.SetStatus(ctx, id, meter.Inactive)
}

// ReactivateMeter lets an inactive meter accept events again and clears
// its DeactivatedAt. Reactivating an active meter returns it unchanged.
func (db *DB) ReactivateMeter(ctx context.Context, id string) (meter.Meter, error) {
	if err := ctx.Err(); err != nil {
		return meter.Meter{}, err
	}
	return db.e.SetStatus(ctx, id, meter.Active)
}

// ListMeters returns a page of meters, newest first; see meter.ListParams.
func (db *DB) ListMeters(ctx context.Context, p meter.ListParams) (page []meter.Meter, hasMore bool, err error) {
	if err := db.consistent(ctx); err != nil {
		return nil, false, err
	}
	reg, _, err := db.e.Enter()
	if err != nil {
		return nil, false, err
	}
	defer db.e.Exit()
	return reg.List(p)
}

// Record validates one event, records it and returns it with its
// Identifier and Timestamp filled in. A rejected event leaves no trace; its
// error is an *event.Error carrying the Stripe code. Record returns after
// the event is applied to the aggregates (and, for a file-backed database,
// as durable as Options say). Errors wrapping ErrUnavailable mean nothing
// was recorded and a retry later can succeed.
func (db *DB) Record(ctx context.Context, ev event.Event) (event.Event, error) {
	evs := [1]event.Event{ev}
	errs, err := db.RecordBatch(ctx, evs[:])
	if err != nil {
		return event.Event{}, err
	}
	if errs[0] != nil {
		return event.Event{}, errs[0]
	}
	return evs[0], nil
}

// RecordBatch validates every event and records the valid ones together,
// as one group commit. It returns one error per event, nil for the
// accepted ones, and fills in the Identifier and Timestamp of accepted
// events in evs that lacked them. The second result reports a failure of
// the whole batch: a closed database, or a write the store could not make
// (wrapping ErrUnavailable: retry later, with the same identifiers), in
// which case nothing was recorded; or ctx ending the wait for the commit,
// in which case the events may still be recorded (retry with the same
// identifiers to learn which). Payload maps are read, not retained.
//
// The write path is internal/pipeline's: validate, reserve identifiers,
// sequence, log (group commit bounded by Options.MaxBatchSize and
// MaxBatchDelay), apply, acknowledge.
func (db *DB) RecordBatch(ctx context.Context, evs []event.Event) ([]error, error) {
	if err := db.consistent(ctx); err != nil {
		return nil, err
	}
	return db.e.Record(ctx, &pipeline.Batch{Events: evs})
}

// RecordUsage is RecordBatch for usage in typed form: no payload map is
// built or read. Validation, errors and durability are RecordBatch's; a
// count meter ignores Value. It fills in the Identifier and Timestamp of
// accepted entries of us that lacked them.
func (db *DB) RecordUsage(ctx context.Context, us []event.Usage) ([]error, error) {
	if err := db.consistent(ctx); err != nil {
		return nil, err
	}
	return db.e.Record(ctx, &pipeline.Batch{Usages: us})
}

// Cancel removes the event with the given identifier from its meter's
// aggregates. The event must belong to the meter of eventName and must have
// been received within CancelWindow. Errors are *event.Error values
// unwrapping to event.ErrNotFound, event.ErrCancelExpired or
// event.ErrAlreadyCancelled (or ErrClosed, or a write error wrapping
// ErrUnavailable).
func (db *DB) Cancel(ctx context.Context, eventName, identifier string) error {
	if err := db.consistent(ctx); err != nil {
		return err
	}
	return db.e.Cancel(ctx, eventName, identifier)
}
