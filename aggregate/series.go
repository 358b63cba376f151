package aggregate

import (
	"math/bits"
	"slices"
	"unsafe"

	"github.com/google/btree"
)

const (
	minuteSecs = 60
	hourSecs   = 3600
	daySecs    = 86400
)

// floorTo rounds t down to a multiple of unit (t may be negative).
func floorTo(t, unit int64) int64 {
	r := t % unit
	if r < 0 {
		r += unit
	}
	return t - r
}

// Mode says which extra state a series keeps, from its meter's formula and
// event time window.
type Mode struct {
	Last   bool  // formula "last": hour buckets keep raw entries
	Window int64 // 0, hourSecs or daySecs: pre-aggregation window in seconds
}

// ModeOf returns the Mode for a meter's formula ("count", "sum", "last")
// and window ("", "hour", "day").
func ModeOf(formula, window string) Mode {
	m := Mode{Last: formula == "last"}
	switch window {
	case "hour":
		m.Window = hourSecs
	case "day":
		m.Window = daySecs
	}
	return m
}

// A bucket is an hour or a day of a series, in 32 bytes: for an hour,
// which minutes have entries; the count and the low half of the sum.
// While only one minute of an hour has entries, the hour's cell is that
// minute's cell. An hour with entries in several minutes keeps their
// cells in an array of the shard's arena (arena.go) that x numbers
// directly (plainBit), so that a count or sum meter's hour is one load
// away from its minute cells. Everything else most buckets do without
// lives in a bucketExt that x numbers instead: the high half of a sum
// beyond the int64 range, the newest entry (last meters), raw entries,
// and then the number of the minute cells too. A bucket holds no pointer
// (an hours array is nothing for the collector to scan), and its start
// follows from its place in its chunk.
type bucket struct {
	present uint64 // hours: bit i (0-59) set when minute i has entries, bits 60-62 the class of the minute cells' array, plainBit; days: the chunk's bits (60-63 always clear)
	count   int64
	sumLo   uint64 // the sum's low 64 bits: its high 64 are their sign extension plus sumHi
	x       uint64 // 0; with plainBit the arena number of the hour's minute cells; without it the arena number of the bucket's extension
}

type bucketExt struct {
	sumHi int64   // what the sum's high half adds to the sign extension of sumLo
	last  Entry   // last meters: the newest entry of the bucket
	cells uint64  // hours: the arena number of the minute cells (their class in the bucket's present bits); 0 while at most one minute is present
	raw   []Entry // last meters: every entry of the hour; pre-aggregated meters: every entry of the window
}

// The high bits of an hour bucket's present field.
const (
	plainBit   = 1 << 63 // x numbers the minute cells, not a bucketExt
	cellsShift = 60      // bits 60-62: the index in minuteCaps of the minute cells' array length
	cellsMask  = 7 << cellsShift
)

// A day bucket's present field holds the chunk's has and dirty bits,
// none of which may fall on plainBit or the class bits: this fails to
// compile when one does.
var _ = [1]struct{}{}[(uint64(hourBits|dayBit|3<<classShift)|uint64(hourBits|dayBit|queuedBit)<<32)&(plainBit|cellsMask)]

// minuteCaps are the lengths a minute cells' array goes through, from two
// minutes to every minute of the hour: the array's length is known from
// its class, kept in the bucket.
var minuteCaps = [6]int{2, 4, 8, 16, 32, 60}

// xt returns the bucket's extension, or nil when it has none; a is its
// shard's arena.
func (h *bucket) xt(a *arena) *bucketExt {
	if h.present&plainBit != 0 || h.x == 0 {
		return nil
	}
	return a.ext(h.x)
}

// ext returns the bucket's extension, creating it on first use (the
// number of the minute cells moves into it).
func (h *bucket) ext(sh *shard) *bucketExt {
	a := &sh.ar
	if x := h.xt(a); x != nil {
		return x
	}
	n := a.newExt()
	x := a.ext(n)
	if h.present&plainBit != 0 {
		x.cells = h.x
	}
	h.x = n
	h.present &^= plainBit
	sh.n.exts++
	return x
}

