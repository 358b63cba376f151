package aggregate

import (
	"fmt"

	"github.com/meterdb/meterdb/internal/binread"
)

// Queries over frozen days. A series' range [a, b) splits at its frozen
// end: the part before comes from the packed days, the part after from the
// chunk tree. Minute cells of a frozen hour come from the packed day, or,
// when the table has a MinuteReader, are left in a pending list that the
// query resolves after it released the shard lock.

// pending is the frozen minute detail a query still has to read: at most
// the two edges of one range per series.
type pending struct {
	n     int
	edges [2]pendingEdge
}

type pendingEdge struct {
	key         Key
	start, a, b int64 // the hour, and the minutes [a, b) of it the range holds
}

func (p *pending) add(k Key, start, a, b int64) {
	if p.n == len(p.edges) {
		panic("aggregate: more than two frozen minute edges in one range")
	}
	p.edges[p.n] = pendingEdge{key: k, start: start, a: a, b: b}
	p.n++
}

// resolve reads the pending minute cells through read and merges them
// into c.
func (p *pending) resolve(read MinuteReader, c *Cell) error {
	for _, e := range p.edges[:p.n] {
		state, err := read(e.key, e.start)
		if err != nil {
			return err
		}
		if state == nil {
			return fmt.Errorf("%w: frozen hour %d of meter %d, customer %q has no stored record", ErrCorrupt, e.start, e.key.Meter, e.key.Customer)
		}
		if err := mergeMinutes(state, e.start, e.a, e.b, c); err != nil {
			return err
		}
	}
	p.n = 0
	return nil
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
		f.hoursIn(hA, hB, c)
		return
	}
	f.hoursIn(hA, dA, c)
	f.hoursIn(dB, hB, c)
	if dA < dB {
		f.eachDay(dA, dB, func(d frozenDay) bool { c.merge(d.cell()); return true })
	}
}

func (f *frozenSeries) hoursIn(a, b int64, c *Cell) {
	if a < b {
		f.eachDay(floorTo(a, daySecs), b, func(d frozenDay) bool {
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
	if !d.hasHour(hs) {
		return
	}
	if p == nil {
		panic("aggregate: frozen minute cells needed without a pending list")
	}
	p.add(k, hs, a, b)
}

// hasHour reports whether the hour at hs has entries.
func (d frozenDay) hasHour(hs int64) bool {
	i := 0
	skipCell(d.body, &i)
	mask := uint32(d.body[i]) | uint32(d.body[i+1])<<8 | uint32(d.body[i+2])<<16
	return mask&(1<<uint((hs-d.start)/hourSecs)) != 0
}
