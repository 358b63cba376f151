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

// An hour bucket keeps one cell per minute with entries. While only one
// minute has entries, the hour cell is that minute's cell and minutes is
// nil: a sparse hour costs no minute allocation.
type hourBucket struct {
	start   int64  // unix seconds, hour aligned
	present uint64 // bit i (0-59): minute i has entries; dirtyBit: changed since the last checkpoint
	cell    Cell
	minutes []Cell   // one per present minute, in minute order; nil while at most one minute is present
	raw     *[]Entry // last meters: every entry of the hour; hour windows: every entry of the window; nil for others
}

// rawEntries returns the raw entries of h (nil for most meters).
func (h *hourBucket) rawEntries() []Entry {
	if h.raw == nil {
		return nil
	}
	return *h.raw
}

// rawSlice returns a pointer to h's raw entries, allocating it on first use.
func (h *hourBucket) rawSlice() *[]Entry {
	if h.raw == nil {
		h.raw = new([]Entry)
	}
	return h.raw
}

const (
	minuteMask = 1<<60 - 1
	dirtyBit   = 1 << 63
)

// minuteCount returns the number of minutes with entries.
func (h *hourBucket) minuteCount() int { return bits.OnesCount64(h.present & minuteMask) }

// eachMinute calls fn, in minute order, with each minute (unix seconds)
// that has entries and its cell.
func (h *hourBucket) eachMinute(fn func(minute int64, c *Cell)) {
	p := h.present & minuteMask
	for i := 0; p != 0; i++ {
		off := bits.TrailingZeros64(p)
		p &= p - 1
		c := &h.cell
		if h.minutes != nil {
			c = &h.minutes[i]
		}
		fn(h.start+int64(off)*minuteSecs, c)
	}
}

type dayBucket struct {
	start int64 // unix seconds, UTC-day aligned
	dirty bool  // changed since the last checkpoint
	cell  Cell
	raw   []Entry // day windows: every entry of the window
}

// series holds the buckets of one (meter, customer) pair. It is guarded by
// its shard's mutex.
type series struct {
	key   Key
	hours *btree.BTreeG[hourRef]
	days  *btree.BTreeG[dayRef]
	// the most recently used buckets, which spares a tree search when events
	// arrive in time order
	hotHour *hourBucket
	hotDay  *dayBucket
}

const degree = 16

// hourRef and dayRef are the tree items: the start inline, so that
// comparisons touch no bucket and lookups allocate nothing.
type hourRef struct {
	start int64
	h     *hourBucket
}

type dayRef struct {
	start int64
	d     *dayBucket
}

func lessHour(a, b hourRef) bool { return a.start < b.start }
func lessDay(a, b dayRef) bool   { return a.start < b.start }

// newSeries returns an empty series whose trees draw nodes from the
// shard's free lists.
func newSeries(k Key, sh *shard) *series {
	return &series{
		key:   k,
		hours: btree.NewWithFreeListG(degree, lessHour, sh.freeHours),
		days:  btree.NewWithFreeListG(degree, lessDay, sh.freeDays),
	}
}

// counts tracks the sizes a shard reports in Stats.
type counts struct {
	series, hours, days, minutes, raw int64
	minuteSlots                       int64 // allocated minute cells (minutes counts the minutes with entries)
}

// hour returns the hour bucket at start, creating it if create is set,
// and marks it changed: callers use it only to change a bucket.
func (s *series) hour(start int64, create bool, sh *shard) *hourBucket {
	if h := s.hotHour; h != nil && h.start == start {
		sh.markHour(s, h)
		return h
	}
	r, ok := s.hours.Get(hourRef{start: start})
	h := r.h
	if !ok {
		if !create {
			return nil
		}
		h = &hourBucket{start: start}
		s.hours.ReplaceOrInsert(hourRef{start: start, h: h})
		sh.n.hours++
	}
	s.hotHour = h
	sh.markHour(s, h)
	return h
}

// day is hour's counterpart for day buckets.
func (s *series) day(start int64, create bool, sh *shard) *dayBucket {
	if d := s.hotDay; d != nil && d.start == start {
		sh.markDay(s, d)
		return d
	}
	r, ok := s.days.Get(dayRef{start: start})
	d := r.d
	if !ok {
		if !create {
			return nil
		}
		d = &dayBucket{start: start}
		s.days.ReplaceOrInsert(dayRef{start: start, d: d})
		sh.n.days++
	}
	s.hotDay = d
	sh.markDay(s, d)
	return d
}

// minuteBit returns the bit of the minute holding ts and the index its
// cell has (or would have) in h.minutes: the number of present minutes
// before it.
func (h *hourBucket) minuteBit(ts int64) (bit uint64, i int) {
	bit = 1 << uint((ts-h.start)/minuteSecs)
	return bit, bits.OnesCount64(h.present & minuteMask & (bit - 1))
}

// addContribution adds e to its minute, hour and day cells.
func (s *series) addContribution(e Entry, sh *shard) {
	h := s.hour(floorTo(e.Timestamp, hourSecs), true, sh)
	bit, i := h.minuteBit(e.Timestamp)
	switch {
	case h.present&minuteMask == 0: // the first minute: its cell is the hour cell
		h.present |= bit
		sh.n.minutes++
	case h.minutes == nil && h.present&bit != 0: // the one minute again
	case h.minutes == nil: // a second minute: the cells part
		h.minutes = make([]Cell, 2)
		h.minutes[1-i] = h.cell
		h.minutes[i].add(e)
		h.present |= bit
		sh.n.minutes++
		sh.n.minuteSlots += 2
	default:
		if h.present&bit == 0 {
			h.minutes = slices.Insert(h.minutes, i, Cell{})
			h.present |= bit
			sh.n.minutes++
			sh.n.minuteSlots++
		}
		h.minutes[i].add(e)
	}
	h.cell.add(e)
	s.day(floorTo(e.Timestamp, daySecs), true, sh).cell.add(e)
}