// shrink drops h's extension when nothing in it but the minute cells is
// needed any more.
func (h *bucket) shrink(keepLast bool, sh *shard) {
	if x := h.xt(&sh.ar); x != nil && !keepLast && x.sumHi == 0 && len(x.raw) == 0 {
		sh.ar.releaseExt(h.x)
		sh.n.exts--
		h.x = x.cells
		if x.cells != 0 {
			h.present |= plainBit
		}
	}
}

// release gives the bucket's minute cells and extension back to the
// arena, as the bucket is dropped; it leaves the bucket empty of them.
func (h *bucket) release(sh *shard) {
	if x := h.cellsNumber(&sh.ar); x != 0 {
		sh.ar.releaseCells(x, h.cellClass())
	}
	if h.xt(&sh.ar) != nil {
		sh.ar.releaseExt(h.x)
		sh.n.exts--
	}
	h.x = 0
	h.present &^= plainBit | cellsMask
}

func (h *bucket) sum(a *arena) Int128 {
	hi := int64(h.sumLo) >> 63
	if x := h.xt(a); x != nil {
		hi += x.sumHi
	}
	return Int128{Hi: hi, Lo: h.sumLo}
}

func (h *bucket) setSum(v Int128, sh *shard) {
	h.sumLo = v.Lo
	d := v.Hi - int64(v.Lo)>>63
	if x := h.xt(&sh.ar); x != nil {
		x.sumHi = d
	} else if d != 0 {
		h.ext(sh).sumHi = d
	}
}

// cell returns the bucket's aggregate. Its Last is meaningful for last
// meters only.
func (h *bucket) cell(a *arena) Cell { return h.window(0, 0, a).Cell }

// window returns the bucket's aggregate as the window [start, end). It
// fills the window's fields one by one: a Cell built apart and copied into
// a Window is read back with wider loads than it was stored with, and on
// amd64 each such copy waits for the stores (an hourly summary of 35 days
// took twice as long). The same happens to a window returned by a call
// that is not inlined: window must stay within the inliner's budget
// (go build -gcflags=-m=2 ./aggregate reports its cost).
func (h *bucket) window(start, end int64, a *arena) (w Window) {
	w.Start, w.End, w.Count = start, end, h.count
	w.Sum = Int128{Hi: int64(h.sumLo) >> 63, Lo: h.sumLo} // sum, with the extension read once
	// h.xt(a), spelled out: with the call, cell (window and a field) costs
	// 85 and leaves the budget.
	if h.present&plainBit == 0 && h.x != 0 {
		x := a.exts[h.x-1]
		w.Sum.Hi += x.sumHi
		w.Last = x.last
	}
	return w
}

// add adds e to the bucket's cell; keepLast maintains its newest entry.
func (h *bucket) add(e Entry, keepLast bool, sh *shard) {
	h.merge(Cell{Count: 1, Sum: Int128Of(e.Value), Last: e}, keepLast, sh)
}

// merge adds the entries c aggregates; keepLast maintains the newest
// entry.
func (h *bucket) merge(c Cell, keepLast bool, sh *shard) {
	if c.Count == 0 {
		return
	}
	if keepLast {
		if x := h.ext(sh); h.count == 0 || c.Last.newer(x.last) {
			x.last = c.Last
		}
	}
	h.count += c.Count
	h.setSum(h.sum(&sh.ar).Add(c.Sum), sh)
}

// sub removes e's count and value; the newest entry is left for the caller
// to recompute.
func (h *bucket) sub(e Entry, sh *shard) {
	h.count--
	h.setSum(h.sum(&sh.ar).Add(Int128Of(e.Value).Neg()), sh) // Neg: -e.Value overflows for math.MinInt64
}

// cellsNumber returns the arena number of the minute cells, 0 while at
// most one minute is present.
func (h *bucket) cellsNumber(a *arena) uint64 {
	switch {
	case h.present&plainBit != 0:
		return h.x
	case h.x == 0:
		return 0
	default:
		return a.ext(h.x).cells
	}
}

// cellClass returns the index in minuteCaps of the minute cells' array
// length.
func (h *bucket) cellClass() int { return int(h.present & cellsMask >> cellsShift) }

