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
		own := owners{cells: map[uint64]int{}, exts: map[uint64]bool{}}
		for _, head := range sh.series {
			for s := head; s != nil; s = s.next {
				n.series++
				if s.ar != &sh.ar {
					return fmt.Errorf("series %+v: not its shard's arena", s.key)
				}
				var err error
				s.chunks.Ascend(func(r ref) bool {
					n.chunks++
					err = r.c.check(r.start, &n, &sh.ar, &own)
					return err == nil
				})
				if err != nil {
					return fmt.Errorf("series %+v: %w", s.key, err)
				}
			}
		}
		if err := sh.ar.check(&own); err != nil {
			return fmt.Errorf("shard %d arena: %w", i, err)
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

// owners collects the arena numbers the buckets of a shard hold: the
// class of each minute cells' array, and the extensions.
type owners struct {
	cells map[uint64]int
	exts  map[uint64]bool
}

// add records that a bucket holds what h names, and fails on a number
// that another bucket holds too.
func (o *owners) add(h *bucket, a *arena) error {
	if x := h.cellsNumber(a); x != 0 {
		if _, dup := o.cells[x]; dup {
			return fmt.Errorf("minute cells %d held twice", x)
		}
		o.cells[x] = h.cellClass()
	}
	if h.xt(a) != nil {
		if o.exts[h.x] {
			return fmt.Errorf("extension %d held twice", h.x)
		}
		o.exts[h.x] = true
	}
	return nil
}

// check returns an error when the arena's free lists, blocks or
// extension slots disagree with what the buckets hold (own): an array
// both held and free, two arrays overlapping, cells neither held, free
// nor unused (lost), a held extension that is nil or listed as free.
func (a *arena) check(own *owners) error {
	var total int64
	for _, b := range a.blocks {
		total += int64(len(b))
	}
	if total != a.cells {
		return fmt.Errorf("%d cells in blocks, %d counted", total, a.cells)
	}
	type span struct{ block, lo, hi uint64 }
	var spans []span
	add := func(x uint64, class int) error {
		r := x - 1
		if x == 0 || r>>blockShift >= uint64(len(a.blocks)) || int(r&blockMask)+minuteCaps[class] > len(a.blocks[r>>blockShift]) {
			return fmt.Errorf("array %d of class %d outside the blocks", x, class)
		}
		spans = append(spans, span{r >> blockShift, r & blockMask, r&blockMask + uint64(minuteCaps[class])})
		return nil
	}
	for x, class := range own.cells {
		if err := add(x, class); err != nil {
			return err
		}
	}
	for class, x := range a.free {
		for steps := 0; x != 0; steps++ {
			if _, held := own.cells[x]; held {
				return fmt.Errorf("array %d both held and free", x)
			}
			if err := add(x, class); err != nil {
				return err
			}
			if steps > len(spans) {
				return fmt.Errorf("free list of class %d loops", class)
			}
			x = uint64(a.cellArray(x, class)[0].Count)
		}
	}
	slices.SortFunc(spans, func(p, q span) int {
		if p.block != q.block {
			return int(p.block) - int(q.block)
		}
		return int(p.lo) - int(q.lo)
	})
	accounted := a.skipped
	if k := len(a.blocks); k > 0 {
		accounted += int64(len(a.blocks[k-1]) - a.used)
	}
	for i, p := range spans {
		if q := spans[min(i+1, len(spans)-1)]; i+1 < len(spans) && p.block == q.block && p.hi > q.lo {
			return fmt.Errorf("arrays overlap in block %d: [%d, %d) and [%d, %d)", p.block, p.lo, p.hi, q.lo, q.hi)
		}
		accounted += int64(p.hi - p.lo)
	}
	if accounted != a.cells {
		return fmt.Errorf("%d cells held, free or unused, of %d: %d lost", accounted, a.cells, a.cells-accounted)
	}
	for x := range own.exts {
		if x > uint64(len(a.exts)) || a.exts[x-1] == nil {
			return fmt.Errorf("extension %d held but not in the arena", x)
		}
	}
	for _, x := range a.freeExts {
		if own.exts[x] || a.exts[x-1] != nil {
			return fmt.Errorf("extension %d free but held or set", x)
		}
	}
	if len(own.exts)+len(a.freeExts) != len(a.exts) {
		return fmt.Errorf("%d extensions held and %d free of %d", len(own.exts), len(a.freeExts), len(a.exts))
	}
	return nil
}

func (c *chunk) check(dstart int64, n *counts, a *arena, own *owners) error {
	if c.day.present&(plainBit|cellsMask) != 0 {
		return fmt.Errorf("day %d: present %#x reaches the minute cells' bits", dstart, c.day.present)
	}
	if c.has()&dayBit != 0 {
		n.days++
		if c.day.xt(a) != nil {
			n.exts++
		}
		n.raw += int64(len(c.day.rawEntries(a)))
		if err := own.add(&c.day, a); err != nil {
			return fmt.Errorf("day %d: %w", dstart, err)
		}
	} else if c.day.x != 0 || c.day.count != 0 {
		return fmt.Errorf("day %d: no day bucket, but x %d count %d", dstart, c.day.x, c.day.count)
	}
	hs := c.hourSlice()
	if len(hs) > 0 && len(hs) > hourCaps[c.class()] {
		return fmt.Errorf("day %d: %d hours in an array of %d", dstart, len(hs), hourCaps[c.class()])
	}
	for m := c.has() & hourBits; m != 0; m &= m - 1 {
		i := bits.TrailingZeros32(m)
		h := &hs[c.slot[i]]
		if err := h.check(dstart+int64(i)*hourSecs, a); err != nil {
			return fmt.Errorf("day %d hour %d: %w", dstart, i, err)
		}
		if err := own.add(h, a); err != nil {
			return fmt.Errorf("day %d hour %d: %w", dstart, i, err)
		}
		n.hours++
		n.minutes += int64(h.minuteCount())
		n.minuteSlots += int64(cap(h.minuteCells(a)))
		n.raw += int64(len(h.rawEntries(a)))
		if h.xt(a) != nil {
			n.exts++
		}
	}
	return nil
}

func (h *bucket) check(start int64, a *arena) error {
	k := h.minuteCount()
	if h.cellsNumber(a) == 0 && h.present&cellsMask != 0 {
		return fmt.Errorf("present %#x: a class without minute cells", h.present)
	}
	if h.present&plainBit != 0 && h.x == 0 {
		return fmt.Errorf("present %#x: plainBit and no cells", h.present)
	}
	// The array's length follows from the class: what must hold is that
	// the class names a length and the minutes fit in it (minuteCells
	// would panic otherwise).
	x, class := h.cellsNumber(a), h.cellClass()
	switch {
	case class >= len(minuteCaps):
		return fmt.Errorf("present %#x: class %d names no array length", h.present, class)
	case k < 2 && x != 0:
		return fmt.Errorf("%d minutes and an array of minute cells", k)
	case k < 2:
		return nil
	case x == 0:
		return fmt.Errorf("%d minutes and no minute cells", k)
	case k > minuteCaps[class]:
		return fmt.Errorf("%d minutes in an array of %d cells", k, minuteCaps[class])
	}
	ms := h.minuteCells(a)
	for j, mc := range ms {
		if mc.Count <= 0 {
			return fmt.Errorf("minute cell %d of %d has count %d", j, k, mc.Count)
		}
	}
	var c Cell
	h.eachMinute(start, a, func(_ int64, mc Cell) { c.merge(mc) })
	for j, mc := range ms[len(ms):cap(ms)] {
		if mc != (minuteCell{}) {
			return fmt.Errorf("unused minute cell %d of the array is %+v", len(ms)+j, mc)
		}
	}
	if hc := h.cell(a); c.Count != hc.Count || c.Sum != hc.Sum || hc.Last != (Entry{}) && hc.Last != c.Last {
		return fmt.Errorf("minute cells add up to %+v, the hour holds %+v", c, hc)
	}
	return nil
}

// The minute cells an hour gives back are reused by the next hour that
// needs arrays of the same lengths: the arena does not grow, and it is
// freed when the shard's last series goes.
func TestArenaReuse(t *testing.T) {
	tb := NewTable(1)
	sh := &tb.shards[0]
	a, b := Key{Meter: 1, Customer: "a"}, Key{Meter: 1, Customer: "b"}
	const day = 86400 * 100
	tb.Apply(b, Mode{}, Entry{Seq: 1, Timestamp: day, Value: 1}) // keeps the shard's arena
	fill := func(hour int64, seq uint64) []Entry {
		var es []Entry
		for m := range int64(60) {
			e := Entry{Seq: seq + uint64(m), Timestamp: day + hour*3600 + m*60, Value: m}
			tb.Apply(a, Mode{}, e)
			es = append(es, e)
		}
		return es
	}
	handedOut := func() int64 { // cells ever handed out of the blocks
		return sh.ar.cells - sh.ar.skipped - int64(len(sh.ar.blocks[len(sh.ar.blocks)-1])-sh.ar.used)
	}
	es := fill(1, 100)
	cells := handedOut()
	if cells != 2+4+8+16+32+60 || sh.n.minuteSlots != 60 {
		t.Fatalf("after an hour of 60 minutes: %d cells handed out, %d held", cells, sh.n.minuteSlots)
	}
	for _, e := range es {
		if !tb.Cancel(a, Mode{}, e) {
			t.Fatalf("Cancel %+v", e)
		}
	}
	if sh.n.minuteSlots != 0 {
		t.Fatalf("%d cells held after cancelling every event of the hour", sh.n.minuteSlots)
	}
	es = fill(2, 200)
	if handedOut() != cells {
		t.Fatalf("a second hour of 60 minutes took %d cells from the blocks after %d", handedOut(), cells)
	}
	if err := CheckBuckets(tb); err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		tb.Cancel(a, Mode{}, e)
	}
	tb.Cancel(b, Mode{}, Entry{Seq: 1, Timestamp: day, Value: 1})
	if sh.n.series != 0 || sh.ar.cells != 0 || len(sh.ar.blocks) != 0 {
		t.Fatalf("%d series left, arena of %d cells in %d blocks; want none", sh.n.series, sh.ar.cells, len(sh.ar.blocks))
	}
}

// A shard's arena grows to any number of blocks, none beyond maxBlock
// cells, and every array it hands out lies inside one.
func TestArenaManyBlocks(t *testing.T) {
	var a arena
	seen := map[uint64]bool{}
	for i := range 100 * maxBlock / 60 { // some 100 blocks of 60-cell arrays
		x := a.allocCells(5)
		if seen[x] {
			t.Fatalf("array %d handed out twice", x)
		}
		seen[x] = true
		ms := a.cellArray(x, 5)
		ms[0].Count, ms[59].Count = int64(i), int64(i) // inside its block
	}
	if len(a.blocks) < 80 {
		t.Fatalf("%d blocks", len(a.blocks))
	}
	var total int64
	for i, b := range a.blocks {
		if len(b) > maxBlock || len(b) < firstBlock {
			t.Fatalf("block %d holds %d cells", i, len(b))
		}
		total += int64(len(b))
	}
	if total != a.cells {
		t.Fatalf("%d cells in blocks, %d counted", total, a.cells)
	}
}
