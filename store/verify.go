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
	Aggregates int    // aggregate records
	KV         int    // key-value records, expired ones included
}

// CheckRecords reads every record of the file in one read transaction and
// checks it: each checksum, that log, meter, meta and key-value records
// decode, that aggregate keys are well formed, and that the log's
// locations have no gap (see Replay). It does not stop at the first
// damaged record: problem is called with one error wrapping ErrCorrupt per
// damaged record or gap, in bucket and key order. The returned error is
// for what stopped the walk itself (the store closed, a damaged page).
func (s *DB) CheckRecords(problem func(error)) (Counts, error) {
	var n Counts
	err := s.view(func(tx *bolt.Tx) error {
		n.Format = s.format
		meta := tx.Bucket(bucketMeta)
		for _, k := range [][]byte{keyCheckpoint, keyLastSeq, keyLastLoc} {
			if meta.Get(k) != nil {
				n.Meta++
			}
			v, err := s.metaU64(meta, k)
			if err != nil {
				problem(err)
			} else if bytes.Equal(k, keyCheckpoint) {
				n.Checkpoint = v
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
				n.Aggregates++
				if len(k) < 17 || (k[8] != 'h' && k[8] != 'd') {
					problem(fmt.Errorf("%w: aggregate key %x", ErrCorrupt, k))
				} else if _, err := s.open(scopeAgg, k, v, func() string { return aggName(k) }); err != nil {
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
