package store

import (
	"encoding/binary"
	"fmt"
	"math"

	bolt "go.etcd.io/bbolt"
)

// FrozenBlock is one stored block of frozen aggregate days of one series.
// Data is opaque to the store (the aggregate package encodes it).
type FrozenBlock struct {
	Meter    uint64
	Customer string
	First    int64 // unix seconds: the start of the block's span of 32 days (aggregate.BlockSpan)
	Data     []byte
}

// frozenKey is meter (8 bytes BE) | 'f' | first (8 bytes BE) | customer.
func frozenKey(meter uint64, customer string, first int64) []byte {
	return makeAggKey(meter, aggKindFrozen, first, customer)
}

// PutFrozen writes blocks and raises the frozen_through time to through
// (it never lowers it: the stored time is the greater of the two) in one
// transaction, synced before it returns (unless Options.NoFsync). A block
// is written once, when its days can no longer change; a block stored
// under the same (Meter, First, Customer) is replaced. The caller promises
// that every hour and day record starting before through belongs to a day
// kept in a stored block, the ones written now included: Open loads the
// aggregate records from there on only (LoadAggregatesFrom). The blocks'
// Data is copied into the file and not retained.
func (s *DB) PutFrozen(blocks []FrozenBlock, through int64) error {
	if err := s.check(); err != nil {
		return err
	}
	if s.opts.ReadOnly {
		return ErrReadOnly
	}
	ks := inKeyOrder(blocks, func(b *FrozenBlock) []byte { return frozenKey(b.Meter, b.Customer, b.First) })
	err := s.classify(s.bolt.Update(func(tx *bolt.Tx) error {
		agg := tx.Bucket(bucketAgg)
		for _, k := range ks {
			if err := putAgg(agg, k.key, k.rec.Data); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		old, err := s.frozenThrough(meta)
		if err != nil {
			return err
		}
		if through <= old {
			return nil
		}
		return putMetaU64(meta, keyFrozenThrough, uint64(through))
	}))
	if err == nil {
		s.counters.frozenBlocks.Add(int64(len(blocks)))
	}
	return err
}

// FrozenThrough returns the stored frozen_through time (unix seconds; 0
// when none was stored): every hour and day record that starts before it
// belongs to a day kept in a stored frozen block.
func (s *DB) FrozenThrough() (int64, error) {
	var t int64
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		t, err = s.frozenThrough(tx.Bucket(bucketMeta))
		return err
	})
	return t, err
}

func (s *DB) frozenThrough(meta *bolt.Bucket) (int64, error) {
	v, err := s.metaU64(meta, keyFrozenThrough)
	return int64(v), err
}

// ReadFrozen returns a copy of the Data of the stored block of (meter,
// customer) whose span starts at first, or nil when there is none. A
// block whose checksum fails is an error wrapping ErrCorrupt that names
// it.
func (s *DB) ReadFrozen(meter uint64, customer string, first int64) ([]byte, error) {
	k := frozenKey(meter, customer, first)
	return s.readAgg(k, func() string { return frozenName(k) })
}

// LoadFrozen calls fn with every stored frozen block, by meter, then
// first, then customer, in one read transaction. It seeks to each meter's
// blocks and does not read its hour and day records. The block and its
// Data are valid only during the call. A block whose checksum fails is an
// error wrapping ErrCorrupt that names it.
func (s *DB) LoadFrozen(fn func(b *FrozenBlock) error) error {
	return s.view(func(tx *bolt.Tx) error {
		var b FrozenBlock
		c := tx.Bucket(bucketAgg).Cursor()
		for k, v := c.First(); k != nil; {
			if len(k) < 9 {
				return fmt.Errorf("%w: aggregate key %x", ErrCorrupt, k)
			}
			m := binary.BigEndian.Uint64(k)
			switch {
			case k[8] < aggKindFrozen:
				k, v = c.Seek(frozenKey(m, "", 0))
				continue
			case k[8] > aggKindFrozen:
				if m == math.MaxUint64 {
					return nil
				}
				k, v = c.Seek(frozenKey(m+1, "", 0))
				continue
			case len(k) < aggKeyLen:
				return fmt.Errorf("%w: aggregate key %x", ErrCorrupt, k)
			}
			data, err := s.open(scopeAgg, k, v, func() string { return frozenName(k) })
			if err != nil {
				return err
			}
			b = FrozenBlock{Meter: m, First: int64(binary.BigEndian.Uint64(k[9:aggKeyLen])), Customer: string(k[aggKeyLen:]), Data: data}
			if err := fn(&b); err != nil {
				return err
			}
			k, v = c.Next()
		}
		return nil
	})
}
