package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/meterdb/meterdb/internal/idhash"
)

// scanGroup is an events record of n events received at received, with
// identifiers "<loc>-<i>".
func scanGroup(loc uint64, n int, received int64) *Group {
	g := &Group{}
	for i := range n {
		g.Events = append(g.Events, Event{Seq: loc*100 + uint64(i), Meter: 1, Customer: "c",
			Identifier: fmt.Sprintf("%d-%d", loc, i), Value: 1, Timestamp: received, Received: received})
	}
	return g
}

// Headers, ScanHashes and ReplayAfter together read what Replay reads:
// headers of every record, the identifier hashes of ranges in parallel,
// and the records after a location in full.
func TestScan(t *testing.T) {
	s, _ := openTemp(t, nil)
	for loc := uint64(1); loc <= 30; loc++ {
		g := scanGroup(loc, int(loc%4), int64(1000+loc))
		if loc == 7 {
			g = &Group{Cancels: []Cancel{{Seq: 101, Received: 1007, Meter: 1, Customer: "c", Value: 1, Timestamp: 1001}}}
		}
		if _, err := s.Append(g); err != nil {
			t.Fatal(err)
		}
	}
	var hs []RecordHeader
	if err := s.Headers(20, func(h RecordHeader) error { hs = append(hs, h); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(hs) != 20 || hs[6] != (RecordHeader{Loc: 7, Cancels: true}) || hs[4] != (RecordHeader{Loc: 5, Events: 1, Received: 1005}) || hs[3].Events != 0 {
		t.Fatalf("headers %+v", hs)
	}
	// Two passes over each range, the ranges in parallel: the same hashes,
	// the identifiers' keyed hashes in event order, at their records.
	var mu sync.Mutex
	got := [2]map[uint64]uint64{{}, {}} // by pass: hash -> location
	ranges := [][2]uint64{{1, 6}, {7, 13}, {14, 20}}
	var wg sync.WaitGroup
	for r := range ranges {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.ScanHashes(ranges[r][0], ranges[r][1], 2, func(pass int, loc uint64, received int64, hashes []byte) {
				if loc < ranges[r][0] || loc > ranges[r][1] || received != int64(1000+loc) || len(hashes) != 8*int(loc%4) {
					t.Errorf("range %d pass %d: %d hashes at %d received %d", r, pass, len(hashes)/8, loc, received)
				}
				mu.Lock()
				for k := 0; k+8 <= len(hashes); k += 8 {
					got[pass][binary.BigEndian.Uint64(hashes[k:])] = loc
				}
				mu.Unlock()
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	want := 0
	for loc := uint64(1); loc <= 20; loc++ {
		if loc == 7 {
			continue
		}
		for i := range int(loc % 4) {
			want++
			h := idhash.Sum(s.idKey, fmt.Sprintf("%d-%d", loc, i))
			if got[0][h] != loc || got[1][h] != loc {
				t.Errorf("hash of identifier %d-%d not scanned at %d in both passes", loc, i, loc)
			}
		}
	}
	if len(got[0]) != want || len(got[1]) != want {
		t.Errorf("%d and %d hashes scanned, want %d", len(got[0]), len(got[1]), want)
	}
	var after []uint64
	if err := s.ReplayAfter(20, func(loc uint64, g *Group) error { after = append(after, loc); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(after) != 10 || after[0] != 21 || after[9] != 30 {
		t.Fatalf("ReplayAfter(20) replayed %v", after)
	}
}

// A damaged record, a missing location or a range past the end of the
// log is ErrCorrupt naming the record.
func TestScanCorrupt(t *testing.T) {
	s, path := openTemp(t, nil)
	for loc := uint64(1); loc <= 6; loc++ {
		s.Append(scanGroup(loc, 2, 1000))
	}
	s.Close()
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.Update(func(tx *bolt.Tx) error {
		lb := tx.Bucket(bucketLog)
		v := append([]byte(nil), lb.Get(u64(2))...)
		v[len(v)-5] ^= 1 // a flipped bit in the body: the checksum fails
		lb.Put(u64(2), v)
		return lb.Delete(u64(5))
	})
	b.Close()
	s, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nop := func(int, uint64, int64, []byte) {}
	for _, tc := range []struct {
		r    [2]uint64
		want string
	}{{[2]uint64{1, 3}, "log record 2"}, {[2]uint64{4, 6}, "log record 5"}, {[2]uint64{6, 9}, "log record 7"}} {
		err := s.ScanHashes(tc.r[0], tc.r[1], 2, nop)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ScanHashes(%v) = %v, want ErrCorrupt naming %s", tc.r, err, tc.want)
		}
	}
	if err := s.Headers(9, func(RecordHeader) error { return nil }); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Headers over a missing location: %v", err)
	}
	if err := s.ReplayAfter(3, func(uint64, *Group) error { return nil }); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ReplayAfter over a missing location: %v", err)
	}
	if err := s.ReplayAfter(1, func(uint64, *Group) error { return nil }); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ReplayAfter over a damaged record: %v", err)
	}
}

// Every file has its own secret key of identifier hashes, kept across
// reopens; the records keep the identifiers' hashes under it (the dedupe
// index loads them with the same key); a format 3 file without its key is
// damaged.
func TestIdentKey(t *testing.T) {
	a, path := openTemp(t, nil)
	b, _ := openTemp(t, nil)
	ka, kb := a.IdentKey(), b.IdentKey()
	if ka == kb || ka == [idhash.Size]byte{} {
		t.Fatalf("two new files have keys %x and %x", ka, kb)
	}
	g := sampleGroup(1)
	loc, err := a.Append(g)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	a, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.IdentKey() != ka {
		t.Fatalf("key %x after a reopen, was %x", a.IdentKey(), ka)
	}
	key, _ := idhash.Parse(ka[:])
	err = a.ScanHashes(loc, loc, 1, func(_ int, _ uint64, _ int64, hashes []byte) {
		for i := range g.Events {
			if h := binary.BigEndian.Uint64(hashes[8*i:]); h != idhash.Sum(key, g.Events[i].Identifier) {
				t.Errorf("stored hash %d is %x, want the keyed hash of %s", i, h, g.Events[i].Identifier)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyIdentKey) })
	db.Close()
	if _, err := Open(path, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of a format 3 file without its key: %v, want ErrCorrupt", err)
	}
}
