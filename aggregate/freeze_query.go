package aggregate

import (
	"fmt"

	"github.com/meterdb/meterdb/internal/binread"
)

// Queries over frozen days. A series' range [a, b) splits at its frozen
// end: the part before comes from the packed days, the part after from the
// chunk tree. Minute cells of a frozen hour come from the packed day, or,
// when the table has a MinuteReader, are left in a pending list that the
// query resolves after it released the shard lock; so are the hour cells
// of a day in a stored block (freeze.go, "Stored blocks").

// pending is the frozen detail a query still has to read, after it
// released the shard lock: the minute cells of at most the two edges of
// one range per series, and the hour cells of at most two partial days in
// stored blocks.
type pending struct {
	n, nh int
	edges [2]pendingEdge
	hours [2]pendingHours
}

type pendingEdge struct {
	key         Key
	start, a, b int64 // the hour, and the minutes [a, b) of it the range holds
	stored      bool  // the hour's day is in a stored block: whether the hour has entries is not known
}

// pendingHours is the hours [a, b) of one day of key, in a stored block.
type pendingHours struct {
	key  Key
	a, b int64
}

func (p *pending) add(k Key, start, a, b int64, stored bool) {
	if p == nil {
		panic("aggregate: frozen minute cells needed without a pending list")
	}
	if p.n == len(p.edges) {
		panic("aggregate: more than two frozen minute edges in one range")
	}
	p.edges[p.n] = pendingEdge{key: k, start: start, a: a, b: b, stored: stored}
	p.n++
}

func (p *pending) addHours(k Key, a, b int64) {
	if p == nil {
		panic("aggregate: stored hour cells needed without a pending list")
	}
	if p.nh == len(p.hours) {
		panic("aggregate: more than two partial stored days in one range")
	}
	p.hours[p.nh] = pendingHours{key: k, a: a, b: b}
	p.nh++
}

// waits reports whether p holds anything to read.
func (p *pending) waits() bool { return p.n > 0 || p.nh > 0 }

// resolve reads the pending minute and hour cells through t's readers
// and merges them into c.
func (p *pending) resolve(t *Table, c *Cell) error {
	for _, e := range p.edges[:p.n] {
		state, err := t.minutes(e.key, e.start)
		if err != nil {
			return err
		}
		if state == nil && e.stored {
			// An hour without a record is empty, if its stored day says so.
			d, err := t.storedDay(e.key, e.start)
			if err != nil {
				return err
			}
			if !d.hasHour(e.start) {
				continue
			}
		}
		if state == nil {
			return fmt.Errorf("%w: frozen hour %d of meter %d, customer %q has no stored record", ErrCorrupt, e.start, e.key.Meter, e.key.Customer)
		}
		if err := mergeMinutes(state, e.start, e.a, e.b, c); err != nil {
			return err
		}
	}
	for _, h := range p.hours[:p.nh] {
		d, err := t.storedDay(h.key, h.a)
		if err != nil {
			return err
		}
		d.hours(h.a, h.b, func(_ int64, hc Cell) { c.merge(hc) })
	}
	p.n, p.nh = 0, 0
	return nil
}

// storedDay returns the whole frozen day of series k that holds time at,
// which lies in a stored block, read back through the block cache.
func (t *Table) storedDay(k Key, at int64) (frozenDay, error) {
	span, ds := spanOf(at), floorTo(at, daySecs)
	data, err := t.storedBlock(k, span)
	if err != nil {
		return frozenDay{}, err
	}
	var out frozenDay
	found := false
	blockDaysAsc(span, data, false, ds, ds+daySecs, func(d frozenDay) bool {
		out, found = d, true
		return false
	})
	if !found {
		return frozenDay{}, fmt.Errorf("%w: frozen day %d of meter %d, customer %q is not in its stored block", ErrCorrupt, ds, k.Meter, k.Customer)
	}
	return out, nil
}

// mergeMinutes merges into c the minute cells of an encoded hour record
// (encodeHour) starting at start whose minute lies in [a, b).
func mergeMinutes(state []byte, start, a, b int64, c *Cell) error {
	r := binread.New(state)
	n := r.Count(7)
	for i := 0; i < n && !r.Bad(); i++ {
		off, mc := readMinuteCell(&r)
		if off >= 60 {
			r.Fail()
			break
		}
		if t := start + int64(off)*minuteSecs; t >= a && t < b {
			c.merge(mc)
		}
	}
	if r.Bad() {
		return fmt.Errorf("%w: hour record at %d", ErrCorrupt, start)
	}
	return nil
}

// total merges into c the aggregate of the minute-aligned range [a, b),
// which lies before f.end: day cells for whole days, hour cells for
// partial days, minute cells for partial hours (left in p when the days
// do not hold them).
func (f *frozenSeries) total(k Key, a, b int64, c *Cell, p *pending) {
	hA, hB := ceilTo(a, hourSecs), floorTo(b, hourSecs)
	if hA > hB {
		f.minutesIn(k, a, b, c, p)
		return
	}
	f.minutesIn(k, a, hA, c, p)
	f.minutesIn(k, hB, b, c, p)
	dA, dB := ceilTo(hA, daySecs), floorTo(hB, daySecs)
	if dA > dB {
		f.hoursIn(k, hA, hB, c, p)
		return
	}
	f.hoursIn(k, hA, dA, c, p)
	f.hoursIn(k, dB, hB, c, p)
	if dA < dB {
		f.eachDay(dA, dB, func(d frozenDay) bool { c.merge(d.cell()); return true })
	}
}

// hoursIn merges the hours [a, b) of one day, or leaves them in p when
// the day is in a stored block.
func (f *frozenSeries) hoursIn(k Key, a, b int64, c *Cell, p *pending) {
	if a < b {
		f.eachDay(floorTo(a, daySecs), b, func(d frozenDay) bool {
			if d.stored {
				p.addHours(k, a, b)
				return false
			}
			d.hours(a, b, func(_ int64, h Cell) { c.merge(h) })
			return true
		})
	}
}

// minutesIn merges the minutes [a, b) of one hour, or leaves them in p.
func (f *frozenSeries) minutesIn(k Key, a, b int64, c *Cell, p *pending) {
	if a >= b {
		return
	}
	hs := floorTo(a, hourSecs)
	d, ok := f.day(floorTo(a, daySecs))
	if !ok {
		return
	}
	if f.minutes {
		d.minutes(hs, a, b, c)
		return
	}
	if !d.stored && !d.hasHour(hs) {
		return
	}
	p.add(k, hs, a, b, d.stored)
}

// hasHour reports whether the hour at hs has entries.
func (d frozenDay) hasHour(hs int64) bool {
	mask, _ := d.hourMask()
	return mask&(1<<uint((hs-d.start)/hourSecs)) != 0
}
