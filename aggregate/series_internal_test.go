package aggregate

import (
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
