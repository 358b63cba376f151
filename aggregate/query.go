package aggregate

import "math/bits"

// Grouping splits a query range into windows.
type Grouping int

const (
	// Total returns one window for the whole range.
	Total Grouping = iota
	// Hourly returns one window per UTC hour that has entries.
	Hourly
	// Daily returns one window per UTC day that has entries.
	Daily
)

// Window is the aggregate of one query window [Start, End), unix seconds.
type Window struct {
	Start, End int64
	Cell
}

// Query returns the aggregates of series k over [start, end). With Total it
// returns exactly one window, empty (Count 0) when nothing was recorded;
// with Hourly or Daily it returns the non-empty windows, newest first.
// start and end must be minute aligned (hour aligned for Hourly, UTC-day
// aligned for Daily) with start < end.
func (t *Table) Query(k Key, start, end int64, g Grouping) ([]Window, error) {
	var out []Window
	err := t.Visit(k, start, end, g,
		func(n int) { out = make([]Window, 0, n) },
		func(w Window) { out = append(out, w) })
	return out, err
}

// Visit is Query without the slice: it calls fn with each window Query
// would return, in the same order. Before the first call to fn it calls
// size, when not nil, with an upper bound of the number of calls to come
// (bounded by the buckets the series holds, not by the range), so that the
// caller can allocate its result once. fn and size run under the shard's
// lock, or after it when they take frozen cells read back from the store:
// they must not call back into the table.
func (t *Table) Visit(k Key, start, end int64, g Grouping, size func(n int), fn func(Window)) error {
	if _, err := checkRange(start, end, g); err != nil {
		return err
	}
	if size == nil {
		size = func(int) {}
	}
	sh, h := t.shard(k)
	sh.mu.Lock()
	s := sh.lookupLocked(h, k)
	if g == Total {
		// Frozen minute cells are read after the lock is released.
		w := Window{Start: start, End: end}
		var p pending
		if s != nil {
			w.Cell = s.total(start, end, &p)
		}
		sh.mu.Unlock()
		if p.waits() {
			if err := p.resolve(t, &w.Cell); err != nil {
				return err
			}
		}
		size(1)
		fn(w)
		return nil
	}
	// Stored blocks in range, newest first: their hours are read after the lock.
	deferred := func() []deferredBlock {
		defer sh.mu.Unlock()
		return visitLocked(s, start, end, g, size, fn)
	}()
	for _, d := range deferred {
		data, err := t.storedBlock(d.key, d.span)
		if err != nil {
			return err
		}
		blockDaysDesc(d.span, data, false, floorTo(start, daySecs), end, func(fd frozenDay) bool {
			emitHours(fd, start, end, fn)
			return true
		})
	}
	return nil
}

// emitHours calls fn with the windows of the hours of a frozen day in
// [start, end) with entries, newest first.
func emitHours(d frozenDay, start, end int64, fn func(Window)) {
	var ws [hoursPerDay]Window
	n := 0
	d.hours(start, end, func(hs int64, c Cell) {
		if c.Count > 0 {
			ws[n] = Window{Start: hs, End: hs + hourSecs, Cell: c}
			n++
		}
	})
	for i := n - 1; i >= 0; i-- {
		fn(ws[i])
	}
}