// minuteCells returns the cells of the present minutes, or nil while at
// most one minute is present. Its capacity is the array's whole length.
func (h *bucket) minuteCells(a *arena) []minuteCell {
	x := h.cellsNumber(a)
	if x == 0 {
		return nil
	}
	return a.cellArray(x, h.cellClass())[:bits.OnesCount64(h.present&minuteMask)]
}

// setCells makes the array numbered x (0: none) of class class the hour's
// minute cells; the caller gives back the one it replaces.
func (h *bucket) setCells(x uint64, class int, a *arena) {
	if x == 0 {
		class = 0
	}
	h.present = h.present&^cellsMask | uint64(class)<<cellsShift
	if e := h.xt(a); e != nil {
		e.cells = x
		return
	}
	h.x = x
	if x == 0 {
		h.present &^= plainBit
	} else {
		h.present |= plainBit
	}
}

// capClass returns the index in minuteCaps of the smallest length of at
// least n cells.
func capClass(n int) int {
	c := 0
	for minuteCaps[c] < n {
		c++
	}
	return c
}

// newCells gives the hour an array for n (2 to 60) minute cells and
// returns them, zeroed.
func (h *bucket) newCells(n int, a *arena) []minuteCell {
	class := capClass(n)
	x := a.allocCells(class)
	h.setCells(x, class, a)
	return a.cellArray(x, class)[:n]
}

// insertCell inserts an empty cell at i among ms, the hour's minute
// cells, moving them into an array of the next length when theirs is
// full (the cells before i and those after it each copied once, to their
// final places).
func (h *bucket) insertCell(ms []minuteCell, i int, a *arena) []minuteCell {
	if len(ms) == cap(ms) {
		old, class := h.cellsNumber(a), h.cellClass()
		x := a.allocCells(class + 1)
		ns := a.cellArray(x, class+1)[:len(ms)+1]
		copy(ns, ms[:i])
		copy(ns[i+1:], ms[i:])
		a.releaseCells(old, class)
		h.setCells(x, class+1, a)
		return ns
	}
	return slices.Insert(ms, i, minuteCell{}) // in place: there is room
}

// dropCells gives back the hour's minute cells (it has some).
func (h *bucket) dropCells(a *arena) {
	a.releaseCells(h.cellsNumber(a), h.cellClass())
	h.setCells(0, 0, a)
}

// rawEntries returns the raw entries of h (nil for most meters); a is its
// shard's arena.
func (h *bucket) rawEntries(a *arena) []Entry {
	if x := h.xt(a); x != nil {
		return x.raw
	}
	return nil
}

const minuteMask = 1<<60 - 1

// minuteCount returns the number of minutes with entries.
func (h *bucket) minuteCount() int { return bits.OnesCount64(h.present & minuteMask) }

// eachMinute calls fn, in minute order, with each minute (unix seconds)
// that has entries and its cell; start is the hour's start.
func (h *bucket) eachMinute(start int64, a *arena, fn func(minute int64, c Cell)) {
	p := h.present & minuteMask
	ms := h.minuteCells(a)
	if ms == nil {
		if p != 0 {
			fn(start+int64(bits.TrailingZeros64(p))*minuteSecs, h.cell(a))
		}
		return
	}
	if raw := h.rawEntries(a); len(raw) > 0 {
		eachMinuteLast(start, p, ms, raw, fn)
		return
	}
	for i := 0; p != 0; i++ {
		off := bits.TrailingZeros64(p)
		p &= p - 1
		fn(start+int64(off)*minuteSecs, Cell{Count: ms[i].Count, Sum: ms[i].Sum})
	}
}

// eachMinuteLast is eachMinute for the hour of a last meter, whose minute
// cells (ms, of the minutes in p) get their newest entries from the
// hour's raw entries.
func eachMinuteLast(start int64, p uint64, ms []minuteCell, raw []Entry, fn func(minute int64, c Cell)) {
	var last [60]Entry
	var seen uint64
	for _, e := range raw {
		off := (e.Timestamp - start) / minuteSecs
		if off < 0 || off >= 60 {
			continue // not of this hour: a damaged bucket, which CheckBuckets reports
		}
		if seen&(1<<off) == 0 || e.newer(last[off]) {
			last[off] = e
			seen |= 1 << off
		}
	}
	for i := 0; p != 0; i++ {
		off := bits.TrailingZeros64(p)
		p &= p - 1
		fn(start+int64(off)*minuteSecs, Cell{Count: ms[i].Count, Sum: ms[i].Sum, Last: last[off]})
	}
}

