package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/meter"
)

// queryKind is one shape of summary query, relative to the workload's
// anchor.
type queryKind struct {
	name     string
	back     time.Duration // the range is [anchor-back, anchor)
	grouping meterdb.Grouping
}

var queryKinds = []queryKind{
	{"total-30d", 30 * 24 * time.Hour, meterdb.GroupNone},
	{"hourly-48h", 48 * time.Hour, meterdb.GroupHour},
	{"daily-35d", 35 * 24 * time.Hour, meterdb.GroupDay},
}

func (q queryKind) params(w *Workload, meterID string, customer int) meterdb.SummaryParams {
	return meterdb.SummaryParams{Meter: meterID, Customer: w.CustomerID(customer),
		Start: w.Anchor.Add(-q.back), End: w.Anchor, Grouping: q.grouping}
}

// loadDataset records events [0, n) of the workload into t, through its
// Loader when it has one.
func (r *runner) loadDataset(t Target, n int, label string) error {
	ctx := context.Background()
	var done atomic.Int64
	r.prog.start(label, 0, &done)
	defer r.prog.stop()
	const chunk = 10000
	all := r.datasetEvents()[:n]
	for first := 0; first < n; first += chunk {
		evs := all[first:min(n, first+chunk)]
		var rejected int
		var err error
		if l, ok := t.(Loader); ok {
			rejected, err = l.Load(ctx, evs)
		} else {
			for i := 0; i < len(evs) && err == nil; i += 1000 {
				var k int
				k, err = t.RecordBatch(ctx, evs[i:min(len(evs), i+1000)])
				rejected += k
			}
		}
		if err != nil || rejected > 0 {
			return fmt.Errorf("loading events from %d: %d rejected, %v", first, rejected, err)
		}
		done.Add(int64(len(evs)))
	}
	return nil
}

// runQuery loads the dataset, verifies totals and every query kind against
// brute force for a few series, then measures each query kind for a tenth
// of the ingest duration (at least 50 ms, at most 2 s). Queries pick customers with the workload's skew.
func (r *runner) runQuery(spec TargetSpec) ([]Result, error) {
	n := r.cfg.DatasetSize
	t, ids, cleanup, err := r.openTarget(spec)
	if isUnavailable(err) {
		return []Result{skipped("load", err)}, nil
	}
	if err != nil {
		return nil, err
	}
	defer cleanup()
	if err := r.loadDataset(t, n, fmt.Sprintf("%-8s %-14s loading %d events", "query", spec.Name, n)); err != nil {
		return nil, &VerifyError{spec.Name, err.Error()}
	}
	ctx := context.Background()
	verified, err := verifyTotals(ctx, spec.Name, t, r.w, ids, [][2]uint64{{0, uint64(n)}}, 200_000)
	if err != nil {
		return nil, err
	}
	if err := r.verifyQueries(t, spec.Name, ids, n); err != nil {
		return nil, err
	}
	d := min(max(r.cfg.Duration/10, 50*time.Millisecond), 2*time.Second)
	var rows []Result
	for _, q := range queryKinds {
		var done atomic.Int64
		r.prog.start(fmt.Sprintf("%-8s %-14s %s", "query", spec.Name, q.name), d, &done)
		var lat []int64
		t0 := time.Now()
		for i := uint64(0); time.Since(t0) < d; i++ {
			s := r.w.Spec(i)
			p := q.params(r.w, ids[s.Meter], s.Customer)
			q0 := time.Now()
			if _, err := t.Summaries(ctx, p); err != nil {
				r.prog.stop()
				return rows, &VerifyError{spec.Name, fmt.Sprintf("%s: %v", q.name, err)}
			}
			lat = append(lat, int64(time.Since(q0)))
			done.Add(1)
		}
		el := time.Since(t0)
		r.prog.stop()
		rows = append(rows, Result{
			Cell: q.name, Workers: 1, Seconds: el.Seconds(), Ops: int64(len(lat)),
			OpsPerSec: float64(len(lat)) / el.Seconds(), Latency: percentiles(lat),
			Primary: "ops/s", Verified: verified, Metrics: map[string]float64{"dataset_events": float64(n)},
		})
	}
	return rows, nil
}

// verifyQueries checks every query kind for the hottest customer, a
// middling one and the coldest one of every meter against brute force over
// the dataset [0, n).
func (r *runner) verifyQueries(t Target, name string, ids []string, n int) error {
	w := r.w
	customers := []int{0, w.Customers / 2, w.Customers - 1}
	want := map[[2]int][]Spec{}
	for m := range w.Meters {
		for _, c := range customers {
			want[[2]int{m, c}] = nil
		}
	}
	for i := range uint64(n) {
		s := w.Spec(i)
		k := [2]int{s.Meter, s.Customer}
		if specs, ok := want[k]; ok {
			want[k] = append(specs, s)
		}
	}
	for k, specs := range want {
		for _, q := range queryKinds {
			p := q.params(w, ids[k[0]], k[1])
			got, err := t.Summaries(context.Background(), p)
			if err != nil {
				return &VerifyError{name, fmt.Sprintf("%s meter %d customer %d: %v", q.name, k[0], k[1], err)}
			}
			exp := expectedWindows(specs, p)
			if err := compareWindows(got, exp, w.Meters[k[0]].Formula); err != nil {
				return &VerifyError{name, fmt.Sprintf("%s meter %d customer %d: %v", q.name, k[0], k[1], err)}
			}
		}
	}
	return nil
}

// window is an expected summary window.
type window struct {
	start, end int64
	Expect
}

// expectedWindows computes the summaries of p by brute force over specs:
// one per window that has events, newest first, or exactly one without
// grouping.
func expectedWindows(specs []Spec, p meterdb.SummaryParams) []window {
	start, end := p.Start.Unix(), p.End.Unix()
	unit := map[meterdb.Grouping]int64{meterdb.GroupHour: 3600, meterdb.GroupDay: 86400}[p.Grouping]
	if unit == 0 {
		unit = end - start
	}
	n := (end - start) / unit
	win := make([]window, n)
	for i := range win {
		win[i].start = end - int64(i+1)*unit
		win[i].end = win[i].start + unit
	}
	for _, s := range specs {
		if s.TS >= start && s.TS < end {
			win[n-1-(s.TS-start)/unit].add(s)
		}
	}
	if p.Grouping == meterdb.GroupNone {
		return win
	}
	out := win[:0]
	for _, x := range win {
		if x.Count > 0 {
			out = append(out, x)
		}
	}
	return out
}

func compareWindows(got []meterdb.Summary, want []window, f meter.Formula) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d summaries, want %d", len(got), len(want))
	}
	for i, g := range got {
		e := want[i]
		v, ok := g.Value.Int64()
		wv := e.Value(f)
		if e.Count == 0 {
			wv = 0
		}
		if g.Start.Unix() != e.start || g.End.Unix() != e.end || g.Count != e.Count || !ok || v != wv {
			return fmt.Errorf("summary %d: [%d, %d) count %d value %v, want [%d, %d) count %d value %d",
				i, g.Start.Unix(), g.End.Unix(), g.Count, g.Value, e.start, e.end, e.Count, wv)
		}
	}
	return nil
}