// removeContribution removes e from its minute, hour and day cells. When
// last is set, the Last of each touched cell is recomputed: the minute cell
// from rawMinute (the entries still contributing to that minute), the hour
// from its minute cells, the day from its hour buckets.
func (s *series) removeContribution(e Entry, last bool, rawMinute func(h *hourBucket, minute int64) Cell, sh *shard) {
	hstart, dstart := floorTo(e.Timestamp, hourSecs), floorTo(e.Timestamp, daySecs)
	h := s.hour(hstart, false, sh)
	if h == nil {
		panic("aggregate: removing an entry that was never added")
	}
	minute := floorTo(e.Timestamp, minuteSecs)
	bit, i := h.minuteBit(e.Timestamp)
	if h.present&bit == 0 {
		panic("aggregate: removing an entry that was never added")
	}
	h.cell.sub(e)
	if h.minutes == nil { // the hour cell is the minute's cell
		if h.cell.Count == 0 {
			h.present &^= bit
			sh.n.minutes--
		} else if last {
			h.cell.Last = rawMinute(h, minute).Last
		}
	} else {
		mc := &h.minutes[i]
		mc.sub(e)
		if mc.Count == 0 {
			h.minutes = slices.Delete(h.minutes, i, i+1)
			h.present &^= bit
			sh.n.minutes--
			sh.n.minuteSlots--
		} else if last {
			mc.Last = rawMinute(h, minute).Last
		}
		if last && h.cell.Count > 0 {
			var c Cell
			for j := range h.minutes {
				c.merge(h.minutes[j])
			}
			h.cell.Last = c.Last
		}
		if len(h.minutes) == 1 { // one minute left: its cell is the hour cell again
			h.minutes = nil
			sh.n.minuteSlots--
		}
	}
	s.dropHourIfEmpty(h, sh)

	d := s.day(dstart, false, sh)
	d.cell.sub(e)
	if last && d.cell.Count > 0 {
		var c Cell
		s.hours.AscendRange(hourRef{start: dstart}, hourRef{start: dstart + daySecs}, func(r hourRef) bool {
			c.merge(r.h.cell)
			return true
		})
		d.cell.Last = c.Last
	}
	s.dropDayIfEmpty(d, sh)
}

func (s *series) dropHourIfEmpty(h *hourBucket, sh *shard) {
	if h.cell.Count == 0 && len(h.rawEntries()) == 0 {
		s.hours.Delete(hourRef{start: h.start})
		sh.n.hours--
		if s.hotHour == h {
			s.hotHour = nil
		}
	}
}

func (s *series) dropDayIfEmpty(d *dayBucket, sh *shard) {
	if d.cell.Count == 0 && len(d.raw) == 0 {
		s.days.Delete(dayRef{start: d.start})
		sh.n.days--
		if s.hotDay == d {
			s.hotDay = nil
		}
	}
}

func (s *series) empty() bool { return s.hours.Len() == 0 && s.days.Len() == 0 }

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
// window holding ts, creating the bucket when create is set.
func (s *series) windowRaw(m Mode, ts int64, create bool, sh *shard) *[]Entry {
	if m.Window == daySecs {
		d := s.day(floorTo(ts, daySecs), create, sh)
		if d == nil {
			return nil
		}
		return &d.raw
	}
	h := s.hour(floorTo(ts, hourSecs), create, sh)
	if h == nil {
		return nil
	}
	return h.rawSlice()
}

// apply adds e under mode m.
func (s *series) apply(m Mode, e Entry, sh *shard) {
	if m.Window == 0 {
		s.addContribution(e, sh)
		if m.Last {
			h := s.hour(floorTo(e.Timestamp, hourSecs), false, sh)
			raw := h.rawSlice()
			*raw = append(*raw, e)
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
			s.removeContribution(old, true, emptyMinute, sh)
		}
		s.addContribution(e, sh)
	}
}

// emptyMinute is the rawMinute of pre-aggregated series: a window winner is
// the only contributor to its minute.
func emptyMinute(*hourBucket, int64) Cell { return Cell{} }

// cancel removes e under mode m. It reports false when e is not part of
// the series.
func (s *series) cancel(m Mode, e Entry, sh *shard) bool {
	if m.Window == 0 {
		if m.Last {
			h := s.hour(floorTo(e.Timestamp, hourSecs), false, sh)
			if h == nil || h.raw == nil || !removeEntry(h.raw, e.Seq) {
				return false
			}
			sh.n.raw--
		} else if s.hour(floorTo(e.Timestamp, hourSecs), false, sh) == nil {
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
		s.removeContribution(old, true, emptyMinute, sh)
		if w, ok := winner(*raw); ok {
			s.addContribution(w, sh)
		}
	}
	// The window's bucket may now be empty.
	if m.Window == daySecs {
		if d := s.day(floorTo(e.Timestamp, daySecs), false, sh); d != nil {
			s.dropDayIfEmpty(d, sh)
		}
	} else if h := s.hour(floorTo(e.Timestamp, hourSecs), false, sh); h != nil {
		s.dropHourIfEmpty(h, sh)
	}
	return true
}

// lastOfMinute recomputes a minute cell of a last meter from the hour's raw
// entries.
func lastOfMinute(h *hourBucket, minute int64) Cell {
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
