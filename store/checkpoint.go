package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// AggRecord is one checkpointed aggregate bucket of one series. State is
// opaque to the store (the aggregate package encodes it); a nil State
// deletes the record.
type AggRecord struct {
	Meter    uint64
	Customer string
	Start    int64 // unix seconds: the hour or day the record covers
	Day      bool  // a day record rather than an hour record
	State    []byte
}

// The kind byte of an agg key (FORMAT.md): it sorts a meter's day
// records before its frozen blocks, and those before its hour records.
const (
	aggKindDay    = 'd'
	aggKindFrozen = 'f'
	aggKindHour   = 'h'
)

// aggKeyLen is the length of an agg key without its customer.
const aggKeyLen = 17

// aggKey is meter (8 bytes BE) | 'h' or 'd' | start (8 bytes BE) | customer.
func aggKey(r *AggRecord) []byte {
	kind := byte(aggKindHour)
	if r.Day {
		kind = aggKindDay
	}
	return makeAggKey(r.Meter, kind, r.Start, r.Customer)
}

// makeAggKey is meter (8 bytes BE) | kind | start (8 bytes BE) | customer.
func makeAggKey(meter uint64, kind byte, start int64, customer string) []byte {
	k := make([]byte, 0, aggKeyLen+len(customer))
	k = binary.BigEndian.AppendUint64(k, meter)
	k = append(k, kind)
	k = binary.BigEndian.AppendUint64(k, uint64(start))
	return append(k, customer...)
}

// keyed is a record of an agg write with its key; i, its place in the
// caller's slice, breaks ties.
type keyed[T any] struct {
	key []byte
	rec *T
	i   int
}

// inKeyOrder returns recs with their keys, sorted by key. Writing in key
// order keeps bbolt's inserts at the end of each leaf; in random order
// every insert moves the rest of an ever larger leaf. Ties keep their
// order: a later record for the same key wins.
func inKeyOrder[T any](recs []T, key func(*T) []byte) []keyed[T] {
	ks := make([]keyed[T], len(recs))
	for i := range recs {
		ks[i] = keyed[T]{key: key(&recs[i]), rec: &recs[i], i: i}
	}
	slices.SortFunc(ks, func(a, b keyed[T]) int {
		if c := bytes.Compare(a.key, b.key); c != 0 {
			return c
		}
		return a.i - b.i
	})
	return ks
}

// putAgg writes body, sealed, under the agg key k.
func putAgg(agg *bolt.Bucket, k, body []byte) error {
	v := append(make([]byte, 0, len(body)+crcLen), body...)
	return agg.Put(k, seal(scopeAgg, k, v))
}

// Mark is what a checkpoint covers: every log location up to Loc, and the
// event sequence and log location counters at that point.
type Mark struct {
	Loc     uint64 // aggregates include every log record at or below Loc
	LastSeq uint64 // greatest event sequence assigned at or below Loc
}

// Checkpoint first waits for everything queued (so that the log up to
// m.Loc is on disk before a checkpoint claims it), then writes recs,
// records m, deletes log records below pruneBelow (never above m.Loc) and
// key-value records expired at now, in one transaction, synced before it
// returns.
func (s *DB) Checkpoint(m Mark, recs []AggRecord, pruneBelow uint64, now int64) error {
	start := time.Now()
	if err := s.Sync(); err != nil {
		return err
	}
	if err := s.check(); err != nil {
		return err
	}
	if s.opts.ReadOnly {
		return ErrReadOnly
	}
	pruneBelow = min(pruneBelow, m.Loc+1)
	keyed := inKeyOrder(recs, aggKey)
	var pruned, prunedBytes int64
	err := s.classify(s.bolt.Update(func(tx *bolt.Tx) error {
		agg := tx.Bucket(bucketAgg)
		for _, k := range keyed {
			var err error
			if k.rec.State == nil {
				err = agg.Delete(k.key)
			} else {
				err = putAgg(agg, k.key, k.rec.State)
			}
			if err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if err := putMetaU64(meta, keyCheckpoint, m.Loc); err != nil {
			return err
		}
		if err := putMetaU64(meta, keyLastSeq, m.LastSeq); err != nil {
			return err
		}
		if err := putMetaU64(meta, keyLastLoc, m.Loc); err != nil {
			return err
		}
		c := tx.Bucket(bucketLog).Cursor()
		end := u64(pruneBelow)
		for k, v := c.First(); k != nil && bytes.Compare(k, end) < 0; k, v = c.First() {
			pruned, prunedBytes = pruned+1, prunedBytes+int64(len(v))
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return pruneKV(tx, now)
	}))
	if err == nil {
		s.counters.checkpointed(start, now, pruned, prunedBytes)
	}
	return err
}

// pruneKV deletes the key-value records expired at now. A record whose
// checksum fails stays, for reads and verification to report.
func pruneKV(tx *bolt.Tx, now int64) error {
	return tx.Bucket(bucketKV).ForEachBucket(func(ns []byte) error {
		b := tx.Bucket(bucketKV).Bucket(ns)
		sc := kvScope(string(ns))
		c := b.Cursor()
		for k, v := c.First(); k != nil; {
			body, err := unseal(sc, k, v)
			if err == nil && len(body) >= 8 && int64(binary.BigEndian.Uint64(body)) <= now {
				if err := c.Delete(); err != nil {
					return err
				}
				k, v = c.Seek(k)
				continue
			}
			k, v = c.Next()
		}
		return nil
	})
}

// LastMark returns the latest checkpoint's Mark (zero before the first).
func (s *DB) LastMark() (Mark, error) {
	var m Mark
	err := s.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		var err error
		if m.Loc, err = s.metaU64(meta, keyCheckpoint); err != nil {
			return err
		}
		m.LastSeq, err = s.metaU64(meta, keyLastSeq)
		return err
	})
	return m, err
}

