package meterdb

import (
	"context"
	"errors"
	"time"

	"github.com/meterdb/meterdb/store"
)

// Limits on adapter records.
const (
	MaxKVKey   = 1024
	MaxKVValue = 1 << 20
)

// PutKV stores value under (namespace, key) until expires; a later PutKV
// replaces it. It is a small persistent key-value area for adapters built
// on a DB, such as stripeapi's idempotency records and meter event
// sessions: records live in the same file as the events and are as
// durable. Expired records are never returned and are dropped in the
// background. The value is copied.
func (db *DB) PutKV(ctx context.Context, namespace, key string, value []byte, expires time.Time) error {
	if err := checkKV(namespace, key); err != nil {
		return err
	}
	if len(value) > MaxKVValue {
		return errors.New("meterdb: key-value record value longer than 1 MiB")
	}
	if err := db.enter(); err != nil {
		return err
	}
	defer db.exit()
	return db.j.PutKV(namespace, key, value, expires.Unix())
}

// GetKV returns a copy of the unexpired value under (namespace, key).
func (db *DB) GetKV(ctx context.Context, namespace, key string) ([]byte, bool, error) {
	if err := checkKV(namespace, key); err != nil {
		return nil, false, err
	}
	if err := db.enter(); err != nil {
		return nil, false, err
	}
	defer db.exit()
	return db.j.GetKV(namespace, key, db.now().Unix())
}

// DeleteKV removes the value under (namespace, key), if any.
func (db *DB) DeleteKV(ctx context.Context, namespace, key string) error {
	if err := checkKV(namespace, key); err != nil {
		return err
	}
	if err := db.enter(); err != nil {
		return err
	}
	defer db.exit()
	return db.j.DeleteKV(namespace, key)
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
	ws := make([]store.KVWrite, len(writes))
	for i, w := range writes {
		if err := checkKV(w.Namespace, w.Key); err != nil {
			return err
		}
		if len(w.Value) > MaxKVValue {
			return errors.New("meterdb: key-value record value longer than 1 MiB")
		}
		ws[i] = store.KVWrite{NS: w.Namespace, Key: w.Key, Value: w.Value, Expires: w.Expires.Unix(), Delete: w.Delete}
	}
	if err := db.enter(); err != nil {
		return err
	}
	defer db.exit()
	return db.j.WriteKV(ws)
}

func checkKV(namespace, key string) error {
	if namespace == "" || len(namespace) > 64 || len(key) == 0 || len(key) > MaxKVKey {
		return errors.New("meterdb: key-value namespace must be 1 to 64 bytes and key 1 to 1024 bytes")
	}
	return nil
}

// ListKV calls fn, in key order, with each unexpired record of namespace
// whose key sorts after the key after ("" for the first), until fn returns
// false. With DurabilityBuffered, records written in the last flush
// interval may not be listed yet (Sync first to include them). fn must not
// keep value, nor call other DB methods.
func (db *DB) ListKV(ctx context.Context, namespace, after string, fn func(key string, value []byte) bool) error {
	if err := checkKV(namespace, "x"); err != nil {
		return err
	}
	if err := db.enter(); err != nil {
		return err
	}
	defer db.exit()
	return db.j.ListKV(namespace, after, db.now().Unix(), fn)
}

// Now returns the database clock's current time (Options.Now).
func (db *DB) Now() time.Time { return db.now() }