// series holds the buckets of one (meter, customer) pair. It is guarded by
// its shard's mutex.
type series struct {
	// The fields a cross-customer query reads come first, in the series'
	// first two cache lines: key, the day cells and their running totals.
	key      Key
	dayCells []dayCell          // the cells of the days with entries, by day (meter_index.go)
	cumValid int                // the day cells whose running totals are up to date (meter_index.go)
	fz       *frozenSeries      // the days before fz.end, packed (freeze.go); nil while none is frozen
	lastDay  dayCell            // a copy of the last of dayCells (only its start while cumValid < len(dayCells)), zero when there is none
	next     *series            // the next series whose key has the same hash
	chunks   *btree.BTreeG[ref] // by day start
	hot      *chunk             // the most recently used chunk: spares a tree search when events arrive in time order
	hotStart int64
	recent   *[recentDays]ref // chunks by day number modulo recentDays: spares a tree search when they do not; nil while the series has one chunk
	slot     int              // index in its meter part's series (meter_index.go)
	ar       *arena           // the shard's, which holds the minute cells and extensions of the series' buckets
}

// A chunk is one UTC day of a series: the day's bucket and the buckets of
// the day's hours that have one, in an array where a new hour appends (it
// moves no other) and slot finds it. A chunk is 64 bytes, one cache line:
// the day bucket's present field, which days do not need for minutes,
// holds the chunk's bits. A dense day (24 hours) holds its hours in one
// allocation of 24 buckets; a chunk with no bucket left leaves the tree.
type chunk struct {
	day   bucket             // day.present: bits 0-31 the has bits, bits 32-63 the dirty bits
	slot  [hoursPerDay]uint8 // slot[i]: the index of hour i's bucket in the hours array
	hours *bucket            // the first of an array of hourCaps[class] buckets; nil when no hour has one
}

// The has bits (low half of day.present) and the dirty bits (high half).
const (
	hoursPerDay = 24
	hourBits    = 1<<hoursPerDay - 1 // has: bit i (0-23) when hour i has a bucket; dirty: changed since the last checkpoint
	dayBit      = 1 << hoursPerDay   // has: the day bucket exists; dirty: it changed
	classShift  = 28                 // has: bits 28-29 index hourCaps: the length of the hours array
	queuedBit   = 1 << 25            // dirty: the chunk is in the shard's dirty list (bits 28-31 of the dirty half stay clear: the day bucket's bits 60-63)
)

// hourCaps are the lengths the hours array goes through: each an exact
// allocation size class (32, 96, 256 and 768 bytes), so a dense day ends
// in one allocation of exactly 24 buckets after copying 12, and a day of
// one hour holds one.
var hourCaps = [4]int{1, 3, 8, hoursPerDay}

// has returns the hour bits and dayBit.
func (c *chunk) has() uint32 { return uint32(c.day.present) & (hourBits | dayBit) }

func (c *chunk) set(b uint32)   { c.day.present |= uint64(b) }
func (c *chunk) unset(b uint32) { c.day.present &^= uint64(b) }

// dirty returns the dirty bits.
func (c *chunk) dirty() uint32 { return uint32(c.day.present >> 32) }

func (c *chunk) markDirty(b uint32) { c.day.present |= uint64(b) << 32 }
func (c *chunk) clearDirty()        { c.day.present &= 1<<32 - 1 }

// class returns the index in hourCaps of the hours array's length.
func (c *chunk) class() int { return int(c.day.present>>classShift) & 3 }

// hourSlice returns the hour buckets in use, in slot order.
func (c *chunk) hourSlice() []bucket {
	if c.hours == nil {
		return nil
	}
	n := bits.OnesCount32(c.has() & hourBits)
	return unsafe.Slice(c.hours, hourCaps[c.class()])[:n]
}

