package aggregate

import (
	"math/bits"
	"slices"

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
// Everything most buckets of count and sum meters do without lives behind
// x: the high half of a sum beyond the int64 range, the newest entry (last
// meters), the minute cells of an hour with entries in several minutes,
// and raw entries. While only one minute of an hour has entries, the
// hour's cell is that minute's cell. A bucket's start is its tree key.
type bucket struct {
	present uint64 // hours: bit i (0-59) set when minute i has entries; dirtyBit: changed since the last checkpoint
	count   int64
	sumLo   uint64     // the sum's low 64 bits: its high 64 are their sign extension plus x.sumHi
	x       *bucketExt // nil while none of its fields is needed
}

type bucketExt struct {
	sumHi   int64   // what the sum's high half adds to the sign extension of sumLo
	last    Entry   // last meters: the newest entry of the bucket
	minutes []Cell  // hours: one per present minute, in minute order; nil while at most one minute is present
	raw     []Entry // last meters: every entry of the hour; pre-aggregated meters: every entry of the window
}

// ext returns h.x, allocating it on first use.
func (h *bucket) ext(sh *shard) *bucketExt {
	if h.x == nil {
		h.x = new(bucketExt)
		sh.n.exts++
	}
	return h.x
}

// shrink drops h.x when nothing in it is needed any more.
func (h *bucket) shrink(keepLast bool, sh *shard) {
	if x := h.x; x != nil && !keepLast && x.sumHi == 0 && x.minutes == nil && len(x.raw) == 0 {
		h.x = nil
		sh.n.exts--
	}
}

func (h *bucket) sum() Int128 {
	hi := int64(h.sumLo) >> 63
	if h.x != nil {
		hi += h.x.sumHi
	}
	return Int128{Hi: hi, Lo: h.sumLo}
}

func (h *bucket) setSum(v Int128, sh *shard) {
	h.sumLo = v.Lo
	if d := v.Hi - int64(v.Lo)>>63; d != 0 || h.x != nil {
		h.ext(sh).sumHi = d
	}
}

// cell returns the bucket's aggregate. Its Last is meaningful for last
// meters only.
func (h *bucket) cell() Cell {
	c := Cell{Count: h.count, Sum: h.sum()}
	if h.x != nil {
		c.Last = h.x.last
	}
	return c
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
	h.setSum(h.sum().Add(c.Sum), sh)
}

// sub removes e's count and value; the newest entry is left for the caller
// to recompute.
func (h *bucket) sub(e Entry, sh *shard) {
	h.count--
	h.setSum(h.sum().Add(Int128Of(-e.Value)), sh)
}

// minuteCells returns the cells of the present minutes, or nil while at
// most one minute is present.
func (h *bucket) minuteCells() []Cell {
	if h.x == nil {
		return nil
	}
	return h.x.minutes
}

// rawEntries returns the raw entries of h (nil for most meters).
func (h *bucket) rawEntries() []Entry {
	if h.x == nil {
		return nil
	}
	return h.x.raw
}

const (
	minuteMask = 1<<60 - 1
	dirtyBit   = 1 << 63
)

// minuteCount returns the number of minutes with entries.
func (h *bucket) minuteCount() int { return bits.OnesCount64(h.present & minuteMask) }

// eachMinute calls fn, in minute order, with each minute (unix seconds)
// that has entries and its cell; start is the hour's start.
func (h *bucket) eachMinute(start int64, fn func(minute int64, c Cell)) {
	p := h.present & minuteMask
	ms := h.minuteCells()
	for i := 0; p != 0; i++ {
		off := bits.TrailingZeros64(p)
		p &= p - 1
		var c Cell
		if ms != nil {
			c = ms[i]
		} else {
			c = h.cell()
		}
		fn(start+int64(off)*minuteSecs, c)
	}
}

// series holds the buckets of one (meter, customer) pair. It is guarded by
// its shard's mutex.
type series struct {
	key      Key
	hours    tier
	days     tier
	dayCells []dayCell // the cells of the days with entries, by day (meter_index.go)
	lastDay  dayCell   // a copy of the last of dayCells, zero when there is none
	slot     int       // index in its meter part's series (meter_index.go)
}

// A tier is the buckets of one size: a tree of them and the most recently
// used, which spares a tree search when events arrive in time order.
type tier struct {
	tree     *btree.BTreeG[ref]
	hot      *bucket
	hotStart int64
}

const degree = 16

// ref is the tree item: the start inline, so that comparisons touch no
// bucket and lookups allocate nothing.
type ref struct {
	start int64
	b     *bucket
}

func lessRef(a, b ref) bool { return a.start < b.start }

// newSeries returns an empty series whose trees draw nodes from the
// shard's free list.
func newSeries(k Key, sh *shard) *series {
	return &series{
		key:   k,
		hours: tier{tree: btree.NewWithFreeListG(degree, lessRef, sh.free)},
		days:  tier{tree: btree.NewWithFreeListG(degree, lessRef, sh.free)},
	}
}

// counts tracks the sizes a shard reports in Stats.
type counts struct {
	series, hours, days, minutes, raw int64
	minuteSlots                       int64 // allocated minute cells (minutes counts the minutes with entries)
	exts                              int64 // allocated bucketExt
}

// tier returns the day or the hour tier.
func (s *series) tier(day bool) *tier {
	if day {
		return &s.days
	}
	return &s.hours
}

// count returns the shard's count of day or hour buckets.
func (sh *shard) count(day bool) *int64 {
	if day {
		return &sh.n.days
	}
	return &sh.n.hours
}

// bucket returns the day or hour bucket at start, creating it if create is
// set, and marks it changed: callers use it only to change a bucket.
func (s *series) bucket(day bool, start int64, create bool, sh *shard) *bucket {
	t := s.tier(day)
	if b := t.hot; b != nil && t.hotStart == start {
		sh.mark(s, start, b, day)
		return b
	}
	r, ok := t.tree.Get(ref{start: start})
	b := r.b
	if !ok {
		if !create {
			return nil
		}
		b = new(bucket)
		t.tree.ReplaceOrInsert(ref{start: start, b: b})
		*sh.count(day)++
	}
	t.hotStart, t.hot = start, b
	sh.mark(s, start, b, day)
	return b
}

func (s *series) hour(start int64, create bool, sh *shard) *bucket {
	return s.bucket(false, start, create, sh)
}

func (s *series) day(start int64, create bool, sh *shard) *bucket {
	return s.bucket(true, start, create, sh)
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
	start := floorTo(e.Timestamp, hourSecs)
	h := s.hour(start, true, sh)
	bit, i := h.minuteBit(start, e.Timestamp)
	switch ms := h.minuteCells(); {
	case h.present&minuteMask == 0: // the first minute: its cell is the hour cell
		h.present |= bit
		sh.n.minutes++
	case ms == nil && h.present&bit != 0: // the one minute again
	case ms == nil: // a second minute: the cells part
		ms = make([]Cell, 2)
		ms[1-i] = h.cell()
		ms[i].add(e)
		h.ext(sh).minutes = ms
		h.present |= bit
		sh.n.minutes++
		sh.n.minuteSlots += 2
	default:
		if h.present&bit == 0 {
			ms = slices.Insert(ms, i, Cell{})
			h.x.minutes = ms
			h.present |= bit
			sh.n.minutes++
			sh.n.minuteSlots++
		}
		ms[i].add(e)
	}
	h.add(e, keepLast, sh)
	dstart := floorTo(e.Timestamp, daySecs)
	d := s.day(dstart, true, sh)
	d.add(e, keepLast, sh)
	s.syncDay(dstart, d)
}

// removeContribution removes e from its minute, hour and day cells. When
// last is set (last meters), the newest entry of each touched cell is
// recomputed: the minute's from rawMinute (the entries still contributing
// to that minute), the hour's from its minute cells, the day's from its
// hour buckets.
func (s *series) removeContribution(e Entry, last bool, rawMinute func(h *bucket, minute int64) Cell, sh *shard) {
	hstart, dstart := floorTo(e.Timestamp, hourSecs), floorTo(e.Timestamp, daySecs)
	h := s.hour(hstart, false, sh)
	if h == nil {
		panic("aggregate: removing an entry that was never added")
	}
	minute := floorTo(e.Timestamp, minuteSecs)
	bit, i := h.minuteBit(hstart, e.Timestamp)
	if h.present&bit == 0 {
		panic("aggregate: removing an entry that was never added")
	}
	h.sub(e, sh)
	if ms := h.minuteCells(); ms == nil { // the hour cell is the minute's cell
		if h.count == 0 {
			h.present &^= bit
			sh.n.minutes--
		} else if last {
			h.x.last = rawMinute(h, minute).Last
		}
	} else {
		x := h.x
		mc := &ms[i]
		mc.sub(e)
		if mc.Count == 0 {
			x.minutes = slices.Delete(ms, i, i+1)
			h.present &^= bit
			sh.n.minutes--
			sh.n.minuteSlots--
		} else if last {
			mc.Last = rawMinute(h, minute).Last
		}
		if last && h.count > 0 {
			var c Cell
			for j := range x.minutes {
				c.merge(x.minutes[j])
			}
			x.last = c.Last
		}
		if len(x.minutes) == 1 { // one minute left: its cell is the hour cell again
			x.minutes = nil
			sh.n.minuteSlots--
		}
	}
	h.shrink(last, sh)
	s.dropIfEmpty(false, hstart, h, sh)

	d := s.day(dstart, false, sh)
	d.sub(e, sh)
	if last && d.count > 0 {
		var c Cell
		s.hours.tree.AscendRange(ref{start: dstart}, ref{start: dstart + daySecs}, func(r ref) bool {
			c.merge(r.b.cell())
			return true
		})
		d.x.last = c.Last
	}
	d.shrink(last, sh)
	s.dropIfEmpty(true, dstart, d, sh)
	s.syncDay(dstart, d)
}

// dropIfEmpty removes the day or hour bucket b at start when it has no
// entries left.
func (s *series) dropIfEmpty(day bool, start int64, b *bucket, sh *shard) {
	if b.count != 0 || len(b.rawEntries()) != 0 {
		return
	}
	t := s.tier(day)
	t.tree.Delete(ref{start: start})
	*sh.count(day)--
	if b.x != nil {
		b.x = nil
		sh.n.exts--
	}
	if t.hot == b {
		t.hot = nil
	}
}

// has reports whether b is the series' day or hour bucket at start.
func (s *series) has(day bool, start int64, b *bucket) bool {
	r, ok := s.tier(day).tree.Get(ref{start: start})
	return ok && r.b == b
}

func (s *series) empty() bool { return s.hours.tree.Len() == 0 && s.days.tree.Len() == 0 }

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
	if b == nil || !create && b.x == nil {
		return nil
	}
	return &b.ext(sh).raw
}