// LoadAggregates calls fn with every checkpointed aggregate record (hour
// and day records; frozen blocks are LoadFrozen's), by meter, then day
// records before hour records, then start, then customer. The State slice
// is valid only during the call. A record whose checksum fails is an error
// wrapping ErrCorrupt that names it.
func (s *DB) LoadAggregates(fn func(r *AggRecord) error) error {
	return s.LoadAggregatesFrom(0, fn)
}

// LoadAggregatesFrom is LoadAggregates restricted to the records whose
// Start is at least from (from <= 0: all of them), in the same order and
// in one read transaction. It does not read the records before from: for
// each meter and kind it seeks to the first key at from, so the pages of
// older records are left alone (a caller loading the checkpoint passes
// FrozenThrough's time, before which every record's day is kept in a
// frozen block). The State slice is valid only during the call. A record
// whose checksum fails, or a key of an unknown kind, is an error wrapping
// ErrCorrupt that names it.
func (s *DB) LoadAggregatesFrom(from int64, fn func(r *AggRecord) error) error {
	return s.view(func(tx *bolt.Tx) error {
		_, err := s.loadAggregates(tx, from, fn)
		return err
	})
}

// loadAggregates is LoadAggregatesFrom inside tx. It returns the number
// of keys its cursor visited (for tests: it must not grow with the
// records before from). The cursor visits the first key of every meter's
// group of a kind, so an unknown kind is reported, not skipped; frozen
// blocks are skipped with one seek per meter.
func (s *DB) loadAggregates(tx *bolt.Tx, from int64, fn func(r *AggRecord) error) (visited int, err error) {
	all := from <= 0
	var r AggRecord
	c := tx.Bucket(bucketAgg).Cursor()
	for k, v := c.First(); k != nil; {
		visited++
		if len(k) < aggKeyLen {
			return visited, fmt.Errorf("%w: aggregate key %x", ErrCorrupt, k)
		}
		kind, start := k[8], binary.BigEndian.Uint64(k[9:aggKeyLen])
		switch {
		case kind == aggKindFrozen:
			// Past this meter's frozen blocks, to its first key of a
			// later kind (its hour records) or the next meter's first.
			k, v = c.Seek(makeAggKey(binary.BigEndian.Uint64(k), aggKindFrozen+1, 0, ""))
			continue
		case kind != aggKindHour && kind != aggKindDay:
			return visited, fmt.Errorf("%w: aggregate key %x", ErrCorrupt, k)
		case all:
		case start < uint64(from):
			// Compared as stored (unsigned), so that the seek always
			// moves forward.
			k, v = c.Seek(makeAggKey(binary.BigEndian.Uint64(k), kind, from, ""))
			continue
		case int64(start) < from:
			// A negative start, stored after every positive one.
			k, v = c.Next()
			continue
		}
		state, err := s.open(scopeAgg, k, v, func() string { return aggName(k) })
		if err != nil {
			return visited, err
		}
		r = AggRecord{
			Meter: binary.BigEndian.Uint64(k), Day: kind == aggKindDay,
			Start: int64(start), Customer: string(k[aggKeyLen:]), State: state,
		}
		if err := fn(&r); err != nil {
			return visited, err
		}
		k, v = c.Next()
	}
	return visited, nil
}

// ReadAggregate returns a copy of the State of the checkpointed hour
// record of (meter, customer) starting at start, or nil when there is none.
// A record whose checksum fails is an error wrapping ErrCorrupt that names
// it. It is how the aggregates read the minute cells of frozen hours,
// which they no longer keep in memory.
func (s *DB) ReadAggregate(meter uint64, customer string, start int64) ([]byte, error) {
	k := aggKey(&AggRecord{Meter: meter, Customer: customer, Start: start})
	return s.readAgg(k, func() string { return aggName(k) })
}

// readAgg returns a copy of the body of the agg record k, or nil when
// there is none; name names it in an error.
func (s *DB) readAgg(k []byte, name func() string) ([]byte, error) {
	var out []byte
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketAgg).Get(k)
		if v == nil {
			return nil
		}
		state, err := s.open(scopeAgg, k, v, name)
		if err != nil {
			return err
		}
		out = append(make([]byte, 0, len(state)), state...)
		return nil
	})
	return out, err
}
