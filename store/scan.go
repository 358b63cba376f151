package store

import (
	"encoding/binary"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/meterdb/meterdb/internal/binread"
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
// ScanIdentifiers, Group and ReplayAfter check those of the records they
// read. It also sets the log's record and byte counts (Stats) when upTo
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

// ScanIdentifiers calls ident with every identifier of the events records
// at locations [r[0], r[1]] of each range r of ranges, and its record's
// location and receipt time, checking each record's checksum. The ranges
// are scanned on up to workers goroutines, each range by one goroutine in
// its own read transaction, in location order; ident receives the range's
// index and must be safe for concurrent calls with different indexes. id
// is valid during the call only. Cancellation records are skipped; a
// location missing from a range is ErrCorrupt.
func (s *DB) ScanIdentifiers(ranges [][2]uint64, workers int, ident func(r int, loc uint64, received int64, id []byte)) error {
	next := make(chan int, len(ranges))
	for i := range ranges {
		next <- i
	}
	close(next)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range max(1, min(workers, len(ranges))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := s.scanRange(i, ranges[i], ident); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

func (s *DB) scanRange(i int, r [2]uint64, ident func(r int, loc uint64, received int64, id []byte)) error {
	return s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLog).Cursor()
		want := r[0]
		var seek [8]byte
		binary.BigEndian.PutUint64(seek[:], r[0])
		for k, v := c.Seek(seek[:]); want <= r[1]; k, v = c.Next() {
			if len(k) != 8 || binary.BigEndian.Uint64(k) != want {
				return corrupt(logName(want), errMissing)
			}
			loc := want
			want++
			if !isEvents(v) {
				continue
			}
			body, err := s.open(scopeLog, k, v, func() string { return logName(loc) })
			if err != nil {
				return err
			}
			if err := scanIdentifiers(body, func(received int64, id []byte) { ident(i, loc, received, id) }); err != nil {
				return corrupt(logName(loc), err)
			}
		}
		return nil
	})
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
