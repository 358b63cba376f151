package store

import (
	"encoding/binary"

	bolt "go.etcd.io/bbolt"
)

// kvRecord is one adapter record: in bucket "aux", sub-bucket ns, key key,
// value = 8-byte big-endian expiry (unix seconds), the value, and the
// checksum (checksum.go). A nil value deletes.
type kvRecord struct {
	ns, key string
	value   []byte
	del     bool
	expires int64
	seq     uint64
}

func putKV(tx *bolt.Tx, r *kvRecord) error {
	kvb := tx.Bucket(bucketKV)
	if r.del {
		if b := kvb.Bucket([]byte(r.ns)); b != nil {
			return b.Delete([]byte(r.key))
		}
		return nil
	}
	b, err := kvb.CreateBucketIfNotExists([]byte(r.ns))
	if err != nil {
		return err
	}
	k := []byte(r.key)
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(r.value)+crcLen), uint64(r.expires))
	return b.Put(k, seal(kvScope(r.ns), k, append(v, r.value...)))
}

// PutKV stores value under (ns, key) until expires (unix seconds), as
// durable as Append. The value is copied.
func (s *DB) PutKV(ns, key string, value []byte, expires int64) error {
	return s.writeKV(&kvRecord{ns: ns, key: key, value: append([]byte(nil), value...), expires: expires})
}

// DeleteKV removes (ns, key).
func (s *DB) DeleteKV(ns, key string) error {
	return s.writeKV(&kvRecord{ns: ns, key: key, del: true})
}

// KVWrite is one change of WriteKV: a put of Value until Expires (unix
// seconds), or with Delete a removal.
type KVWrite struct {
	NS, Key string
	Value   []byte
	Expires int64
	Delete  bool
}

// WriteKV applies ws, in order, in one transaction: all of them are
// committed or none, as durable as Append. Values are copied.
func (s *DB) WriteKV(ws []KVWrite) error {
	if len(ws) == 0 {
		return nil
	}
	rs := make([]*kvRecord, len(ws))
	for i, w := range ws {
		if !w.Delete {
			w.Value = append([]byte(nil), w.Value...)
		}
		rs[i] = w.record()
	}
	return s.writeKV(rs...)
}

// record returns w as the committer writes it; it shares w.Value.
func (w KVWrite) record() *kvRecord {
	r := &kvRecord{ns: w.NS, key: w.Key, del: w.Delete, expires: w.Expires}
	if !w.Delete {
		r.value = w.Value
	}
	return r
}

func (s *DB) writeKV(rs ...*kvRecord) error {
	it := &item{kvs: rs}
	if s.opts.Durability == DurabilitySync {
		it.done = make(chan struct{})
	}
	if err := s.enqueue(it); err != nil {
		return err
	}
	if it.done != nil {
		<-it.done
		return it.err
	}
	return nil
}

// GetKV returns a copy of the value under (ns, key) if it expires after
// now (unix seconds).
func (s *DB) GetKV(ns, key string, now int64) ([]byte, bool, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, false, ErrClosed
	}
	if r, ok := s.kvPend[[2]string{ns, key}]; ok {
		s.mu.Unlock()
		if r.del || r.expires <= now {
			return nil, false, nil
		}
		return append([]byte(nil), r.value...), true, nil
	}
	s.mu.Unlock()
	var out []byte
	found := false
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKV).Bucket([]byte(ns))
		if b == nil {
			return nil
		}
		k := []byte(key)
		v := b.Get(k)
		if v == nil {
			return nil
		}
		v, err := s.readKV(ns, k, v)
		if err != nil {
			return err
		}
		if int64(binary.BigEndian.Uint64(v)) <= now {
			return nil
		}
		out, found = append([]byte(nil), v[8:]...), true
		return nil
	})
	return out, found, err
}

// readKV checks the stored record v of (ns, k) and returns expiry and
// value (aliasing v).
func (s *DB) readKV(ns string, k, v []byte) ([]byte, error) {
	name := func() string { return kvName(ns, k) }
	body, err := s.open(kvScope(ns), k, v, name)
	if err != nil {
		return nil, err
	}
	if len(body) < 8 {
		return nil, corrupt(name(), errMalformedBody)
	}
	return body, nil
}

// ListKV calls fn, in key order, with each unexpired record of ns whose
// key is greater than after, until fn returns false. Records still queued
// (buffered durability) are not listed until committed; call Sync first to
// see them. Slices passed to fn are valid during the call only.
func (s *DB) ListKV(ns, after string, now int64, fn func(key string, value []byte) bool) error {
	if err := s.check(); err != nil {
		return err
	}
	return s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKV).Bucket([]byte(ns))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, v := c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, v = c.Next()
		}
		for ; k != nil; k, v = c.Next() {
			v, err := s.readKV(ns, k, v)
			if err != nil {
				return err
			}
			if int64(binary.BigEndian.Uint64(v)) <= now {
				continue
			}
			if !fn(string(k), v[8:]) {
				return nil
			}
		}
		return nil
	})
}
