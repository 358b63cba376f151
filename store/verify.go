package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/meterdb/meterdb/meter"
)

// Counts is what CheckRecords walked.
type Counts struct {
	Format     uint64 // the file's format version
	Meta       int    // meta records
	Meters     int    // meter records
	Log        int    // log records
	FirstLoc   uint64 // the first and last log location (0 when the log is empty)
	LastLoc    uint64
	Checkpoint uint64 // the log location the checkpoint covers
	Aggregates int    // aggregate hour and day records
	Frozen     int    // frozen blocks
	KV         int    // key-value records, expired ones included
	// FrozenThrough is the stored frozen_through time (unix seconds; 0
	// when none is stored).
	FrozenThrough int64
}

// CheckRecords reads every record of the file in one read transaction and
// checks it: each checksum (frozen blocks' included), that log, meter,
// meta and key-value records decode, that aggregate keys are well formed
// (an hour, day or frozen block kind), and that the log's
// locations have no gap (see Replay). It does not stop at the first
// damaged record: problem is called with one error wrapping ErrCorrupt per
// damaged record or gap, in bucket and key order. The returned error is
// for what stopped the walk itself (the store closed, a damaged page).
func (s *DB) CheckRecords(problem func(error)) (Counts, error) {
	var n Counts
	err := s.view(func(tx *bolt.Tx) error {
		n.Format = s.format
		meta := tx.Bucket(bucketMeta)
		for _, k := range [][]byte{keyCheckpoint, keyLastSeq, keyLastLoc, keyFrozenThrough} {
			if meta.Get(k) != nil {
				n.Meta++
			}
			v, err := s.metaU64(meta, k)
			switch {
			case err != nil:
				problem(err)
			case bytes.Equal(k, keyCheckpoint):
				n.Checkpoint = v
			case bytes.Equal(k, keyFrozenThrough):
				n.FrozenThrough = int64(v)
			}
		}
		if b := tx.Bucket(bucketMeters); b != nil {
			b.ForEach(func(k, v []byte) error {
				n.Meters++
				body, err := s.open(scopeMeters, k, v, func() string { return meterName(k) })
				if err == nil {
					var m meter.Meter
					if jerr := json.Unmarshal(body, &m); jerr != nil {
						err = fmt.Errorf("%w: %s: %v", ErrCorrupt, meterName(k), jerr)
					}
				}
				if err != nil {
					problem(err)
				}
				return nil
			})
		}
		if b := tx.Bucket(bucketLog); b != nil {
			next := uint64(0)
			b.ForEach(func(k, v []byte) error {
				n.Log++
				if len(k) != 8 {
					problem(fmt.Errorf("%w: log key of %d bytes", ErrCorrupt, len(k)))
					return nil
				}
				loc := binary.BigEndian.Uint64(k)
				if err := checkContinuity(next, loc, n.Checkpoint); err != nil {
					problem(err)
				}
				if n.FirstLoc == 0 {
					n.FirstLoc = loc
				}
				n.LastLoc, next = loc, loc+1
				if _, err := s.readGroup(k, v); err != nil {
					problem(err)
				}
				return nil
			})
		}
		if b := tx.Bucket(bucketAgg); b != nil {
			b.ForEach(func(k, v []byte) error {
				name := aggName
				switch {
				case len(k) < aggKeyLen || (k[8] != aggKindHour && k[8] != aggKindDay && k[8] != aggKindFrozen):
					n.Aggregates++
					problem(fmt.Errorf("%w: aggregate key %x", ErrCorrupt, k))
					return nil
				case k[8] == aggKindFrozen:
					n.Frozen++
					name = frozenName
				default:
					n.Aggregates++
				}
				if _, err := s.open(scopeAgg, k, v, func() string { return name(k) }); err != nil {
					problem(err)
				}
				return nil
			})
		}
		if kv := tx.Bucket(bucketKV); kv != nil {
			kv.ForEachBucket(func(ns []byte) error {
				return kv.Bucket(ns).ForEach(func(k, v []byte) error {
					n.KV++
					if _, err := s.readKV(string(ns), k, v); err != nil {
						problem(err)
					}
					return nil
				})
			})
		}
		return nil
	})
	return n, err
}
