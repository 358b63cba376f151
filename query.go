package meterdb

import (
	"context"
	"strconv"
	"time"

	"github.com/meterdb/meterdb/aggregate"
	"github.com/meterdb/meterdb/meter"
)

// The cross-customer queries: a meter's customers, its totals and its top
// customers over a range. They read a per-meter index that the aggregates
// keep up to date on every apply, cancel and restore (aggregate/
// meter_index.go), so they never look at the series of other meters; they
// lock one aggregate shard at a time, so an event recorded during a query
// may or may not count in its answer.

// CustomersParams select the customers of a meter with usage in [Start, End).
type CustomersParams struct {
	Meter      string    // meter id
	Start, End time.Time // minute aligned, End after Start
	After      string    // cursor: only customers sorting after this one ("" for the first page)
	Limit      int       // page size; zero means 100, at most 10,000
}

// CustomerUsage is one customer's usage of a meter over a range.
type CustomerUsage struct {
	Customer string
	Value    Int128 // the meter's formula over the customer's events in the range (as Summaries gives)
	Count    int64  // events that contribute (as Summary.Count)
}

// Page and result size limits of the cross-customer queries.
const (
	DefaultCustomersLimit = 100    // CustomersParams.Limit when zero
	MaxCustomersLimit     = 10_000 // the largest CustomersParams.Limit
	DefaultTopN           = 10     // TopParams.N when zero
	MaxTopN               = 1_000  // the largest TopParams.N
)

// Customers returns, in ascending customer order, the customers with at
// least one counted event in [Start, End), each with its usage; hasMore
// says a next page exists (pass the last customer as After to get it).
// Each CustomerUsage equals what Summaries gives for that customer and
// range.
//
// Cost: it computes the usage of the meter's customers that sort after
// After, shard by shard, until each shard has given Limit+1 customers with
// usage: at most one range aggregate per customer of the meter after
// After, and when most customers have usage in the range about
// shards×(Limit+1) of them (64 shards by default); the page is cut from
// at most that many candidates. A range aggregate takes the whole days in
// range from the customer's running day totals (two lookups, whatever the
// number of days) and adds hour and minute cells for partial days.
// Customers of other meters cost nothing. The page is a new slice, the
// caller's. Errors: *QueryError, *meter.Error for an unknown meter,
// ErrClosed, or ctx's error. Safe for concurrent use.
func (db *DB) Customers(ctx context.Context, p CustomersParams) (page []CustomerUsage, hasMore bool, err error) {
	m, table, _, err := db.enterQuery(ctx, p.Meter, p.Start, p.End, GroupNone)
	if err != nil {
		return nil, false, err
	}
	defer db.e.Exit()
	limit, err := checkCount("limit", p.Limit, DefaultCustomersLimit, MaxCustomersLimit)
	if err != nil {
		return nil, false, err
	}
	cells, more, err := table.Customers(ctx, m.Seq, p.Start.Unix(), p.End.Unix(), p.After, limit)
	if err != nil {
		return nil, false, err
	}
	return customerUsages(cells, string(m.Formula)), more, nil
}

// TotalsParams select a meter's usage over all customers.
type TotalsParams struct {
	Meter      string
	Start, End time.Time
	Grouping   Grouping // GroupNone, GroupHour or GroupDay, with the alignment rules of SummaryParams
}

