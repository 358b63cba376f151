package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// upgradeV1 rewrites a format 1 file to the current format inside tx:
// every meter, log, aggregate, key-value and meta record gets its
// checksum, and the format becomes FormatVersion. Records are checked as
// far as format 1 allows (log records decode, meters are JSON, key-value
// records hold an expiry) so that no damage is sealed in. It returns the
// number of records rewritten. The transaction holds every rewritten page
// until it commits: the upgrade needs about the file's size in memory.
func upgradeV1(tx *bolt.Tx) (int, error) {
	n := 0
	for _, b := range []struct {
		name  []byte
		sc    scope
		check func(k, v []byte) error
	}{
		{bucketMeters, scopeMeters, func(k, v []byte) error {
			if !json.Valid(v) {
				return corrupt(meterName(k), errMalformedBody)
			}
			return nil
		}},
		{bucketLog, scopeLog, func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("%w: log key of %d bytes", ErrCorrupt, len(k))
			}
			if _, err := decodeGroup(v); err != nil {
				return corrupt(logName(binary.BigEndian.Uint64(k)), err)
			}
			return nil
		}},
		{bucketAgg, scopeAgg, func(k, v []byte) error {
			if len(k) < aggKeyLen || (k[8] != aggKindHour && k[8] != aggKindDay) {
				return fmt.Errorf("%w: aggregate key %x", ErrCorrupt, k)
			}
			return nil
		}},
	} {
		bk := tx.Bucket(b.name)
		if bk == nil {
			continue
		}
		m, err := resealBucket(bk, b.sc, b.check)
		if err != nil {
			return n, err
		}
		n += m
	}
	if kv := tx.Bucket(bucketKV); kv != nil {
		var names [][]byte
		if err := kv.ForEachBucket(func(ns []byte) error {
			names = append(names, bytes.Clone(ns))
			return nil
		}); err != nil {
			return n, err
		}
		for _, ns := range names {
			m, err := resealBucket(kv.Bucket(ns), kvScope(string(ns)), func(k, v []byte) error {
				if len(v) < 8 {
					return corrupt(kvName(string(ns), k), errMalformedBody)
				}
				return nil
			})
			if err != nil {
				return n, err
			}
			n += m
		}
	}
	meta := tx.Bucket(bucketMeta)
	for _, k := range [][]byte{keyCheckpoint, keyLastSeq, keyLastLoc} {
		v := meta.Get(k)
		if v == nil {
			continue
		}
		if len(v) != 8 {
			return n, corrupt(metaName(k), errMalformedBody)
		}
		if err := putMetaU64(meta, k, binary.BigEndian.Uint64(v)); err != nil {
			return n, err
		}
		n++
	}
	return n, meta.Put(keyFormat, u64(FormatVersion))
}

// resealBucket appends the checksum to every value of b (nested buckets
// are skipped) after check accepts it. bbolt forbids writes while a
// cursor walks, so it reads a chunk, writes it, and seeks past it.
func resealBucket(b *bolt.Bucket, sc scope, check func(k, v []byte) error) (int, error) {
	const chunk = 1024
	type rec struct{ k, v []byte }
	n := 0
	var after []byte
	for {
		var recs []rec
		c := b.Cursor()
		k, v := c.First()
		if after != nil {
			k, v = c.Seek(after)
			if k != nil && bytes.Equal(k, after) {
				k, v = c.Next()
			}
		}
		var last []byte
		for ; k != nil && len(recs) < chunk; k, v = c.Next() {
			last = k
			if v == nil {
				continue // a nested bucket
			}
			if err := check(k, v); err != nil {
				return n, err
			}
			body := append(make([]byte, 0, len(v)+crcLen), v...)
			recs = append(recs, rec{k: bytes.Clone(k), v: seal(sc, k, body)})
		}
		if last == nil {
			return n, nil
		}
		after = bytes.Clone(last)
		for _, r := range recs {
			if err := b.Put(r.k, r.v); err != nil {
				return n, err
			}
		}
		n += len(recs)
	}
}
