package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/meterdb/meterdb/aggregate"
	"github.com/meterdb/meterdb/internal/dedupe"
)

// heapAlloc returns the live heap after full collections.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// confirmIn returns a dedupe confirmation for identifier id over the
// committed identifiers ids, where location loc holds
// ids[(loc-1)*100 : loc*100], as a journal of groups of 100 would. Only
// what is committed may confirm: an identifier being reserved is not yet
// stored, and a tag match on an earlier identifier of its own group must
// not find it there.
func confirmIn(ids []string, id string) func(loc uint64) (bool, error) {
	return func(loc uint64) (bool, error) {
		lo := min(int(loc-1)*100, len(ids))
		for _, s := range ids[lo:min(len(ids), lo+100)] {
			if s == id {
				return true, nil
			}
		}
		return false, nil
	}
}

// datasetShape counts what the dataset [0, n) holds: distinct (meter,
// customer, hour) buckets and distinct (meter, customer) series.
func (w *Workload) datasetShape(n int) (buckets, series int) {
	type key struct {
		m, c int32
		h    int64
	}
	seen := make(map[key]struct{}, n)
	ser := map[[2]int32]struct{}{}
	for i := range uint64(n) {
		s := w.Spec(i)
		seen[key{int32(s.Meter), int32(s.Customer), s.TS - s.TS%3600}] = struct{}{}
		ser[[2]int32{int32(s.Meter), int32(s.Customer)}] = struct{}{}
	}
	return len(seen), len(ser)
}

// runMemory loads the dataset into one target and reports the live heap it
// added per event, per (meter, customer, hour) bucket and per identifier,
// measured with runtime.ReadMemStats after collections, plus the process
// RSS. meterdb-aggregate and meterdb-dedupe measure the engine's aggregate
// table and dedupe index alone, fed the same events.
func (r *runner) runMemory(spec TargetSpec) ([]Result, error) {
	n := r.cfg.DatasetSize
	w := r.w
	if r.shape == [2]int{} {
		r.shape[0], r.shape[1] = w.datasetShape(n)
	}
	buckets, series := r.shape[0], r.shape[1]
	cell := fmt.Sprintf("events=%d", n)
	evs := r.datasetEvents() // identifiers are allocated here, before the baseline
	debug.FreeOSMemory()
	base := heapAlloc()
	rss0 := rssBytes()
	row := Result{Cell: cell, Primary: "heap B/event", Metrics: map[string]float64{
		"buckets": float64(buckets), "series": float64(series), "identifiers": float64(n),
	}}
	r.prog.note("memory   %-14s %s", spec.Name, cell)
	var keep any
	switch spec.Name {
	case "meterdb-aggregate":
		table := aggregate.NewTable(64)
		items := make([]aggregate.Item, 0, 100)
		for i := 0; i < n; i += 100 {
			items = items[:0]
			for j := i; j < min(n, i+100); j++ {
				s := w.Spec(uint64(j))
				items = append(items, aggregate.Item{
					Key:   aggregate.Key{Meter: uint64(s.Meter + 1), Customer: w.CustomerID(s.Customer)},
					Mode:  aggregate.ModeOf(string(w.Meters[s.Meter].Formula), string(w.Meters[s.Meter].EventTimeWindow)),
					Entry: aggregate.Entry{Seq: uint64(j + 1), Timestamp: s.TS, Value: s.Value},
				})
			}
			table.ApplyBatch(items)
		}
		st := table.Stats()
		if st.HourBuckets != int64(buckets) || st.Series != int64(series) {
			return []Result{row}, &VerifyError{spec.Name, fmt.Sprintf("table holds %d hour buckets in %d series, want %d in %d",
				st.HourBuckets, st.Series, buckets, series)}
		}
		row.Metrics["minute_cells"] = float64(st.MinuteCells)
		row.Metrics["day_buckets"] = float64(st.DayBuckets)
		row.Primary = "heap B/bucket"
		keep = table
	case "meterdb-dedupe":
		ids := make([]string, n)
		for i := range evs {
			ids[i] = evs[i].Identifier
		}
		base = heapAlloc()
		x := dedupe.New()
		for i := range evs {
			ok, err := x.Reserve(evs[i].Identifier, confirmIn(ids[:i], evs[i].Identifier))
			if !ok || err != nil {
				return []Result{row}, &VerifyError{spec.Name, fmt.Sprintf("identifier %d refused: %v", i, err)}
			}
			x.Commit(evs[i].Identifier, uint64(i/100+1))
		}
		st := x.Stats()
		if st.Used != int64(n) {
			return []Result{row}, &VerifyError{spec.Name, fmt.Sprintf("index holds %d identifiers, want %d", st.Used, n)}
		}
		row.Metrics["slot B/identifier"] = float64(st.Bytes) / float64(n)
		row.Primary = "heap B/identifier"
		keep = []any{x, ids}
	default:
		t, ids, cleanup, err := r.openTarget(spec)
		if isUnavailable(err) {
			return []Result{skipped(cell, err)}, nil
		}
		if err != nil {
			return nil, err
		}
		defer cleanup()
		if err := r.loadDataset(t, n, fmt.Sprintf("%-8s %-14s loading %d events", "memory", spec.Name, n)); err != nil {
			return []Result{row}, &VerifyError{spec.Name, err.Error()}
		}
		row.Verified, err = verifyTotals(context.Background(), spec.Name, t, w, ids, [][2]uint64{{0, uint64(n)}}, 200_000)
		if err != nil {
			return []Result{row}, err
		}
		if s, ok := t.(Sizer); ok {
			sz := s.Sizes()
			if hb, ok := sz["hour_buckets"]; ok && hb != float64(buckets) {
				return []Result{row}, &VerifyError{spec.Name, fmt.Sprintf("holds %v hour buckets, want %d", hb, buckets)}
			}
			if b, ok := sz["dedupe_bytes"]; ok {
				row.Metrics["slot B/identifier"] = b / float64(n)
			}
			if b, ok := sz["file_bytes"]; ok {
				row.Metrics["file B/event"] = b / float64(n)
				row.Metrics["file B/bucket"] = b / float64(buckets)
				row.Primary = "file B/event"
			}
		}
		keep = t
	}
	heap := float64(heapAlloc()) - float64(base)
	switch spec.Name {
	case "meterdb-dedupe":
		row.Metrics["heap B/identifier"] = heap / float64(n)
	default:
		row.Metrics["heap B/event"] = heap / float64(n)
		row.Metrics["heap B/bucket"] = heap / float64(buckets)
	}
	row.Metrics["RSS MiB"] = float64(rssBytes()) / (1 << 20)
	row.Metrics["RSS delta MiB"] = float64(rssBytes()-rss0) / (1 << 20)
	runtime.KeepAlive(keep)
	runtime.KeepAlive(evs)
	return []Result{row}, nil
}