// apply adds e under mode m.
func (s *series) apply(m Mode, e Entry, sh *shard) {
	if m.Window == 0 {
		s.addContribution(e, m.Last, sh)
		if m.Last {
			x := s.hour(floorTo(e.Timestamp, hourSecs), false, sh).x // add allocated it
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
			s.removeContribution(old, m.Last, emptyMinute, sh)
		}
		s.addContribution(e, m.Last, sh)
	}
}

// emptyMinute is the rawMinute of pre-aggregated series: a window winner is
// the only contributor to its minute.
func emptyMinute(*bucket, int64) Cell { return Cell{} }

// cancel removes e under mode m. It reports false when e is not part of
// the series.
func (s *series) cancel(m Mode, e Entry, sh *shard) bool {
	hstart := floorTo(e.Timestamp, hourSecs)
	if m.Window == 0 {
		if m.Last {
			h := s.hour(hstart, false, sh)
			if h == nil || h.x == nil || !removeEntry(&h.x.raw, e.Seq) {
				return false
			}
			sh.n.raw--
		} else if s.hour(hstart, false, sh) == nil {
			return false
		}
		s.removeContribution(e, m.Last, lastOfMinute, sh)
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
		s.removeContribution(old, m.Last, emptyMinute, sh)
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

// lastOfMinute recomputes a minute cell of a last meter from the hour's raw
// entries.
func lastOfMinute(h *bucket, minute int64) Cell {
	var c Cell
	for _, e := range h.rawEntries() {
		if floorTo(e.Timestamp, minuteSecs) == minute {
			c.add(e)
		}
	}
	return c
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