// hourAt returns the bucket of hour i (0-23), or nil.
func (c *chunk) hourAt(i int) *bucket {
	if c.has()&(1<<uint(i)) == 0 {
		return nil
	}
	j := int(c.slot[i])
	return &unsafe.Slice(c.hours, j+1)[j]
}

// addHour appends an empty bucket for hour i, which has none. Pointers to
// the chunk's other hour buckets are invalid afterwards.
func (c *chunk) addHour(i int, sh *shard) *bucket {
	hs := c.hourSlice()
	n := len(hs)
	if c.hours == nil || n == cap(hs) {
		class := 0
		if c.hours != nil {
			class = c.class() + 1
		}
		a := make([]bucket, hourCaps[class])
		copy(a, hs)
		c.hours = &a[0]
		c.day.present = c.day.present&^(3<<classShift) | uint64(class)<<classShift
		hs = a[:n]
	}
	c.slot[i] = uint8(n)
	c.set(1 << uint(i))
	sh.n.hours++
	return &hs[:n+1][n]
}

// dropHour removes the bucket of hour i: the last bucket moves into its
// place. Pointers to the chunk's other hour buckets are invalid
// afterwards.
func (c *chunk) dropHour(i int, sh *shard) {
	hs := c.hourSlice()
	j, last := c.slot[i], uint8(len(hs)-1)
	hs[j].release(sh)
	c.unset(1 << uint(i))
	if j != last {
		hs[j] = hs[last]
		for m := c.has() & hourBits; m != 0; m &= m - 1 {
			if k := bits.TrailingZeros32(m); c.slot[k] == last {
				c.slot[k] = j
				break
			}
		}
	}
	hs[last] = bucket{}
	if last == 0 {
		c.hours = nil
		c.day.present &^= 3 << classShift
	}
	sh.n.hours--
}

// release gives the minute cells and extensions of c's buckets back to
// the arena, as c leaves its series.
func (c *chunk) release(sh *shard) {
	hs := c.hourSlice()
	for j := range hs {
		hs[j].release(sh)
	}
	if c.has()&dayBit != 0 {
		c.day.release(sh)
	}
}

// eachHour calls fn with the start and bucket of each hour of c, the
// chunk of the day starting at dstart, within [a, b), in hour order.
func (c *chunk) eachHour(dstart, a, b int64, fn func(start int64, h *bucket)) {
	hs := c.hourSlice()
	for m := c.has() & hourBits; m != 0; m &= m - 1 {
		i := bits.TrailingZeros32(m)
		start := dstart + int64(i)*hourSecs
		if start >= b {
			return
		}
		if start >= a {
			fn(start, &hs[c.slot[i]])
		}
	}
}

const degree = 32 // up to 63 chunks per node: a series of 36 days is one leaf

// recentDays is the length of a series' array of recent chunks, a power
// of two beyond the 37 days in which a day can change: an event finds its
// day's chunk with one load and compare, whatever its timestamp's order.
const recentDays = 64

// recentSlot returns the slot of the day at dstart in series.recent.
func recentSlot(dstart int64) int { return int(uint64(dstart/daySecs) & (recentDays - 1)) }

// forget clears the recent slot of the chunk at dstart when it holds c.
func (s *series) forget(dstart int64, c *chunk) {
	if s.recent != nil {
		if r := &s.recent[recentSlot(dstart)]; r.c == c {
			*r = ref{}
		}
	}
	if s.hot == c {
		s.hot = nil
	}
}

// ref is the tree item: the start inline, so that comparisons touch no
// chunk and lookups allocate nothing.
type ref struct {
	start int64
	c     *chunk
}

func lessRef(a, b ref) bool { return a.start < b.start }

// newSeries returns an empty series whose tree draws nodes from the
// shard's free list.
func newSeries(k Key, sh *shard) *series {
	return &series{key: k, chunks: btree.NewWithFreeListG(degree, lessRef, sh.free), ar: &sh.ar}
}

