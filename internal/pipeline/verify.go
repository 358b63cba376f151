package pipeline

import (
	"fmt"
	"math"
	"time"

	"github.com/meterdb/meterdb/aggregate"
	"github.com/meterdb/meterdb/store"
)

// AggregateCheck is what CheckAggregates compared.
type AggregateCheck struct {
	Events, Cancels int // in the stored log
	// CompleteLog reports that the log starts at location 1: nothing was
	// pruned, and every window was compared.
	CompleteLog bool
	// From is the start of the earliest window compared when the log was
	// pruned (unix seconds; 0 when CompleteLog).
	From     int64
	Compared int // hour and day windows compared
	// FrozenBlocks counts the stored blocks of frozen days compared with
	// the aggregate records of their days.
	FrozenBlocks int
}

// CheckAggregates checks that the checkpoint plus the log reproduces the
// aggregates (the third check of meterdb.Verify, which documents what is
// compared). Table A is what Open builds: the checkpointed aggregate
// records, then the log records after the checkpoint's location. Table B
// is every stored log record replayed into an empty table. problem
// receives one error wrapping store.ErrCorrupt per disagreement; the
// returned error is for what stopped the check (a record that does not
// read: run store.CheckRecords first).
func CheckAggregates(sdb *store.DB, firstLoc uint64, problem func(error)) (AggregateCheck, error) {
	var r AggregateCheck
	ms, err := sdb.Meters()
	if err != nil {
		return r, err
	}
	modes := map[uint64]aggregate.Mode{}
	last := map[uint64]bool{}
	for _, m := range ms {
		modes[m.Seq] = aggregate.ModeOf(string(m.Formula), string(m.EventTimeWindow))
		last[m.Seq] = m.Formula == "last"
	}
	a, b := aggregate.NewTable(8), aggregate.NewTable(8)
	keys := map[aggregate.Key]bool{}
	minT, maxT := int64(math.MaxInt64), int64(math.MinInt64)
	see := func(t int64) { minT, maxT = min(minT, t), max(maxT, t) }
	err = sdb.LoadAggregates(func(rec *store.AggRecord) error {
		mode, ok := modes[rec.Meter]
		if !ok {
			problem(fmt.Errorf("%w: aggregate record of unknown meter %d", store.ErrCorrupt, rec.Meter))
			return nil
		}
		k := aggregate.Key{Meter: rec.Meter, Customer: rec.Customer}
		keys[k] = true
		see(rec.Start)
		if err := a.Restore(k, mode, rec.Start, rec.Day, rec.State); err != nil {
			problem(fmt.Errorf("%w: aggregate record of meter %d customer %q at %d: %v", store.ErrCorrupt, rec.Meter, rec.Customer, rec.Start, err))
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	mark, err := sdb.LastMark()
	if err != nil {
		return r, err
	}
	received := int64(math.MaxInt64) // earliest receipt time in the stored log
	type pendingCancel struct {
		loc uint64
		c   store.Cancel
	}
	var unmatched []pendingCancel // cancellations B could not apply
	err = sdb.Replay(0, func(loc uint64, g *store.Group) error {
		for _, e := range g.Events {
			mode, ok := modes[e.Meter]
			if !ok {
				problem(fmt.Errorf("%w: log record %d names unknown meter %d", store.ErrCorrupt, loc, e.Meter))
				continue
			}
			r.Events++
			k := aggregate.Key{Meter: e.Meter, Customer: e.Customer}
			keys[k] = true
			see(e.Timestamp)
			received = min(received, e.Received)
			en := aggregate.Entry{Seq: e.Seq, Timestamp: e.Timestamp, Value: e.Value}
			if loc > mark.Loc {
				a.Apply(k, mode, en)
			}
			b.Apply(k, mode, en)
		}
		for _, c := range g.Cancels {
			mode, ok := modes[c.Meter]
			if !ok {
				problem(fmt.Errorf("%w: log record %d names unknown meter %d", store.ErrCorrupt, loc, c.Meter))
				continue
			}
			r.Cancels++
			k := aggregate.Key{Meter: c.Meter, Customer: c.Customer}
			received = min(received, c.Received)
			en := aggregate.Entry{Seq: c.Seq, Timestamp: c.Timestamp, Value: c.Value}
			if loc > mark.Loc && !a.Cancel(k, mode, en) {
				problem(fmt.Errorf("%w: log record %d cancels event %d, which is not recorded", store.ErrCorrupt, loc, c.Seq))
			}
			if !b.Cancel(k, mode, en) {
				unmatched = append(unmatched, pendingCancel{loc, c})
			}
		}
		return nil
	}, nil)
	if err != nil {
		return r, err
	}
	if r.FrozenBlocks, err = checkFrozenBlocks(sdb, a, last, problem); err != nil {
		return r, err
	}
	if len(keys) == 0 {
		r.CompleteLog = firstLoc <= 1
		return r, nil
	}
	const hour, day = 3600, 86400
	ceil := func(t, unit int64) int64 { return verifyFloor(t+unit-1, unit) }
	hourFrom, dayFrom := verifyFloor(minT, day), verifyFloor(minT, day)
	r.CompleteLog = firstLoc <= 1
	if !r.CompleteLog {
		if received == math.MaxInt64 {
			return r, nil // an empty log after pruning: nothing to compare with
		}
		hourFrom, dayFrom = ceil(received+hour, hour), ceil(received+hour, day)
		r.From = hourFrom
	}
	end := verifyFloor(maxT, day) + 2*day
	for _, u := range unmatched {
		// A cancellation of a pruned event is expected (its window is not
		// compared); one whose event lies in a compared window must find it.
		if r.CompleteLog || u.c.Timestamp >= hourFrom {
			problem(fmt.Errorf("%w: log record %d cancels event %d, which the log does not hold", store.ErrCorrupt, u.loc, u.c.Seq))
		}
	}
	for k := range keys {
		for _, g := range []struct {
			grouping aggregate.Grouping
			from     int64
			name     string
		}{{aggregate.Hourly, hourFrom, "hour"}, {aggregate.Daily, dayFrom, "day"}} {
			if g.from >= end {
				continue
			}
			wa, err := a.Query(k, g.from, end, g.grouping)
			if err != nil {
				return r, err
			}
			wb, err := b.Query(k, g.from, end, g.grouping)
			if err != nil {
				return r, err
			}
			if d := diffWindows(wa, wb, last[k.Meter], "the checkpoint plus replay", "the log alone"); d != "" {
				problem(fmt.Errorf("%w: aggregates of meter %d customer %q, %s %s", store.ErrCorrupt, k.Meter, k.Customer, g.name, d))
			}
			r.Compared += max(len(wa), len(wb))
		}
	}
	return r, nil
}

func verifyFloor(t, unit int64) int64 {
	if r := t % unit; r < 0 {
		return t - r - unit
	} else {
		return t - r
	}
}

// diffWindows describes the first window where a and b, named an and bn,
// disagree, or returns "".
func diffWindows(a, b []aggregate.Window, last bool, an, bn string) string {
	cell := func(w []aggregate.Window, i int) string {
		if i >= len(w) {
			return "nothing"
		}
		s := fmt.Sprintf("count %d sum %s", w[i].Count, w[i].Sum)
		if last {
			s += fmt.Sprintf(" last (seq %d, at %d, value %d)", w[i].Last.Seq, w[i].Last.Timestamp, w[i].Last.Value)
		}
		return s
	}
	for i := range max(len(a), len(b)) {
		var same bool
		if i < len(a) && i < len(b) {
			x, y := a[i], b[i]
			same = x.Start == y.Start && x.Count == y.Count && x.Sum == y.Sum && (!last || x.Last == y.Last)
		}
		if !same {
			start := int64(0)
			if i < len(a) {
				start = a[i].Start
			} else {
				start = b[i].Start
			}
			return fmt.Sprintf("%s: %s gives %s, %s %s",
				time.Unix(start, 0).UTC().Format(time.RFC3339), an, cell(a, i), bn, cell(b, i))
		}
	}
	return ""
}

// checkFrozenBlocks checks every stored block of frozen days against a,
// the table the aggregate records and the log build: each hour and day
// of the block's span must hold the same count, sum and (for last meters)
// last value. A frozen cell keeps its last entry's value, not its
// sequence or timestamp, so those are not compared.
func checkFrozenBlocks(sdb *store.DB, a *aggregate.Table, last map[uint64]bool, problem func(error)) (int, error) {
	type id struct {
		k    aggregate.Key
		span int64
	}
	blocks := map[id][]byte{}
	var ids []id
	c := aggregate.NewTable(8)
	c.SetMinuteReader(func(aggregate.Key, int64) ([]byte, error) { return nil, nil })
	c.SetBlockReader(func(k aggregate.Key, span int64) ([]byte, error) { return blocks[id{k, span}], nil }, 0)
	err := sdb.LoadFrozen(func(b *store.FrozenBlock) error {
		k := aggregate.Key{Meter: b.Meter, Customer: b.Customer}
		if err := c.RestoreBlock(k, b.First, b.Data); err != nil {
			problem(fmt.Errorf("%w: frozen block of meter %d customer %q at %d: %v", store.ErrCorrupt, b.Meter, b.Customer, b.First, err))
			return nil
		}
		blocks[id{k, b.First}] = append([]byte(nil), b.Data...)
		ids = append(ids, id{k, b.First})
		return nil
	})
	if err != nil {
		return 0, err
	}
	strip := func(ws []aggregate.Window) []aggregate.Window {
		for i := range ws {
			ws[i].Last.Seq, ws[i].Last.Timestamp = 0, 0
		}
		return ws
	}
	for _, b := range ids {
		for _, g := range []aggregate.Grouping{aggregate.Hourly, aggregate.Daily} {
			end := b.span + aggregate.BlockSpan
			wc, err := c.Query(b.k, b.span, end, g)
			if err != nil {
				problem(fmt.Errorf("%w: frozen block of meter %d customer %q at %d: %v", store.ErrCorrupt, b.k.Meter, b.k.Customer, b.span, err))
				break
			}
			wa, err := a.Query(b.k, b.span, end, g)
			if err != nil {
				return 0, err
			}
			if d := diffWindows(strip(wc), strip(wa), last[b.k.Meter], "the block", "the aggregate records"); d != "" {
				problem(fmt.Errorf("%w: frozen block of meter %d customer %q at %d disagrees with the aggregate records, %s",
					store.ErrCorrupt, b.k.Meter, b.k.Customer, b.span, d))
			}
		}
	}
	return len(ids), nil
}
