package aggregate

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/google/btree"
)

// The meter index: what the cross-customer queries (Customers, Top,
// Totals) read instead of every series of the table.
//
// Each shard keeps, per meter, the series of that meter it holds (a
// meterPart): in a slice for the queries that visit them all, and in a
// tree by customer for the ones that page through them in order. Each series keeps a copy of its non-empty day
// cells in a slice sorted by day (dayCells), beside the day tree, with
// running totals: a range of whole days is then one subtraction instead
// of a walk over a tree and its buckets. Both are maintained under the shard lock, by the code that
// changes a series (apply, cancel, restore); adding an event to a day that
// already has usage updates one slice element in place and allocates
// nothing. A query locks one shard at a time, so its answer is consistent
// per shard, not across shards: an event applied during a query may count
// for its customer or not.

// meterPart is the series of one meter that one shard holds. It is
// guarded by the shard's mutex.
type meterPart struct {
	series     []*series              // in no order; a series' slot is its index
	byCustomer *btree.BTreeG[*series] // the same series, by customer
}

func lessCustomer(a, b *series) bool { return a.key.Customer < b.key.Customer }

// indexLocked adds the new series s to its meter's part: an append and a
// tree insert, whatever the number of series.
func (sh *shard) indexLocked(s *series) {
	p := sh.meters[s.key.Meter]
	if p == nil {
		p = &meterPart{byCustomer: btree.NewG(degree, lessCustomer)}
		sh.meters[s.key.Meter] = p
	}
	s.slot = len(p.series)
	p.series = append(p.series, s)
	p.byCustomer.ReplaceOrInsert(s)
}

// unindexLocked removes the series s, which is being dropped, from its
// meter's part: the last series takes its slot.
func (sh *shard) unindexLocked(s *series) {
	p := sh.meters[s.key.Meter]
	if p == nil || s.slot >= len(p.series) || p.series[s.slot] != s {
		panic("aggregate: dropping a series that is not in the meter index")
	}
	last := p.series[len(p.series)-1]
	p.series[s.slot], last.slot = last, s.slot
	p.series[len(p.series)-1] = nil
	p.series = p.series[:len(p.series)-1]
	p.byCustomer.Delete(s)
	if len(p.series) == 0 {
		delete(sh.meters, s.key.Meter)
	}
}

// dayCell is one non-empty day of a series: its own count and sum, and
// running totals over the series' day cells up to and including it, so
// that any range of whole days is one subtraction: a query reads the two
// cells at the range's ends, not the days between. The running totals are
// brought up to date lazily: a change to a day only lowers the series'
// cumValid to its index, and the first query that needs them (under the
// same shard lock) recomputes them from there (ensureCum). An event thus
// costs one cell whatever its day; a query after a batch of changes pays
// one pass over at most the 37-odd live days.
type dayCell struct {
	start    int64
	cumCount int64  // entries of this day and of every earlier day cell: valid below series.cumValid
	cumSum   Int128 // their sum
	last     Entry  // the day's newest entry (meaningful for last meters only)
	count    int64  // the day's entries
	sum      Int128 // their sum
}

// ensureCum brings the running totals of the day cells up to date, and
// lastDay with them.
func (s *series) ensureCum() {
	cs := s.dayCells
	k := s.cumValid
	if k >= len(cs) {
		return
	}
	var cc int64
	var sum Int128
	if k > 0 {
		cc, sum = cs[k-1].cumCount, cs[k-1].cumSum
	}
	for ; k < len(cs); k++ {
		cc += cs[k].count
		sum = sum.Add(cs[k].sum)
		cs[k].cumCount, cs[k].cumSum = cc, sum
	}
	s.cumValid = len(cs)
	s.lastDay = cs[len(cs)-1]
}

// dayRange returns the aggregate of the day cells [i, j), i < j.
func (s *series) dayRange(i, j int) Cell {
	s.ensureCum()
	cs := s.dayCells
	e := &s.lastDay // cs[j-1] when j is the end: spares a cache miss
	if j < len(cs) {
		e = &cs[j-1]
	}
	c := Cell{Count: e.cumCount, Sum: e.cumSum, Last: e.last}
	if i > 0 {
		c.Count -= cs[i-1].cumCount
		c.Sum = c.Sum.Add(cs[i-1].cumSum.Neg())
	}
	return c
}