// visitLocked is Visit for Hourly and Daily under the shard lock. It
// returns the stored blocks whose hours an Hourly visit still needs.
func visitLocked(s *series, start, end int64, g Grouping, size func(int), fn func(Window)) (deferred []deferredBlock) {
	var frozenDays int
	if s != nil && s.fz != nil {
		frozenDays = int(s.fz.days)
	}
	switch {
	case s == nil:
		size(0)
	case g == Hourly:
		size(min(int((end-start)/hourSecs), hoursPerDay*(s.chunks.Len()+frozenDays)))
		s.chunks.DescendRange(ref{start: end - 1}, ref{start: floorTo(start, daySecs) - 1}, func(r ref) bool {
			c := r.c
			buckets := c.hourSlice()
			for m := c.has() & hourBits; m != 0; { // from the newest hour down
				i := 31 - bits.LeadingZeros32(m)
				m &^= 1 << uint(i)
				hs := r.start + int64(i)*hourSecs
				if hs >= end {
					continue
				}
				if hs < start {
					return false
				}
				if h := &buckets[c.slot[i]]; h.count > 0 {
					fn(h.window(hs, hs+hourSecs, s.ar))
				}
			}
			return true
		})
		if f := s.fz; f != nil && start < f.end {
			f.daysDesc(floorTo(start, daySecs), min(end, f.end), func(bl *frozenBlock) bool {
				deferred = append(deferred, deferredBlock{key: s.key, span: spanOf(bl.first)})
				return true
			}, func(d frozenDay) bool {
				emitHours(d, start, end, fn)
				return true
			})
		}
	default:
		size(min(int((end-start)/daySecs), s.chunks.Len()+frozenDays))
		s.chunks.DescendRange(ref{start: end - 1}, ref{start: start - 1}, func(r ref) bool {
			if d := &r.c.day; r.c.has()&dayBit != 0 && d.count > 0 {
				fn(d.window(r.start, r.start+daySecs, s.ar))
			}
			return true
		})
		if f := s.fz; f != nil && start < f.end {
			f.daysDesc(start, min(end, f.end), nil, func(d frozenDay) bool {
				if c := d.cell(); c.Count > 0 {
					fn(Window{Start: d.start, End: d.start + daySecs, Cell: c})
				}
				return true
			})
		}
	}
	return deferred
}

// total aggregates the minute-aligned range [a, b): minute cells for the
// partial hours at the edges, hour buckets for the partial days, day
// buckets for the rest. The part before the frozen end comes from the
// frozen days; minute cells it needs that they do not hold are left in p
// (nil only when the range needs none: day-aligned ranges, or a table
// without a MinuteReader).
func (s *series) total(a, b int64, p *pending) (c Cell) {
	if f := s.fz; f != nil && a < f.end {
		e := min(b, f.end)
		f.total(s.key, a, e, &c, p)
		if a = e; a >= b {
			return c
		}
	}
	hA, hB := ceilTo(a, hourSecs), floorTo(b, hourSecs)
	if hA > hB { // inside one hour
		s.minutesIn(&c, a, b)
		return c
	}
	s.minutesIn(&c, a, hA)
	s.minutesIn(&c, hB, b)
	dA, dB := ceilTo(hA, daySecs), floorTo(hB, daySecs)
	if dA > dB { // whole hours inside one day
		s.hoursIn(&c, hA, hB)
		return c
	}
	s.hoursIn(&c, hA, dA)
	s.hoursIn(&c, dB, hB)
	if dA < dB {
		s.daysIn(&c, dA, dB)
	}
	return c
}

func (s *series) minutesIn(c *Cell, a, b int64) {
	if a >= b {
		return
	}
	hstart, dstart := floorTo(a, hourSecs), floorTo(a, daySecs)
	ch := s.find(dstart)
	if ch == nil {
		return
	}
	h := ch.hourAt(int((hstart - dstart) / hourSecs))
	if h == nil {
		return
	}
	h.eachMinute(hstart, s.ar, func(minute int64, m Cell) {
		if minute >= a && minute < b {
			c.merge(m)
		}
	})
}

// hoursIn adds the hour cells of the hour-aligned range [a, b).
func (s *series) hoursIn(c *Cell, a, b int64) {
	if a < b {
		s.chunks.AscendRange(ref{start: floorTo(a, daySecs)}, ref{start: b}, func(r ref) bool {
			r.c.eachHour(r.start, a, b, func(_ int64, h *bucket) { c.merge(h.cell(s.ar)) })
			return true
		})
	}
}

func ceilTo(t, unit int64) int64 {
	f := floorTo(t, unit)
	if f == t {
		return t
	}
	return f + unit
}
