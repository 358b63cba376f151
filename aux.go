package meterdb

import (
	"context"
	"errors"
	"time"
)

// Limits on adapter records.
const (
	MaxAuxKey   = 1024
	MaxAuxValue = 1 << 20
)

// PutAux stores value under (namespace, key) until expires; a later PutAux
// replaces it. It is a small persistent key-value area for adapters built
// on a DB, such as stripeapi's idempotency records and meter event
// sessions: records live in the same file as the events and are as
// durable. Expired records are never returned and are dropped in the
// background. The value is copied.
func (db *DB) PutAux(ctx context.Context, namespace, key string, value []byte, expires time.Time) error {
	if err := checkAux(namespace, key); err != nil {
		return err
	}
	if len(value) > MaxAuxValue {
		return errors.New("meterdb: aux value longer than 1 MiB")
	}
	if err := db.enter(); err != nil {
		return err
	}
	defer db.exit()
	return db.j.PutAux(namespace, key, value, expires.Unix())
}

// GetAux returns a copy of the unexpired value under (namespace, key).
func (db *DB) GetAux(ctx context.Context, namespace, key string) ([]byte, bool, error) {
	if err := checkAux(namespace, key); err != nil {
		return nil, false, err
	}
	if err := db.enter(); err != nil {
		return nil, false, err
	}
	defer db.exit()
	return db.j.GetAux(namespace, key, db.now().Unix())
}

// DeleteAux removes the value under (namespace, key), if any.
func (db *DB) DeleteAux(ctx context.Context, namespace, key string) error {
	if err := checkAux(namespace, key); err != nil {
		return err
	}
	if err := db.enter(); err != nil {
		return err
	}
	defer db.exit()
	return db.j.DeleteAux(namespace, key)
}

func checkAux(namespace, key string) error {
	if namespace == "" || len(namespace) > 64 || len(key) == 0 || len(key) > MaxAuxKey {
		return errors.New("meterdb: aux namespace must be 1 to 64 bytes and key 1 to 1024 bytes")
	}
	return nil
}

// ListAux calls fn, in key order, with each unexpired record of namespace
// whose key sorts after the key after ("" for the first), until fn returns
// false. With DurabilityBuffered, records written in the last flush
// interval may not be listed yet (Sync first to include them). fn must not
// keep value, nor call other DB methods.
func (db *DB) ListAux(ctx context.Context, namespace, after string, fn func(key string, value []byte) bool) error {
	if err := checkAux(namespace, "x"); err != nil {
		return err
	}
	if err := db.enter(); err != nil {
		return err
	}
	defer db.exit()
	return db.j.ListAux(namespace, after, db.now().Unix(), fn)
}

// Now returns the database clock's current time (Options.Now).
func (db *DB) Now() time.Time { return db.now() }
