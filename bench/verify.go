package main

import (
	"context"
	"fmt"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/meter"
)

// VerifyError reports a figure that does not match the workload.
type VerifyError struct {
	Target string
	Detail string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("verification failed for %s: %s", e.Target, e.Detail)
}

// verifyTotals checks that target t, holding the events in ranges of w,
// reports each series' expected total over the workload's span. It checks
// every series when there are at most maxQueries of them, otherwise the
// hottest customers of every meter and an even sample of the rest. It
// returns the number of series checked.
func verifyTotals(ctx context.Context, name string, t Target, w *Workload, ids []string, ranges [][2]uint64, maxQueries int) (int, error) {
	exp, pick, start, end, err := verifyPlan(name, w, ranges, maxQueries)
	if err != nil {
		return 0, err
	}
	for _, i := range pick {
		m, c := i/w.Customers, i%w.Customers
		got, err := t.Summaries(ctx, meterdb.SummaryParams{
			Meter: ids[m], Customer: w.CustomerID(c), Start: start, End: end,
		})
		if err != nil {
			return 0, &VerifyError{name, fmt.Sprintf("summary of meter %d customer %d: %v", m, c, err)}
		}
		if err := checkTotal(got, exp[i], w.Meters[m].Formula); err != nil {
			return 0, &VerifyError{name, fmt.Sprintf("meter %d (%s) customer %d: %v", m, w.Meters[m].Formula, c, err)}
		}
	}
	return len(pick), nil
}

// verifyPlan returns the expected aggregates of the events in ranges of w
// (indexed by meter*Customers+customer), the series to check (every one
// when there are at most maxQueries, otherwise the hottest customers of
// every meter and an even sample of the rest) and the query range: whole
// days covering the span, plus one, aligned for every target.
func verifyPlan(name string, w *Workload, ranges [][2]uint64, maxQueries int) (exp []Expect, pick []int, start, end time.Time, err error) {
	exp = w.Expected(ranges)
	var total int64
	for _, e := range exp {
		total += e.Count
	}
	var want int64
	for _, r := range ranges {
		want += int64(r[1] - r[0])
	}
	if total != want {
		return nil, nil, start, end, &VerifyError{name, fmt.Sprintf("workload accounts for %d events, %d were sent", total, want)}
	}
	if len(exp) <= maxQueries {
		for i := range exp {
			pick = append(pick, i)
		}
	} else {
		hot := min(w.Customers, maxQueries/(2*len(w.Meters)))
		for m := range w.Meters {
			for c := range hot {
				pick = append(pick, m*w.Customers+c)
			}
		}
		rest := maxQueries - len(pick)
		step := max(1, len(exp)/rest)
		for i := 0; i < len(exp); i += step {
			pick = append(pick, i)
		}
	}
	days := (w.Span+24*time.Hour-1)/(24*time.Hour) + 1
	start, end = w.Anchor.Add(-days*24*time.Hour), w.Anchor
	return exp, pick, start, end, nil
}

func checkTotal(got []meterdb.Summary, e Expect, f meter.Formula) error {
	if len(got) != 1 {
		return fmt.Errorf("%d summaries, want 1", len(got))
	}
	v, ok := got[0].Value.Int64()
	want := e.Value(f)
	if e.Count == 0 {
		want = 0
	}
	if got[0].Count != e.Count || !ok || v != want {
		return fmt.Errorf("count %d value %v, want count %d value %d", got[0].Count, got[0].Value, e.Count, want)
	}
	return nil
}