// syncDay copies the day bucket d at start (nil or empty when the day has
// no usage left) into the series' day cells: one cell, whatever the day;
// the running totals after it are left to ensureCum.
func (s *series) syncDay(start int64, d *bucket) {
	i := s.dayIndex(start)
	cs := s.dayCells
	found := i < len(cs) && cs[i].start == start
	var nc Cell
	if d != nil && d.count > 0 {
		nc = d.cell(s.ar)
	}
	switch {
	case nc.Count == 0 && !found:
		return
	case nc.Count == 0:
		s.dayCells = slices.Delete(cs, i, i+1)
	case found:
		c := &cs[i]
		c.last, c.count, c.sum = nc.Last, nc.Count, nc.Sum
	default:
		s.dayCells = slices.Insert(cs, i, dayCell{start: start, last: nc.Last, count: nc.Count, sum: nc.Sum})
	}
	s.cumValid = min(s.cumValid, i)
	switch n := len(s.dayCells); {
	case n == 0:
		s.lastDay = dayCell{}
	case s.cumValid >= n:
		s.lastDay = s.dayCells[n-1]
	case found && nc.Count > 0:
		// A cell changed in place: the last cell's start, which is all
		// lastDay keeps now, is what it was (and reading it would cost
		// a cache miss per event).
	default:
		s.lastDay.start = s.dayCells[n-1].start // what dayIndex reads; the rest waits for ensureCum
	}
}

// dayIndex returns the index of the first day cell at or after start. It
// tries the end of the slice, then the cell where start would be if the
// days in between all had usage, before it searches.
func (s *series) dayIndex(start int64) int {
	cs := s.dayCells
	if len(cs) == 0 || s.lastDay.start < start {
		return len(cs)
	}
	if g := s.dayGuess(start); g >= 0 && cs[g].start == start {
		return g
	}
	i, _ := slices.BinarySearchFunc(cs, start, func(c dayCell, t int64) int { return cmp.Compare(c.start, t) })
	return i
}

// dayGuess returns the index the day cell at start would have if every
// day between it and the last cell had usage, or -1 when there is no
// such index (no cells, start after the last, or too far back).
func (s *series) dayGuess(start int64) int {
	n := len(s.dayCells)
	if n == 0 || s.lastDay.start < start {
		return -1
	}
	return max(n-1-int((s.lastDay.start-start)/daySecs), -1)
}

// daysIn merges the aggregate of the days starting in [a, b).
func (s *series) daysIn(c *Cell, a, b int64) {
	if i, j := s.dayIndex(a), s.dayIndex(b); i < j {
		c.merge(s.dayRange(i, j))
	}
}

// CustomerCell is one customer's aggregate over a query range.
type CustomerCell struct {
	Customer string
	Cell
}

// checkRange returns the window length of g, or an error when [start, end)
// is empty or not aligned to it.
func checkRange(start, end int64, g Grouping) (int64, error) {
	var unit int64
	switch g {
	case Total:
		unit = minuteSecs
	case Hourly:
		unit = hourSecs
	case Daily:
		unit = daySecs
	default:
		panic(fmt.Sprintf("aggregate: unknown grouping %d", g))
	}
	if start%unit != 0 || end%unit != 0 {
		return 0, ErrUnaligned
	}
	if start >= end {
		return 0, ErrEmptyRange
	}
	return unit, nil
}

// Customers returns, in ascending customer order, up to limit customers of
// meter sorting after after whose aggregate over the minute-aligned range
// [start, end) has entries, each with that aggregate, and whether more
// follow. It locks each shard in turn and, within a shard, walks the
// meter's series after the cursor in customer order (a tree seek, then
// the tree's order), computing each one's aggregate until that shard has
// given limit+1 customers with usage: its cost is at most the meter's
// series times the cost of one range aggregate (two lookups in the
// series' day cells for the whole days in range, whatever their number,
// plus the hour and minute cells of partial days), and it allocates the
// result, of at most shards×(limit+1) entries before it is cut. Frozen
// days (freeze.go) are decoded from their packed form, a day header per
// whole day; a range whose minute-aligned edge falls in a frozen hour reads
// that hour's minute cells through the MinuteReader after the shard is
// unlocked, and such a customer does not count towards the shard's limit+1
// (the walk goes on). limit must be positive. The result is the caller's.
func (t *Table) Customers(ctx context.Context, meter uint64, start, end int64, after string, limit int) ([]CustomerCell, bool, error) {
	if _, err := checkRange(start, end, Total); err != nil {
		return nil, false, err
	}
	var out []CustomerCell
	var waiting []waitingCell
	pivot := &series{key: Key{Customer: after}}
	for i := range t.shards {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		sh := &t.shards[i]
		sh.mu.Lock()
		if p := sh.meters[meter]; p != nil {
			n := 0
			p.byCustomer.AscendGreaterOrEqual(pivot, func(s *series) bool {
				if s.key.Customer == after {
					return true
				}
				var pd pending
				c := s.total(start, end, &pd)
				switch {
				case pd.waits(): // frozen cells to read: counted once known
					waiting = append(waiting, waitingCell{CustomerCell{Customer: s.key.Customer, Cell: c}, pd})
				case c.Count > 0:
					out = append(out, CustomerCell{Customer: s.key.Customer, Cell: c})
					n++
				}
				return n <= limit
			})
		}
		sh.mu.Unlock()
	}
	out, err := t.resolveWaiting(out, waiting)
	if err != nil {
		return nil, false, err
	}
	slices.SortFunc(out, func(a, b CustomerCell) int { return strings.Compare(a.Customer, b.Customer) })
	if len(out) > limit {
		return out[:limit:limit], true, nil
	}
	return out, false, nil
}