// Totals is Summaries over all customers of the meter: count and sum meters
// add up every customer's events; for last meters a window's value is the
// sum over customers of each customer's last value in that window. Same
// shape, order and omission rules as Summaries: without grouping exactly
// one summary (zero when nothing was recorded), with grouping one per
// window with events, newest first. Count adds up the customers' counts.
//
// Cost: it visits every customer of the meter once (never those of other
// meters): without grouping one range aggregate each (see Customers), with
// GroupDay a pass over its day cells in range, with GroupHour a walk of its
// hour buckets in range; windows accumulate in one array (a map beyond
// 4096 windows). The result is a new slice, the caller's. Errors as
// Customers. Safe for concurrent use.
func (db *DB) Totals(ctx context.Context, p TotalsParams) ([]Summary, error) {
	m, table, g, err := db.enterQuery(ctx, p.Meter, p.Start, p.End, p.Grouping)
	if err != nil {
		return nil, err
	}
	defer db.e.Exit()
	ts, err := table.Totals(ctx, m.Seq, p.Start.Unix(), p.End.Unix(), g)
	if err != nil {
		return nil, err
	}
	out := make([]Summary, len(ts))
	for i, t := range ts {
		out[i] = Summary{Start: time.Unix(t.Start, 0).UTC(), End: time.Unix(t.End, 0).UTC(), Count: t.Count}
		if t.Count > 0 {
			out[i].Value = Int128(t.Value(string(m.Formula)))
		}
	}
	return out, nil
}

// TopParams select the customers of a meter with the greatest usage over a range.
type TopParams struct {
	Meter      string
	Start, End time.Time // minute aligned
	N          int       // how many; zero means 10, at most 1,000
}

// TopCustomers returns up to N customers with usage in [Start, End),
// greatest Value first, ties broken by ascending customer. Each
// CustomerUsage equals what Summaries gives for that customer and range.
//
// Cost: one range aggregate per customer of the meter (see Customers; for
// a range of whole UTC days, two lookups in its running day totals, taken
// a batch of customers at a time so that their cache misses overlap) plus
// log N per customer with usage: 10,000 customers over 30 days take about
// half a millisecond (BenchmarkTopCustomers in bench/BENCHMARKS.md).
// Customers of other meters cost nothing. The result is a new slice, the
// caller's. Errors as Customers. Safe for concurrent use.
func (db *DB) TopCustomers(ctx context.Context, p TopParams) ([]CustomerUsage, error) {
	m, table, _, err := db.enterQuery(ctx, p.Meter, p.Start, p.End, GroupNone)
	if err != nil {
		return nil, err
	}
	defer db.e.Exit()
	n, err := checkCount("n", p.N, DefaultTopN, MaxTopN)
	if err != nil {
		return nil, err
	}
	cells, err := table.Top(ctx, m.Seq, p.Start.Unix(), p.End.Unix(), n, string(m.Formula))
	if err != nil {
		return nil, err
	}
	return customerUsages(cells, string(m.Formula)), nil
}

// checkCount returns v, or def when v is zero; an error when v is negative
// or above max.
func checkCount(param string, v, def, max int) (int, error) {
	switch {
	case v == 0:
		return def, nil
	case v < 0 || v > max:
		return 0, invalidParam(param, param+" must be between 1 and "+strconv.Itoa(max)+".")
	}
	return v, nil
}

func customerUsages(cells []aggregate.CustomerCell, formula string) []CustomerUsage {
	out := make([]CustomerUsage, len(cells))
	for i, c := range cells {
		out[i] = CustomerUsage{Customer: c.Customer, Value: Int128(c.Value(formula)), Count: c.Count}
	}
	return out
}

// enterQuery starts a query of meter id over [start, end) grouped by g: it
// checks ctx, enters the database, finds the meter and checks the range.
// On success the caller ends the query with db.e.Exit; on error there is
// nothing to end.
func (db *DB) enterQuery(ctx context.Context, id string, start, end time.Time, g Grouping) (meter.Meter, *aggregate.Table, aggregate.Grouping, error) {
	if err := db.consistent(ctx); err != nil {
		return meter.Meter{}, nil, 0, err
	}
	reg, table, err := db.e.Enter()
	if err != nil {
		return meter.Meter{}, nil, 0, err
	}
	m, err := reg.Get(id)
	var ag aggregate.Grouping
	if err == nil {
		ag, err = checkRange(start, end, g)
	}
	if err != nil {
		db.e.Exit()
		return meter.Meter{}, nil, 0, err
	}
	return m, table, ag, nil
}
