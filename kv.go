package meterdb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/internal/pipeline"
	"github.com/meterdb/meterdb/store"
)

// Limits on adapter records.
const (
	MaxKVKey   = 1024
	MaxKVValue = 1 << 20
)

// RecordBatchKV is RecordBatch that also writes the key-value records kv
// returns, in the same commit as the accepted events: they are durable
// exactly when the events are, which is what a stored response to a
// request needs (an HTTP Idempotency-Key record: a crash can never keep
// the event and lose its response, nor the reverse). kv is called once,
// after validation and dedupe, with one error per event (nil for the
// accepted ones, whose Identifier and Timestamp are filled in), and only
// when at least one event was accepted; it must not call the DB. A record
// that breaks the limits of PutKV fails the batch, and nothing is
// recorded. With Options.Log the records are a second change of the
// shared log, appended once the events' apply decided errs: the events are
// then recorded even when kv's records fail.
//
// The values kv returns are not copied: the caller must not modify them
// afterwards. A nil kv makes it RecordBatch.
func (db *DB) RecordBatchKV(ctx context.Context, evs []event.Event, kv func(errs []error) []KVWrite) ([]error, error) {
	if kv == nil {
		return db.RecordBatch(ctx, evs)
	}
	return db.recordKV(ctx, &pipeline.Batch{Events: evs}, kv)
}

// RecordUsageKV is RecordUsage that also writes the key-value records kv
// returns in the same commit as the accepted usage, as RecordBatchKV does
// for events. A nil kv makes it RecordUsage.
func (db *DB) RecordUsageKV(ctx context.Context, us []event.Usage, kv func(errs []error) []KVWrite) ([]error, error) {
	if kv == nil {
		return db.RecordUsage(ctx, us)
	}
	return db.recordKV(ctx, &pipeline.Batch{Usages: us}, kv)
}

// recordKV runs b through the pipeline with kv's records committed with it.
func (db *DB) recordKV(ctx context.Context, b *pipeline.Batch, kv func(errs []error) []KVWrite) ([]error, error) {
	if err := db.consistent(ctx); err != nil {
		return nil, err
	}
	b.KV = func(errs []error) ([]store.KVWrite, error) { return storeWrites(ctx, kv(errs)) }
	return db.e.Record(ctx, b)
}

// PutKV stores value under (namespace, key) until expires; a later PutKV
// replaces it. It is a small persistent key-value area for adapters built
// on a DB, such as stripeapi's idempotency records and meter event
// sessions: records live in the same file as the events and are as
// durable. Expired records are never returned and are dropped in the
// background. The value is copied.
func (db *DB) PutKV(ctx context.Context, namespace, key string, value []byte, expires time.Time) error {
	if err := checkKV(ctx, namespace, key, value); err != nil {
		return err
	}
	return db.e.PutKV(ctx, namespace, key, value, expires.Unix())
}

// GetKV returns a copy of the unexpired value under (namespace, key).
func (db *DB) GetKV(ctx context.Context, namespace, key string) ([]byte, bool, error) {
	if err := checkKV(ctx, namespace, key, nil); err != nil {
		return nil, false, err
	}
	if err := db.consistent(ctx); err != nil {
		return nil, false, err
	}
	return db.e.GetKV(namespace, key)
}

// DeleteKV removes the value under (namespace, key), if any.
func (db *DB) DeleteKV(ctx context.Context, namespace, key string) error {
	if err := checkKV(ctx, namespace, key, nil); err != nil {
		return err
	}
	return db.e.DeleteKV(ctx, namespace, key)
}

// ClaimKV stores value under (namespace, key) until expires unless an
// unexpired value is stored there already; it returns the value that holds
// the key afterwards and whether it is this claim's. With Options.Log the
// first claim in the shared log's order wins on every replica, so that
// processes sharing a database can agree on who handles a request (an
// HTTP Idempotency-Key) without talking to each other. The value is
// copied; the returned slice is the caller's.
func (db *DB) ClaimKV(ctx context.Context, namespace, key string, value []byte, expires time.Time) (current []byte, claimed bool, err error) {
	if err := checkKV(ctx, namespace, key, value); err != nil {
		return nil, false, err
	}
	return db.e.ClaimKV(ctx, namespace, key, value, expires.Unix())
}

// KVWrite is one change of DB.WriteKV: a put of Value under (Namespace,
// Key) until Expires, or, with Delete, the removal of that record.
type KVWrite struct {
	Namespace, Key string
	Value          []byte
	Expires        time.Time
	Delete         bool
}

// WriteKV applies writes, in order, in one commit: either all of them are
// stored or, when it returns an error, none. It lets an adapter keep a
// record and the index records that point at it consistent. Values are
// copied; limits are those of PutKV.
func (db *DB) WriteKV(ctx context.Context, writes []KVWrite) error {
	ws, err := storeWrites(ctx, writes)
	if err != nil {
		return err
	}
	return db.e.WriteKV(ctx, ws)
}

// storeWrites checks writes against the limits of key-value records and
// converts them for the store.
func storeWrites(ctx context.Context, writes []KVWrite) ([]store.KVWrite, error) {
	ws := make([]store.KVWrite, len(writes))
	for i, w := range writes {
		if err := checkKV(ctx, w.Namespace, w.Key, w.Value); err != nil {
			return nil, err
		}
		ws[i] = store.KVWrite{NS: w.Namespace, Key: w.Key, Value: w.Value, Expires: w.Expires.Unix(), Delete: w.Delete}
	}
	return ws, nil
}

// checkKV returns ctx's error, or an error for a namespace, key or value
// beyond the limits of key-value records.
func checkKV(ctx context.Context, namespace, key string, value []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if namespace == "" || len(namespace) > 64 || len(key) == 0 || len(key) > MaxKVKey {
		return errors.New("meterdb: key-value namespace must be 1 to 64 bytes and key 1 to 1024 bytes")
	}
	if namespace == pipeline.PositionNS {
		return fmt.Errorf("meterdb: key-value namespace %q is reserved", namespace)
	}
	if len(value) > MaxKVValue {
		return errors.New("meterdb: key-value record value longer than 1 MiB")
	}
	return nil
}

// ListKV calls fn, in key order, with each unexpired record of namespace
// whose key sorts after the key after ("" for the first), until fn returns
// false. With DurabilityBuffered, records written in the last flush
// interval may not be listed yet (Sync first to include them). fn must not
// keep value, nor call other DB methods.
func (db *DB) ListKV(ctx context.Context, namespace, after string, fn func(key string, value []byte) bool) error {
	if err := checkKV(ctx, namespace, "x", nil); err != nil {
		return err
	}
	if err := db.consistent(ctx); err != nil {
		return err
	}
	return db.e.ListKV(namespace, after, fn)
}