// Top returns up to n customers of meter whose aggregate over the
// minute-aligned range [start, end) has entries, greatest value under
// formula ("count", "sum" or "last") first, ties broken by ascending
// customer. It locks each shard in turn and computes the aggregate of
// every series of the meter: its cost is the meter's series times the
// cost of one range aggregate (two lookups in the series' day cells for
// the whole days in range, whatever their number, plus the hour and
// minute cells of partial days) plus
// log n per customer with usage; it allocates only its result, which is
// the caller's. Frozen days cost a decoded day header each, and frozen
// minute cells a read after the shard is unlocked, as for Customers. n
// must be positive.
func (t *Table) Top(ctx context.Context, meter uint64, start, end int64, n int, formula string) ([]CustomerCell, error) {
	if _, err := checkRange(start, end, Total); err != nil {
		return nil, err
	}
	h := topHeap{n: n}
	var waiting []waitingCell
	for i := range t.shards {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sh := &t.shards[i]
		sh.mu.Lock()
		if p := sh.meters[meter]; p != nil {
			if start%daySecs == 0 && end%daySecs == 0 {
				topDays(p.series, start, end, formula, &h)
			} else {
				for _, s := range p.series {
					var pd pending
					c := s.total(start, end, &pd)
					switch {
					case pd.waits(): // frozen cells to read: offered once known
						waiting = append(waiting, waitingCell{CustomerCell{Customer: s.key.Customer, Cell: c}, pd})
					case c.Count > 0:
						h.offer(topItem{v: c.Value(formula), cc: CustomerCell{Customer: s.key.Customer, Cell: c}})
					}
				}
			}
		}
		sh.mu.Unlock()
	}
	resolved, err := t.resolveWaiting(nil, waiting)
	if err != nil {
		return nil, err
	}
	for _, cc := range resolved {
		h.offer(topItem{v: cc.Value(formula), cc: cc})
	}
	slices.SortFunc(h.items, func(a, b topItem) int {
		if a.worse(b) {
			return 1
		}
		return -1
	})
	out := make([]CustomerCell, len(h.items))
	for i := range h.items {
		out[i] = h.items[i].cc
	}
	return out, nil
}

// topDays offers to h the aggregate over the whole days [a, b) of every
// series in ss with entries there. It is total for day-aligned ranges,
// reorganised for memory-level parallelism: series are taken a batch at a
// time, first all their headers, then all their day cells at the start of
// the range, so that the cache misses of a batch overlap instead of
// following one another.
func topDays(ss []*series, a, b int64, formula string, h *topHeap) {
	const batch = 16
	var ia [batch]int
	var sink int64
	for len(ss) > 0 {
		bs := ss[:min(batch, len(ss))]
		ss = ss[len(bs):]
		for _, s := range bs {
			sink += s.lastDay.start // bring the series into the cache
		}
		for k, s := range bs {
			ia[k] = s.dayIndex(a)
		}
		for k, s := range bs {
			if s.fz != nil && a < s.fz.end { // frozen days in range: whole days need no minute cells
				if c := s.total(a, b, nil); c.Count > 0 {
					h.offer(topItem{v: c.Value(formula), cc: CustomerCell{Customer: s.key.Customer, Cell: c}})
				}
				continue
			}
			if j := s.dayIndex(b); ia[k] < j {
				c := s.dayRange(ia[k], j)
				h.offer(topItem{v: c.Value(formula), cc: CustomerCell{Customer: s.key.Customer, Cell: c}})
			}
		}
	}
	h.sink += sink // keeps the first pass's loads from being optimised away
}

