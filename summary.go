package meterdb

import (
	"context"
	"math/big"
	"slices"
	"time"

	"github.com/meterdb/meterdb/aggregate"
)

// SummaryParams select the usage of one customer of one meter.
type SummaryParams struct {
	Meter    string    // meter id
	Customer string    // the value the meter's customer key carries
	Start    time.Time // inclusive, minute aligned
	End      time.Time // exclusive, minute aligned, after Start
	// Grouping is GroupNone for one summary over [Start, End), GroupHour
	// for one per hour (Start and End hour aligned) or GroupDay for one per
	// UTC day (Start and End at UTC midnight).
	Grouping Grouping
}

// Grouping splits a summary's range into windows. Its values are the words
// Stripe's value_grouping_window takes, so a wire value converts directly.
type Grouping string

// Summary groupings.
const (
	GroupNone Grouping = ""     // one summary over the whole range
	GroupHour Grouping = "hour" // one summary per hour
	GroupDay  Grouping = "day"  // one summary per UTC day
)

// Int128 is an exact signed 128-bit integer, Hi*2^64 + Lo: a summary's
// value, which a sum of many int64 values can exceed the int64 range.
type Int128 struct {
	Hi int64
	Lo uint64
}

// Int64 returns x and true when x fits in an int64.
func (x Int128) Int64() (int64, bool) { return aggregate.Int128(x).Int64() }

// Float64 returns x as the nearest float64.
func (x Int128) Float64() float64 { return aggregate.Int128(x).Float64() }

// Big returns x as a new big.Int.
func (x Int128) Big() *big.Int { return aggregate.Int128(x).Big() }

// String returns x in decimal.
func (x Int128) String() string { return aggregate.Int128(x).String() }

// Summary is the usage of one window.
type Summary struct {
	Start, End time.Time // [Start, End), UTC
	// Value is what the meter's formula gives: the number of events, the
	// sum of their values, or the value of the last one.
	Value Int128
	// Count is the number of events that contribute to the window (for
	// pre-aggregated meters, one per customer window).
	Count int64
}

// Summaries returns the usage of p.Customer on meter p.Meter over
// [p.Start, p.End), exactly as a pass over the accepted, uncancelled events
// would compute it. Without grouping it returns exactly one summary, with a
// zero Value and Count when nothing was recorded; with grouping it returns
// one summary per window that has events, newest first. Errors are
// *QueryError (unwrapping to ErrInvalidQuery) or *meter.Error for an
// unknown meter. Inactive meters can be queried.
func (db *DB) Summaries(ctx context.Context, p SummaryParams) ([]Summary, error) {
	return db.AppendSummaries(ctx, nil, p)
}

// AppendSummaries is Summaries appending to dst: it returns dst extended by
// the summaries Summaries would return (dst unchanged on error). A caller
// that reuses dst across queries allocates nothing per query.
func (db *DB) AppendSummaries(ctx context.Context, dst []Summary, p SummaryParams) ([]Summary, error) {
	if err := ctx.Err(); err != nil {
		return dst, err
	}
	reg, table, err := db.e.Enter()
	if err != nil {
		return dst, err
	}
	defer db.e.Exit()
	m, err := reg.Get(p.Meter)
	if err != nil {
		return dst, err
	}
	g, err := checkSummaryParams(p)
	if err != nil {
		return dst, err
	}
	formula, out := string(m.Formula), dst
	err = table.Visit(aggregate.Key{Meter: m.Seq, Customer: p.Customer}, p.Start.Unix(), p.End.Unix(), g,
		func(n int) { out = slices.Grow(out, n) },
		func(w aggregate.Window) {
			s := Summary{Start: time.Unix(w.Start, 0).UTC(), End: time.Unix(w.End, 0).UTC(), Count: w.Count}
			if w.Count > 0 {
				s.Value = Int128(w.Value(formula))
			}
			out = append(out, s)
		})
	if err != nil {
		return dst, err // unreachable: the parameters were checked
	}
	return out, nil
}

