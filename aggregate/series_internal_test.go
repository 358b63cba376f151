package aggregate

import (
	"fmt"
	"math/bits"
	"slices"
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

// CheckBuckets returns an error naming the first bucket of tb whose minute
// cells disagree with its present bits (their number, their array's length
// class, their sum) or whose day bucket's chunk bits reach the bits of an
// hour's minute cells, or the first count of the shards' Stats counts
// that disagrees with the buckets. The model tests call it after every
// step.
func CheckBuckets(tb *Table) error {
	for i := range tb.shards {
		sh := &tb.shards[i]
		var n counts
		for _, head := range sh.series {
			for s := head; s != nil; s = s.next {
				n.series++
				var err error
				s.chunks.Ascend(func(r ref) bool {
					n.chunks++
					err = r.c.check(r.start, &n)
					return err == nil
				})
				if err != nil {
					return fmt.Errorf("series %+v: %w", s.key, err)
				}
			}
		}
		got := sh.n
		got.recent = 0
		got.frozenDays, got.frozenHours, got.frozenMinutes, got.frozenBytes, got.storedBlocks = 0, 0, 0, 0, 0
		if got != n {
			return fmt.Errorf("shard %d counts %+v, the buckets hold %+v", i, got, n)
		}
	}
	return nil
}

func (c *chunk) check(dstart int64, n *counts) error {
	if c.day.present&(plainBit|cellsMask) != 0 {
		return fmt.Errorf("day %d: present %#x reaches the minute cells' bits", dstart, c.day.present)
	}
	if c.has()&dayBit != 0 {
		n.days++
		if c.day.xt() != nil {
			n.exts++
		}
		n.raw += int64(len(c.day.rawEntries()))
	} else if c.day.x != nil || c.day.count != 0 {
		return fmt.Errorf("day %d: no day bucket, but x %p count %d", dstart, c.day.x, c.day.count)
	}
	hs := c.hourSlice()
	if len(hs) > 0 && len(hs) > hourCaps[c.class()] {
		return fmt.Errorf("day %d: %d hours in an array of %d", dstart, len(hs), hourCaps[c.class()])
	}
	for m := c.has() & hourBits; m != 0; m &= m - 1 {
		i := bits.TrailingZeros32(m)
		h := &hs[c.slot[i]]
		if err := h.check(); err != nil {
			return fmt.Errorf("day %d hour %d: %w", dstart, i, err)
		}
		n.hours++
		n.minutes += int64(h.minuteCount())
		n.minuteSlots += int64(cap(h.minuteCells()))
		n.raw += int64(len(h.rawEntries()))
		if h.xt() != nil {
			n.exts++
		}
	}
	return nil
}

func (h *bucket) check() error {
	k := h.minuteCount()
	if h.present&plainBit == 0 && h.present&cellsMask != 0 {
		return fmt.Errorf("present %#x: a class without plainBit", h.present)
	}
	if h.present&plainBit != 0 && h.x == nil {
		return fmt.Errorf("present %#x: plainBit and no cells", h.present)
	}
	ms := h.minuteCells()
	switch {
	case k < 2 && ms != nil:
		return fmt.Errorf("%d minutes and %d minute cells", k, len(ms))
	case k < 2:
		return nil
	case len(ms) != k:
		return fmt.Errorf("%d minutes and %d minute cells", k, len(ms))
	case !slices.Contains(minuteCaps[:], cap(ms)):
		return fmt.Errorf("minute cells in an array of %d", cap(ms))
	}
	if h.present&plainBit != 0 && minuteCaps[h.present&cellsMask>>cellsShift] != cap(ms) {
		return fmt.Errorf("class %d, array of %d", h.present&cellsMask>>cellsShift, cap(ms))
	}
	var c Cell
	for j, mc := range ms {
		if mc.Count <= 0 {
			return fmt.Errorf("minute cell %d of %d has count %d", j, k, mc.Count)
		}
		c.merge(mc)
	}
	for j, mc := range ms[len(ms):cap(ms)] {
		if mc != (Cell{}) {
			return fmt.Errorf("unused minute cell %d of the array is %+v", len(ms)+j, mc)
		}
	}
	if hc := h.cell(); c.Count != hc.Count || c.Sum != hc.Sum || hc.Last != (Entry{}) && hc.Last != c.Last {
		return fmt.Errorf("minute cells add up to %+v, the hour holds %+v", c, hc)
	}
	return nil
}