type topItem struct {
	v  Int128
	cc CustomerCell
}

// worse reports whether a ranks after b: a smaller value, or the same
// value and a greater customer.
func (a *topItem) worse(b topItem) bool {
	if c := a.v.Cmp(b.v); c != 0 {
		return c < 0
	}
	return a.cc.Customer > b.cc.Customer
}

// topHeap keeps the n best items offered, the worst at the root.
type topHeap struct {
	n     int
	items []topItem
	sink  int64 // see topDays
}

func (h *topHeap) offer(x topItem) {
	if len(h.items) < h.n {
		h.items = append(h.items, x)
		// Sift up.
		for i := len(h.items) - 1; i > 0; {
			p := (i - 1) / 2
			if !h.items[i].worse(h.items[p]) {
				break
			}
			h.items[i], h.items[p] = h.items[p], h.items[i]
			i = p
		}
		return
	}
	if !h.items[0].worse(x) {
		return // x is no better than the worst kept
	}
	h.items[0] = x
	// Sift down.
	for i := 0; ; {
		l, w := 2*i+1, i
		if l < len(h.items) && h.items[l].worse(h.items[w]) {
			w = l
		}
		if r := l + 1; r < len(h.items) && h.items[r].worse(h.items[w]) {
			w = r
		}
		if w == i {
			return
		}
		h.items[i], h.items[w] = h.items[w], h.items[i]
		i = w
	}
}

// MeterTotal is the aggregate of a window over every customer of a meter.
type MeterTotal struct {
	Start, End int64 // unix seconds
	Count      int64 // entries
	Sum        Int128
	// LastSum is, over the customers with entries in the window, the sum
	// of the value of each one's newest entry: the total of a last meter.
	LastSum Int128
}

// Value returns the total a formula asks for: "count", "sum" or "last".
func (m MeterTotal) Value(formula string) Int128 {
	switch formula {
	case "count":
		return Int128Of(m.Count)
	case "sum":
		return m.Sum
	default:
		return m.LastSum
	}
}

func (m *MeterTotal) add(c Cell) {
	if c.Count == 0 {
		return
	}
	m.Count += c.Count
	m.Sum = m.Sum.Add(c.Sum)
	m.LastSum = m.LastSum.Add(Int128Of(c.Last.Value))
}

// maxDenseWindows bounds the windows Totals accumulates in a slice; a
// longer range uses a map.
const maxDenseWindows = 4096

// Totals returns the aggregate of meter over every customer for [start,
// end), with the windows and alignment rules of Visit: with Total exactly
// one window, empty when nothing was recorded; with Hourly or Daily the
// windows with entries, newest first. It locks each shard in turn and
// visits every series of the meter: its cost is the meter's series times
// the cost of one range aggregate (Total), or times the hour buckets
// (Hourly) or days (Daily) each has in the range, and it allocates at
// most one accumulator per window. The result is the caller's.
func (t *Table) Totals(ctx context.Context, meter uint64, start, end int64, g Grouping) ([]MeterTotal, error) {
	unit, err := checkRange(start, end, g)
	if err != nil {
		return nil, err
	}
	if g == Total {
		w := MeterTotal{Start: start, End: end}
		var waiting []waitingCell
		err := t.eachSeries(ctx, meter, func(s *series) {
			var pd pending
			c := s.total(start, end, &pd)
			if pd.waits() { // frozen cells to read: added once known
				waiting = append(waiting, waitingCell{CustomerCell{Customer: s.key.Customer, Cell: c}, pd})
				return
			}
			w.add(c)
		})
		if err != nil {
			return nil, err
		}
		resolved, err := t.resolveWaiting(nil, waiting)
		if err != nil {
			return nil, err
		}
		for _, cc := range resolved {
			w.add(cc.Cell)
		}
		return []MeterTotal{w}, nil
	}
	acc := newTotalsAcc(start, end, unit)
	var deferred []deferredBlock // stored blocks whose hours are in range
	err = t.eachSeries(ctx, meter, func(s *series) {
		if f := s.fz; f != nil && start < f.end {
			if g == Daily {
				f.eachDay(start, min(end, f.end), func(d frozenDay) bool {
					if c := d.cell(); c.Count > 0 {
						acc.at(d.start).add(c)
					}
					return true
				})
			} else {
				f.eachDay(floorTo(start, daySecs), min(end, f.end), func(d frozenDay) bool {
					if d.stored { // read after the lock, once per block
						if db := (deferredBlock{key: s.key, span: spanOf(d.start)}); len(deferred) == 0 || deferred[len(deferred)-1] != db {
							deferred = append(deferred, db)
						}
						return true
					}
					d.hours(start, end, func(hs int64, c Cell) { acc.at(hs).add(c) })
					return true
				})
			}
		}
		if g == Daily {
			cs := s.dayCells
			for i := s.dayIndex(start); i < len(cs) && cs[i].start < end; i++ {
				acc.at(cs[i].start).add(s.dayRange(i, i+1))
			}
			return
		}
		s.chunks.AscendRange(ref{start: floorTo(start, daySecs)}, ref{start: end}, func(r ref) bool {
			r.c.eachHour(r.start, start, end, func(hs int64, h *bucket) { acc.at(hs).add(h.cell(s.ar)) })
			return true
		})
	})
	if err != nil {
		return nil, err
	}
	for _, d := range deferred {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		data, err := t.storedBlock(d.key, d.span)
		if err != nil {
			return nil, err
		}
		blockDaysAsc(d.span, data, false, floorTo(start, daySecs), end, func(fd frozenDay) bool {
			fd.hours(start, end, func(hs int64, c Cell) { acc.at(hs).add(c) })
			return true
		})
	}
	return acc.result(), nil
}