func checkSummaryParams(p SummaryParams) (aggregate.Grouping, error) {
	missing := func(param string) error {
		return &QueryError{Code: "parameter_missing", Param: param, Message: "Missing required param: " + param + "."}
	}
	invalid := func(param, msg string) error {
		return &QueryError{Code: "parameter_invalid", Param: param, Message: msg}
	}
	switch {
	case p.Customer == "":
		return 0, missing("customer")
	case p.Start.IsZero():
		return 0, missing("start_time")
	case p.End.IsZero():
		return 0, missing("end_time")
	case !p.End.After(p.Start):
		return 0, invalid("end_time", "end_time must be after start_time.")
	}
	g, unit, name := aggregate.Total, int64(60), "minute"
	switch p.Grouping {
	case GroupNone:
	case GroupHour:
		g, unit, name = aggregate.Hourly, 3600, "hour"
	case GroupDay:
		g, unit, name = aggregate.Daily, 86400, "day (00:00 UTC)"
	default:
		return 0, invalid("value_grouping_window", "Invalid value_grouping_window: must be one of day or hour.")
	}
	if p.Start.Nanosecond() != 0 || p.Start.Unix()%unit != 0 {
		return 0, invalid("start_time", "start_time must be aligned with "+name+" boundaries.")
	}
	if p.End.Nanosecond() != 0 || p.End.Unix()%unit != 0 {
		return 0, invalid("end_time", "end_time must be aligned with "+name+" boundaries.")
	}
	return g, nil
}

// Stats is a snapshot of a database's counters and sizes.
type Stats struct {
	EventsAccepted   int64 // events recorded
	EventsRejected   int64 // events that failed validation (duplicates aside)
	EventsDuplicate  int64 // events rejected as duplicates
	EventsCancelled  int64 // events cancelled
	Meters           int64
	Series           int64 // (meter, customer) pairs with data
	HourBuckets      int64
	DayBuckets       int64
	MinuteCells      int64
	RawEntries       int64 // entries kept for last and pre-aggregated meters
	DedupeSlots      int64 // 8 bytes each
	DedupeIdentities int64 // identifiers remembered
	// Reopens counts the times the database reopened its file after a
	// write failure that left unclear what reached the disk.
	Reopens int64
	// MemoryBytes estimates the heap held by aggregates, the dedupe index
	// and (in-memory databases) the events of the dedupe window; it is
	// computed from counts and structure sizes, not measured.
	MemoryBytes int64
}

// Sub returns s minus o, field by field: the activity between two snapshots.
func (s Stats) Sub(o Stats) Stats {
	return Stats{
		EventsAccepted: s.EventsAccepted - o.EventsAccepted, EventsRejected: s.EventsRejected - o.EventsRejected,
		EventsDuplicate: s.EventsDuplicate - o.EventsDuplicate, EventsCancelled: s.EventsCancelled - o.EventsCancelled,
		Meters: s.Meters - o.Meters, Series: s.Series - o.Series, HourBuckets: s.HourBuckets - o.HourBuckets,
		DayBuckets: s.DayBuckets - o.DayBuckets, MinuteCells: s.MinuteCells - o.MinuteCells,
		RawEntries: s.RawEntries - o.RawEntries, DedupeSlots: s.DedupeSlots - o.DedupeSlots,
		DedupeIdentities: s.DedupeIdentities - o.DedupeIdentities, MemoryBytes: s.MemoryBytes - o.MemoryBytes,
		Reopens: s.Reopens - o.Reopens,
	}
}

// Stats returns current counters and sizes. It works after Close too.
func (db *DB) Stats() Stats {
	s := db.e.Stats()
	t, d := s.Table, s.Dedupe
	return Stats{
		EventsAccepted: s.Accepted, EventsRejected: s.Rejected,
		EventsDuplicate: s.Duplicates, EventsCancelled: s.Cancels,
		Meters: s.Meters, Series: t.Series, HourBuckets: t.HourBuckets,
		DayBuckets: t.DayBuckets, MinuteCells: t.MinuteCells, RawEntries: t.RawEntries,
		DedupeSlots: d.Slots, DedupeIdentities: d.Used,
		MemoryBytes: t.Bytes + d.Slots*8 + s.LogMemory,
		Reopens:     s.Reopens,
	}
}

// Int128Of returns v as an Int128.
func Int128Of(v int64) Int128 { return Int128{Hi: v >> 63, Lo: uint64(v)} }
