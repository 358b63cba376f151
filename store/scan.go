package store

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/meterdb/meterdb/internal/binread"
	"github.com/meterdb/meterdb/internal/idhash"
)

// RecordHeader is what the first bytes of a log record tell: enough to
// plan a parallel scan of identifiers without reading the records.
type RecordHeader struct {
	Loc      uint64
	Events   int   // events of an events record; 0 for cancellations
	Received int64 // receipt time of an events record's events
	Cancels  bool  // a cancellations record
}

// Headers calls fn with the header of every log record at or before upTo,
// in location order, reading only each record's first bytes, and checks
// the log's continuity as Replay does. Checksums are not checked here:
// ScanHashes, Group and ReplayAfter check those of the records they read. It also sets the log's record and byte counts (Stats) when upTo
// covers the whole log.
func (s *DB) Headers(upTo uint64, fn func(RecordHeader) error) error {
	var records, bytes int64
	whole := true
	err := s.view(func(tx *bolt.Tx) error {
		ck, err := s.metaU64(tx.Bucket(bucketMeta), keyCheckpoint)
		if err != nil {
			return err
		}
		next := uint64(0)
		c := tx.Bucket(bucketLog).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) != 8 {
				return fmt.Errorf("%w: log key of %d bytes", ErrCorrupt, len(k))
			}
			loc := binary.BigEndian.Uint64(k)
			if loc > upTo {
				whole = false
				break
			}
			records, bytes = records+1, bytes+int64(len(v))
			if err := checkContinuity(next, loc, ck); err != nil {
				return err
			}
			next = loc + 1
			h, err := readHeader(loc, v)
			if err != nil {
				return err
			}
			if err := fn(h); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && whole {
		s.counters.logRecords.Store(records)
		s.counters.logBytes.Store(bytes)
	}
	return err
}

// readHeader decodes the start of the log record v at loc.
func readHeader(loc uint64, v []byte) (RecordHeader, error) {
	h := RecordHeader{Loc: loc}
	if len(v) > 0 && v[0] == kindIndexed {
		// Skip the hash table: its size is in the header.
		d := binread.New(v[1:])
		n := d.Count(8)
		if d.Bad() || len(v)-1-d.Len()+8*n+crcLen >= len(v) {
			return h, corrupt(logName(loc), errMalformed)
		}
		v = v[1+len(v)-1-d.Len()+8*n+crcLen:]
	}
	d := binread.New(v) // the header comes first; the checksum last
	switch d.Byte() {
	case kindEvents:
		h.Events = d.Count(6)
		if h.Events > 0 {
			d.Uvarint() // first seq
			h.Received = d.Varint()
		}
	case kindCancels:
		h.Cancels = true
	default:
		d.Fail()
	}
	if d.Bad() {
		return h, corrupt(logName(loc), errMalformed)
	}
	return h, nil
}

// ReplayAfter decodes every log record after location after, in location
// order, and passes it to full, checking checksums and continuity (the
// first record must be after+1 unless the log ends before it). It is
// Replay without the identifier scan of the records at or before after.
func (s *DB) ReplayAfter(after uint64, full func(loc uint64, g *Group) error) error {
	return s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLog).Cursor()
		var seek [8]byte
		binary.BigEndian.PutUint64(seek[:], after+1)
		next := after + 1
		for k, v := c.Seek(seek[:]); k != nil; k, v = c.Next() {
			if len(k) != 8 {
				return fmt.Errorf("%w: log key of %d bytes", ErrCorrupt, len(k))
			}
			loc := binary.BigEndian.Uint64(k)
			if loc != next {
				return corrupt(logName(next), errMissing)
			}
			next = loc + 1
			g, err := s.readGroup(k, v)
			if err != nil {
				return err
			}
			if err := full(loc, g); err != nil {
				return err
			}
		}
		return nil
	})
}

// ScanHashes reads the identifier hashes of the events records at
// locations [first, last], passes times over the range in one read
// transaction: fn receives the pass (0, 1, …), each events record's
// location and receipt time, and hashes, the keyed hashes of its
// identifiers, 8 bytes big-endian per event in event order, as format 3
// keeps them (for a record written before format 3 they are computed from
// its identifiers). The first pass checks every record's checksum and the
// range's continuity (a missing location is ErrCorrupt); later passes
// read the same bytes again and check only the hashes' own checksum.
// Cancellation records are skipped. hashes is valid during the call only.
// Different ranges can be scanned by concurrent calls.
func (s *DB) ScanHashes(first, last uint64, passes int, fn func(pass int, loc uint64, received int64, hashes []byte)) error {
	var scratch []byte // hashes of records written before format 3
	return s.view(func(tx *bolt.Tx) error {
		var seek [8]byte
		binary.BigEndian.PutUint64(seek[:], first)
		for pass := range passes {
			c := tx.Bucket(bucketLog).Cursor()
			want := first
			for k, v := c.Seek(seek[:]); want <= last; k, v = c.Next() {
				if len(k) != 8 || binary.BigEndian.Uint64(k) != want {
					return corrupt(logName(want), errMissing)
				}
				loc := want
				want++
				if !isEvents(v) {
					continue
				}
				if pass == 0 {
					if _, err := s.open(scopeLog, k, v, func() string { return logName(loc) }); err != nil {
						return err
					}
				}
				h, err := readHeader(loc, v)
				if err != nil {
					return err
				}
				if h.Events == 0 {
					continue
				}
				if v[0] == kindIndexed {
					hashes, _, err := splitIndexed(v[:len(v)-crcLen])
					if err != nil {
						return corrupt(logName(loc), err)
					}
					fn(pass, loc, h.Received, hashes)
					continue
				}
				body, err := s.open(scopeLog, k, v, func() string { return logName(loc) })
				if err != nil {
					return err
				}
				scratch = scratch[:0]
				err = scanIdentifiers(body, func(_ int64, id []byte) {
					scratch = binary.BigEndian.AppendUint64(scratch, idhash.Sum(s.idKey, id))
				})
				if err != nil {
					return corrupt(logName(loc), err)
				}
				fn(pass, loc, h.Received, scratch)
			}
		}
		return nil
	})
}