// eachSeries calls fn with every series of meter, under its shard's lock,
// one shard at a time.
func (t *Table) eachSeries(ctx context.Context, meter uint64, fn func(s *series)) error {
	for i := range t.shards {
		if err := ctx.Err(); err != nil {
			return err
		}
		sh := &t.shards[i]
		sh.mu.Lock()
		if p := sh.meters[meter]; p != nil {
			for _, s := range p.series {
				fn(s)
			}
		}
		sh.mu.Unlock()
	}
	return nil
}

// totalsAcc accumulates the windows of a Totals query.
type totalsAcc struct {
	start, end, unit int64
	dense            []MeterTotal // by window index, when the range has few windows
	sparse           map[int64]*MeterTotal
}

func newTotalsAcc(start, end, unit int64) *totalsAcc {
	a := &totalsAcc{start: start, end: end, unit: unit}
	if n := (end - start) / unit; n <= maxDenseWindows {
		a.dense = make([]MeterTotal, n)
	} else {
		a.sparse = map[int64]*MeterTotal{}
	}
	return a
}

// at returns the accumulator of the window starting at ws.
func (a *totalsAcc) at(ws int64) *MeterTotal {
	if a.dense != nil {
		return &a.dense[(ws-a.start)/a.unit]
	}
	m := a.sparse[ws]
	if m == nil {
		m = new(MeterTotal)
		a.sparse[ws] = m
	}
	return m
}

// result returns the windows with entries, newest first.
func (a *totalsAcc) result() []MeterTotal {
	var out []MeterTotal
	emit := func(ws int64, m *MeterTotal) {
		if m.Count > 0 {
			m.Start, m.End = ws, ws+a.unit
			out = append(out, *m)
		}
	}
	if a.dense != nil {
		for i := len(a.dense) - 1; i >= 0; i-- {
			emit(a.start+int64(i)*a.unit, &a.dense[i])
		}
		return out
	}
	starts := make([]int64, 0, len(a.sparse))
	for ws := range a.sparse {
		starts = append(starts, ws)
	}
	slices.Sort(starts)
	for i := len(starts) - 1; i >= 0; i-- {
		emit(starts[i], a.sparse[starts[i]])
	}
	return out
}

// waitingCell is a customer's aggregate over a range that still lacks
// frozen minute cells, read once the shard lock is released.
type waitingCell struct {
	cc CustomerCell
	p  pending
}

// resolveWaiting completes each waiting cell through the table's minute
// reader, without holding a lock, and appends to out those with entries.
func (t *Table) resolveWaiting(out []CustomerCell, ws []waitingCell) ([]CustomerCell, error) {
	for i := range ws {
		w := &ws[i]
		if err := w.p.resolve(t, &w.cc.Cell); err != nil {
			return nil, err
		}
		if w.cc.Count > 0 {
			out = append(out, w.cc)
		}
	}
	return out, nil
}