// counts tracks the sizes a shard reports in Stats.
type counts struct {
	series, hours, days, minutes, raw int64
	chunks                            int64
	minuteSlots                       int64 // allocated minute cells, whole arrays (minutes counts the minutes with entries)
	exts                              int64 // allocated bucketExt
	recent                            int64 // allocated arrays of recent chunks
	// Frozen days (freeze.go): the days, hours and minutes with entries
	// they hold (not in the counts above), and the bytes of their form.
	frozenDays, frozenHours, frozenMinutes, frozenBytes, storedBlocks int64
}

// find returns the chunk of the day starting at dstart, or nil. It changes
// nothing.
func (s *series) find(dstart int64) *chunk {
	if c := s.cached(dstart); c != nil {
		return c
	}
	r, _ := s.chunks.Get(ref{start: dstart})
	return r.c
}

// cached returns the chunk of the day starting at dstart when it is the
// hot chunk or in its recent slot, else nil: find without the tree.
func (s *series) cached(dstart int64) *chunk {
	if s.hot != nil && s.hotStart == dstart {
		return s.hot
	}
	if s.recent != nil {
		if r := s.recent[recentSlot(dstart)]; r.c != nil && r.start == dstart {
			return r.c
		}
	}
	return nil
}

// chunk returns the chunk of the day starting at dstart, creating it if
// create is set, and makes it the hot chunk.
func (s *series) chunk(dstart int64, create bool, sh *shard) *chunk {
	if c := s.hot; c != nil && s.hotStart == dstart {
		return c
	}
	var rs *ref
	if s.recent != nil {
		rs = &s.recent[recentSlot(dstart)]
		if rs.c != nil && rs.start == dstart {
			s.hot, s.hotStart = rs.c, dstart
			return rs.c
		}
	}
	r, ok := s.chunks.Get(ref{start: dstart})
	if !ok {
		if !create {
			return nil
		}
		r = ref{start: dstart, c: new(chunk)}
		s.chunks.ReplaceOrInsert(r)
		sh.n.chunks++
		if rs == nil && s.chunks.Len() > 1 {
			s.recent = new([recentDays]ref)
			sh.n.recent++
			rs = &s.recent[recentSlot(dstart)]
		}
	}
	if rs != nil {
		*rs = r
	}
	s.hot, s.hotStart = r.c, dstart
	return r.c
}

// hour returns the bucket of the hour at start, creating it if create is
// set, and marks it changed: callers use it only to change a bucket. The
// pointer is valid until an hour of the same day is added or dropped.
func (s *series) hour(start int64, create bool, sh *shard) *bucket {
	dstart := floorTo(start, daySecs)
	c := s.chunk(dstart, create, sh)
	if c == nil {
		return nil
	}
	i := int((start - dstart) / hourSecs)
	h := c.hourAt(i)
	if h == nil {
		if !create {
			return nil
		}
		h = c.addHour(i, sh)
	}
	sh.mark(s, dstart, c, 1<<uint(i))
	return h
}

// day returns the bucket of the day at start, creating it if create is
// set, and marks it changed: callers use it only to change a bucket.
func (s *series) day(start int64, create bool, sh *shard) *bucket {
	c := s.chunk(start, create, sh)
	if c == nil {
		return nil
	}
	if c.has()&dayBit == 0 {
		if !create {
			return nil
		}
		c.set(dayBit)
		sh.n.days++
	}
	sh.mark(s, start, c, dayBit)
	return &c.day
}

// minuteBit returns the bit of the minute holding ts in the hour starting
// at start, and the index its cell has (or would have) among the minute
// cells: the number of present minutes before it.
func (h *bucket) minuteBit(start, ts int64) (bit uint64, i int) {
	bit = 1 << uint((ts-start)/minuteSecs)
	return bit, bits.OnesCount64(h.present & minuteMask & (bit - 1))
}

