package aggregate

import (
	"fmt"
	"testing"
	"unsafe"
)

// Keys whose hashes collide share a map entry and chain: each finds its
// own series, and removing one in any position leaves the others.
func TestSeriesHashCollision(t *testing.T) {
	for _, drop := range []int{0, 1, 2} {
		tb := NewTable(1)
		sh := &tb.shards[0]
		keys := []Key{{Meter: 1, Customer: "a"}, {Meter: 1, Customer: "b"}, {Meter: 2, Customer: "a"}}
		const h = 42 // every key gets the same hash
		for i, k := range keys {
			sh.seriesLocked(h, k).apply(Mode{}, Entry{Seq: uint64(i + 1), Timestamp: 3600, Value: int64(i + 1)}, sh)
		}
		if sh.n.series != 3 || len(sh.series) != 1 {
			t.Fatalf("%d series in %d map entries, want 3 in 1", sh.n.series, len(sh.series))
		}
		sh.removeLocked(h, sh.lookupLocked(h, keys[drop]))
		for i, k := range keys {
			s := sh.lookupLocked(h, k)
			if i == drop {
				if s != nil {
					t.Fatalf("drop %d: key %v still found", drop, k)
				}
				continue
			}
			if s == nil || s.key != k || s.total(0, 86400, nil).Sum != Int128Of(int64(i+1)) {
				t.Fatalf("drop %d: key %v finds %+v", drop, k, s)
			}
		}
		if sh.n.series != 2 {
			t.Fatalf("drop %d: %d series, want 2", drop, sh.n.series)
		}
	}
}

// A chunk is one cache line.
func TestChunkSize(t *testing.T) {
	if n := unsafe.Sizeof(chunk{}); n != 64 {
		t.Fatalf("a chunk is %d bytes, want 64", n)
	}
}

// CheckRecent returns an error naming the first series of tb whose hot
// chunk or recent array disagrees with its tree: each holds a day's chunk
// only while the tree holds it for that day. The model tests call it
// after every step.
func CheckRecent(tb *Table) error {
	for i := range tb.shards {
		sh := &tb.shards[i]
		for _, head := range sh.series {
			for s := head; s != nil; s = s.next {
				if err := s.checkRecent(); err != nil {
					return fmt.Errorf("series %+v: %w", s.key, err)
				}
			}
		}
	}
	return nil
}

func (s *series) checkRecent() error {
	if s.hot != nil {
		if r, _ := s.chunks.Get(ref{start: s.hotStart}); r.c != s.hot {
			return fmt.Errorf("the hot chunk of day %d is not the tree's", s.hotStart)
		}
	}
	if s.recent == nil {
		if n := s.chunks.Len(); n > 1 {
			return fmt.Errorf("%d chunks and no recent array", n)
		}
		return nil
	}
	for k, r := range s.recent {
		if r.c == nil {
			continue
		}
		if recentSlot(r.start) != k {
			return fmt.Errorf("slot %d holds day %d", k, r.start)
		}
		if want, _ := s.chunks.Get(ref{start: r.start}); want.c != r.c {
			return fmt.Errorf("slot %d holds a chunk of day %d that the tree does not", k, r.start)
		}
	}
	return nil
}
