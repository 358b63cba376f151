package aggregate

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
)

// The meter index: what the cross-customer queries (Customers, Top,
// Totals) read instead of every series of the table.
//
// Each shard keeps, per meter, the series of that meter it holds, sorted by
// customer (a meterPart). Each series keeps a copy of its non-empty day
// cells in a slice sorted by day (dayCells), beside the day tree: a range
// of whole days then sums contiguous memory instead of walking a tree and
// its buckets. Both are maintained under the shard lock, by the code that
// changes a series (apply, cancel, restore); adding an event to a day that
// already has usage updates one slice element in place and allocates
// nothing. A query locks one shard at a time, so its answer is consistent
// per shard, not across shards: an event applied during a query may count
// for its customer or not.

// meterPart is the series of one meter that one shard holds, sorted by
// customer. It is guarded by the shard's mutex.
type meterPart struct {
	series []*series
}

// dayCell is the cell of one non-empty day of a series.
type dayCell struct {
	start int64
	c     Cell
}

func cmpCustomer(s *series, c string) int { return strings.Compare(s.key.Customer, c) }

// indexLocked adds the new series s to its meter's part.
func (sh *shard) indexLocked(s *series) {
	p := sh.meters[s.key.Meter]
	if p == nil {
		p = new(meterPart)
		sh.meters[s.key.Meter] = p
	}
	i, _ := slices.BinarySearchFunc(p.series, s.key.Customer, cmpCustomer)
	p.series = slices.Insert(p.series, i, s)
}

// unindexLocked removes the series s, which is being dropped, from its
// meter's part.
func (sh *shard) unindexLocked(s *series) {
	p := sh.meters[s.key.Meter]
	if p == nil {
		return
	}
	if i, ok := slices.BinarySearchFunc(p.series, s.key.Customer, cmpCustomer); ok {
		p.series = slices.Delete(p.series, i, i+1)
	}
	if len(p.series) == 0 {
		delete(sh.meters, s.key.Meter)
	}
}

// syncDay copies the day bucket d at start (nil or empty when the day has
// no usage left) into the series' day cells.
func (s *series) syncDay(start int64, d *bucket) {
	cs := s.dayCells
	n := len(cs)
	var i int
	switch {
	case n > 0 && cs[n-1].start == start:
		i = n - 1
	case n == 0 || cs[n-1].start < start:
		i = n
	default:
		i = s.dayIndex(start)
	}
	found := i < n && cs[i].start == start
	if d == nil || d.count == 0 {
		if found {
			s.dayCells = slices.Delete(cs, i, i+1)
		}
		return
	}
	if found {
		cs[i].c = d.cell()
		return
	}
	s.dayCells = slices.Insert(cs, i, dayCell{start: start, c: d.cell()})
}

// dayIndex returns the index of the first day cell at or after start.
func (s *series) dayIndex(start int64) int {
	i, _ := slices.BinarySearchFunc(s.dayCells, start, func(c dayCell, t int64) int { return cmp.Compare(c.start, t) })
	return i
}

// daysIn merges the day cells of the days starting in [a, b).
func (s *series) daysIn(c *Cell, a, b int64) {
	cs := s.dayCells
	for i := s.dayIndex(a); i < len(cs) && cs[i].start < b; i++ {
		c.merge(cs[i].c)
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
// follow. It locks each shard in turn and, within a shard, computes the
// aggregate of the meter's series after the cursor until that shard has
// given limit+1 customers with usage: its cost is at most the meter's
// series times the cost of one range aggregate (a binary search and a pass
// over the whole days in range, plus the hour and minute cells of partial
// days), and it allocates the result, of at most shards×(limit+1)
// entries before it is cut. limit must be positive. The result is the
// caller's.
func (t *Table) Customers(ctx context.Context, meter uint64, start, end int64, after string, limit int) ([]CustomerCell, bool, error) {
	if _, err := checkRange(start, end, Total); err != nil {
		return nil, false, err
	}
	var out []CustomerCell
	for i := range t.shards {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		sh := &t.shards[i]
		sh.mu.Lock()
		if p := sh.meters[meter]; p != nil {
			j, found := slices.BinarySearchFunc(p.series, after, cmpCustomer)
			if found {
				j++
			}
			n := 0
			for ; j < len(p.series) && n <= limit; j++ {
				s := p.series[j]
				if c := s.total(start, end); c.Count > 0 {
					out = append(out, CustomerCell{Customer: s.key.Customer, Cell: c})
					n++
				}
			}
		}
		sh.mu.Unlock()
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
// cost of one range aggregate (a binary search and a pass over the whole
// days in range, plus the hour and minute cells of partial days) plus
// log n per customer with usage; it allocates only its result, which is
// the caller's. n must be positive.
func (t *Table) Top(ctx context.Context, meter uint64, start, end int64, n int, formula string) ([]CustomerCell, error) {
	if _, err := checkRange(start, end, Total); err != nil {
		return nil, err
	}
	h := topHeap{n: n}
	for i := range t.shards {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sh := &t.shards[i]
		sh.mu.Lock()
		if p := sh.meters[meter]; p != nil {
			for _, s := range p.series {
				if c := s.total(start, end); c.Count > 0 {
					h.offer(topItem{v: c.Value(formula), cc: CustomerCell{Customer: s.key.Customer, Cell: c}})
				}
			}
		}
		sh.mu.Unlock()
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
		err := t.eachSeries(ctx, meter, func(s *series) { w.add(s.total(start, end)) })
		if err != nil {
			return nil, err
		}
		return []MeterTotal{w}, nil
	}
	acc := newTotalsAcc(start, end, unit)
	err = t.eachSeries(ctx, meter, func(s *series) {
		if g == Daily {
			cs := s.dayCells
			for i := s.dayIndex(start); i < len(cs) && cs[i].start < end; i++ {
				acc.at(cs[i].start).add(cs[i].c)
			}
			return
		}
		s.hours.tree.AscendRange(ref{start: start}, ref{start: end}, func(r ref) bool {
			acc.at(r.start).add(r.b.cell())
			return true
		})
	})
	if err != nil {
		return nil, err
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