// addContribution adds e to its minute, hour and day cells; keepLast
// maintains the hour's newest entry (last meters).
func (s *series) addContribution(e Entry, keepLast bool, sh *shard) {
	dstart := floorTo(e.Timestamp, daySecs)
	c := s.chunk(dstart, true, sh)
	hi := int((e.Timestamp - dstart) / hourSecs)
	start := dstart + int64(hi)*hourSecs
	h := c.hourAt(hi)
	if h == nil {
		h = c.addHour(hi, sh)
	}
	if c.has()&dayBit == 0 {
		c.set(dayBit)
		sh.n.days++
	}
	sh.mark(s, dstart, c, 1<<uint(hi)|dayBit)
	bit, i := h.minuteBit(start, e.Timestamp)
	switch ms := h.minuteCells(&sh.ar); {
	case h.present&minuteMask == 0: // the first minute: its cell is the hour cell
		h.present |= bit
		sh.n.minutes++
	case ms == nil && h.present&bit != 0: // the one minute again
	case ms == nil: // a second minute: the cells part
		ms = h.newCells(2, &sh.ar)
		ms[1-i] = minuteCell{Count: h.count, Sum: h.sum(&sh.ar)}
		ms[i].add(e)
		h.present |= bit
		sh.n.minutes++
		sh.n.minuteSlots += int64(cap(ms))
	default:
		if h.present&bit == 0 {
			c := cap(ms)
			ms = h.insertCell(ms, i, &sh.ar)
			h.present |= bit
			sh.n.minutes++
			sh.n.minuteSlots += int64(cap(ms) - c)
		}
		ms[i].add(e)
	}
	h.add(e, keepLast, sh)
	c.day.add(e, keepLast, sh)
	s.syncDay(dstart, &c.day)
}

// removeContribution removes e from its minute, hour and day cells. When
// last is set (last meters), the newest entry of each touched cell that
// keeps one is recomputed: the hour's from its raw entries, the day's
// from its hour buckets (minute cells keep none: eachMinute finds it).
func (s *series) removeContribution(e Entry, last bool, sh *shard) {
	hstart, dstart := floorTo(e.Timestamp, hourSecs), floorTo(e.Timestamp, daySecs)
	h := s.hour(hstart, false, sh)
	if h == nil {
		panic("aggregate: removing an entry that was never added")
	}
	bit, i := h.minuteBit(hstart, e.Timestamp)
	if h.present&bit == 0 {
		panic("aggregate: removing an entry that was never added")
	}
	h.sub(e, sh)
	if ms := h.minuteCells(&sh.ar); ms == nil { // the hour cell is the minute's cell
		if h.count == 0 {
			h.present &^= bit
			sh.n.minutes--
		}
	} else {
		mc := &ms[i]
		mc.sub(e)
		if mc.Count == 0 {
			ms = slices.Delete(ms, i, i+1) // in place; the freed cell is zeroed
			h.present &^= bit
			sh.n.minutes--
		}
		if len(ms) == 1 { // one minute left: its cell is the hour cell again
			h.dropCells(&sh.ar)
			sh.n.minuteSlots -= int64(cap(ms))
		}
	}
	if last && h.count > 0 {
		// An hour of a pre-aggregated meter has one contributor, the
		// window's winner, and none once it is removed; so this is an
		// hour of a last meter that is not pre-aggregated, whose raw
		// entries are every entry still in it (e already removed).
		h.xt(&sh.ar).last, _ = winner(h.rawEntries(&sh.ar))
	}
	h.shrink(last, sh)
	s.dropIfEmpty(false, hstart, h, sh)

	d := s.day(dstart, false, sh)
	d.sub(e, sh)
	if last && d.count > 0 {
		var c Cell
		hs := s.find(dstart).hourSlice()
		for j := range hs {
			c.merge(hs[j].cell(&sh.ar))
		}
		d.xt(&sh.ar).last = c.Last
	}
	d.shrink(last, sh)
	s.dropIfEmpty(true, dstart, d, sh)
	s.syncDay(dstart, d)
}

// dropIfEmpty removes the day or hour bucket b at start when it has no
// entries left, and its chunk when no bucket is left in it.
func (s *series) dropIfEmpty(day bool, start int64, b *bucket, sh *shard) {
	if b.count != 0 || len(b.rawEntries(&sh.ar)) != 0 {
		return
	}
	dstart := floorTo(start, daySecs)
	c := s.find(dstart)
	if day {
		c.day.release(sh)
		c.day.count, c.day.sumLo = 0, 0
		c.unset(dayBit)
		sh.n.days--
	} else {
		c.dropHour(int((start-dstart)/hourSecs), sh)
	}
	if c.has() == 0 {
		s.chunks.Delete(ref{start: dstart})
		sh.n.chunks--
		s.forget(dstart, c)
	}
}

