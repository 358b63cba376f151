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
	if err := db.consistent(ctx); err != nil {
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
		return dst, err // the parameters were checked: a stored block of frozen days that does not read
	}
	return out, nil
}

func checkSummaryParams(p SummaryParams) (aggregate.Grouping, error) {
	if p.Customer == "" {
		return 0, missingParam("customer")
	}
	return checkRange(p.Start, p.End, p.Grouping)
}

// missingParam returns the error for a missing parameter.
func missingParam(param string) error {
	return &QueryError{Code: "parameter_missing", Param: param, Message: "Missing required param: " + param + "."}
}

// invalidParam returns the error for an invalid parameter.
func invalidParam(param, msg string) error {
	return &QueryError{Code: "parameter_invalid", Param: param, Message: msg}
}

// checkRange checks a query range [start, end) and its grouping, the rules
// every query shares: both bounds set, end after start, both aligned to
// minutes (no grouping), hours or UTC days.
func checkRange(start, end time.Time, grouping Grouping) (aggregate.Grouping, error) {
	missing, invalid := missingParam, invalidParam
	switch {
	case start.IsZero():
		return 0, missing("start_time")
	case end.IsZero():
		return 0, missing("end_time")
	case !end.After(start):
		return 0, invalid("end_time", "end_time must be after start_time.")
	}
	g, unit, name := aggregate.Total, int64(60), "minute"
	switch grouping {
	case GroupNone:
	case GroupHour:
		g, unit, name = aggregate.Hourly, 3600, "hour"
	case GroupDay:
		g, unit, name = aggregate.Daily, 86400, "day (00:00 UTC)"
	default:
		return 0, invalid("value_grouping_window", "Invalid value_grouping_window: must be one of day or hour.")
	}
	if start.Nanosecond() != 0 || start.Unix()%unit != 0 {
		return 0, invalid("start_time", "start_time must be aligned with "+name+" boundaries.")
	}
	if end.Nanosecond() != 0 || end.Unix()%unit != 0 {
		return 0, invalid("end_time", "end_time must be aligned with "+name+" boundaries.")
	}
	return g, nil
}

// Int128Of returns v as an Int128.
func Int128Of(v int64) Int128 { return Int128{Hi: v >> 63, Lo: uint64(v)} }