// holds reports whether c is the series' chunk of the day at dstart.
func (s *series) holds(dstart int64, c *chunk) bool {
	return s.find(dstart) == c
}

func (s *series) empty() bool { return s.chunks.Len() == 0 && s.fz == nil }

// winner returns the newest of raw, or false when raw is empty.
func winner(raw []Entry) (Entry, bool) {
	if len(raw) == 0 {
		return Entry{}, false
	}
	w := raw[0]
	for _, e := range raw[1:] {
		if e.newer(w) {
			w = e
		}
	}
	return w, true
}

// windowRaw returns a pointer to the raw entries of the pre-aggregation
// window holding ts, creating the bucket when create is set; nil when
// there is no such bucket, or it has no raw entries and create is not set.
func (s *series) windowRaw(m Mode, ts int64, create bool, sh *shard) *[]Entry {
	var b *bucket
	if m.Window == daySecs {
		b = s.day(floorTo(ts, daySecs), create, sh)
	} else {
		b = s.hour(floorTo(ts, hourSecs), create, sh)
	}
	if b == nil || !create && b.xt(&sh.ar) == nil {
		return nil
	}
	return &b.ext(sh).raw
}

// apply adds e under mode m.
func (s *series) apply(m Mode, e Entry, sh *shard) {
	if m.Window == 0 {
		s.addContribution(e, m.Last, sh)
		if m.Last {
			x := s.hour(floorTo(e.Timestamp, hourSecs), false, sh).xt(&sh.ar) // add allocated it
			x.raw = append(x.raw, e)
			sh.n.raw++
		}
		return
	}
	// Pre-aggregated: only the newest entry of the window contributes.
	raw := s.windowRaw(m, e.Timestamp, true, sh)
	old, had := winner(*raw)
	*raw = append(*raw, e)
	sh.n.raw++
	if !had || e.newer(old) {
		if had {
			s.removeContribution(old, m.Last, sh)
		}
		s.addContribution(e, m.Last, sh)
	}
}

// cancel removes e under mode m. It reports false when e is not part of
// the series.
func (s *series) cancel(m Mode, e Entry, sh *shard) bool {
	hstart := floorTo(e.Timestamp, hourSecs)
	if m.Window == 0 {
		if m.Last {
			h := s.hour(hstart, false, sh)
			if h == nil || h.xt(&sh.ar) == nil || !removeEntry(&h.xt(&sh.ar).raw, e.Seq) {
				return false
			}
			sh.n.raw--
		} else if s.hour(hstart, false, sh) == nil {
			return false
		}
		s.removeContribution(e, m.Last, sh)
		return true
	}
	raw := s.windowRaw(m, e.Timestamp, false, sh)
	if raw == nil {
		return false
	}
	old, _ := winner(*raw)
	if !removeEntry(raw, e.Seq) {
		return false
	}
	sh.n.raw--
	if old.Seq == e.Seq {
		s.removeContribution(old, m.Last, sh)
		if w, ok := winner(*raw); ok {
			s.addContribution(w, m.Last, sh)
		}
	}
	// The window's bucket may now be empty.
	if m.Window == daySecs {
		dstart := floorTo(e.Timestamp, daySecs)
		if d := s.day(dstart, false, sh); d != nil {
			d.shrink(m.Last, sh)
			s.dropIfEmpty(true, dstart, d, sh)
		}
	} else if h := s.hour(hstart, false, sh); h != nil {
		h.shrink(m.Last, sh)
		s.dropIfEmpty(false, hstart, h, sh)
	}
	return true
}

func removeEntry(raw *[]Entry, seq uint64) bool {
	for i, e := range *raw {
		if e.Seq == seq {
			*raw = slices.Delete(*raw, i, i+1)
			return true
		}
	}
	return false
}
