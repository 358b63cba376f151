package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

// The history scenario: -customers customers × -meters meters (count, sum,
// last, ...), each series with -history-per-hour events an hour at random
// seconds, over -history-days simulated days driven through Options.Now,
// recorded hour by hour with RecordUsage in batches of 1,000 from two
// goroutines. At day 35 and at the last day it reports the live heap after
// collections and the database's own accounting (Stats.MemoryBytes,
// FrozenBytes), with no checkpoint in flight; at the end, the latency of summaries a year back: an
// hourly month, a day-grouped quarter, a minute-aligned total (whose edges
// need frozen minute cells: read from the file, or packed in memory), and
// a day-grouped quarter ending now (frozen and live days). Every daily
// count of the count meter over the quarter a year back is checked: each
// day must hold exactly 24 × per-hour events.

// historyMeasure is one memory measurement of the history scenario.
type historyMeasure struct {
	day                      int
	heapAlloc, heapInuse     uint64
	memoryBytes, frozenBytes int64
	frozenDays, hourBuckets  int64
	storedBlocks             int64
	rss                      int64
}

func (r *runner) runHistory(spec TargetSpec) ([]Result, error) {
	cfg := r.cfg
	days, perHour := cfg.HistoryDays, cfg.HistoryPerHour
	customers, meters := cfg.Customers, cfg.Meters
	if spec.Name == "meterdb-file" && cfg.HistoryFileCustomers > 0 {
		customers = cfg.HistoryFileCustomers
	}
	path, cleanup, err := scenarioPath(spec, "history.db")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var clock atomic.Int64
	clock.Store(start.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	db, err := meterdb.Open(path, &meterdb.Options{Now: now, Durability: meterdb.DurabilityBuffered, NoFsync: true,
		CheckpointInterval: 200 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	defer func() {
		if db != nil {
			db.Close()
		}
	}()
	ctx := context.Background()
	formulas := []meter.Formula{meter.Count, meter.Sum, meter.Last}
	names := make([]string, meters)
	ids := make([]string, meters)
	for m := range meters {
		names[m] = "history_" + strconv.Itoa(m)
		mt, err := db.CreateMeter(ctx, meter.Params{DisplayName: names[m], EventName: names[m], Formula: formulas[m%len(formulas)]})
		if err != nil {
			return nil, err
		}
		ids[m] = mt.ID
	}
	custs := make([]string, customers)
	for c := range custs {
		custs[c] = fmt.Sprintf("cus_%07d", c)
	}
	cell := fmt.Sprintf("customers=%d meters=%d days=%d events/series/hour=%d", customers, meters, days, perHour)
	r.prog.note("history  %-14s %s", spec.Name, cell)

	const batch, workers = 1000, 2
	perHourTotal := customers * meters * perHour
	usages := make([]event.Usage, perHourTotal)
	rng := rand.New(rand.NewPCG(cfg.Seed, 7))
	var events int64
	var measures []historyMeasure
	measure := func(day int) {
		db.Sync()
		// With a file, wait until a checkpoint that started after the last
		// write has finished: the next ones have nothing to write, so no
		// checkpoint's records or transaction pages are in the heap measured.
		if path != "" {
			for n := db.Stats().Checkpoints; db.Stats().Checkpoints < n+2; {
				time.Sleep(10 * time.Millisecond)
			}
		}
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		st := db.Stats()
		measures = append(measures, historyMeasure{day: day, heapAlloc: ms.HeapAlloc, heapInuse: ms.HeapInuse,
			memoryBytes: st.MemoryBytes, frozenBytes: st.FrozenBytes, frozenDays: st.FrozenDays, hourBuckets: st.HourBuckets, storedBlocks: st.FrozenStoredBlocks, rss: rssBytes()})
		r.prog.note("history  %-14s day %d: heap %.1f MiB, MemoryBytes %.1f MiB, frozen %.1f MiB in %d days, %d stored blocks",
			spec.Name, day, float64(ms.HeapAlloc)/(1<<20), float64(st.MemoryBytes)/(1<<20), float64(st.FrozenBytes)/(1<<20), st.FrozenDays, st.FrozenStoredBlocks)
	}
	t0 := time.Now()
	for d := range days {
		for h := range 24 {
			hs := start.Add(time.Duration(d*24+h) * time.Hour)
			clock.Store(hs.Add(time.Hour + time.Minute).UnixNano())
			i := 0
			for c := range customers {
				for m := range meters {
					for range perHour {
						usages[i] = event.Usage{Name: names[m], Customer: custs[c], Value: int64(1 + rng.IntN(100)),
							Timestamp: hs.Add(time.Duration(rng.IntN(3600)) * time.Second)}
						i++
					}
				}
			}
			var wg sync.WaitGroup
			var failed atomic.Value
			next := atomic.Int64{}
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						lo := int(next.Add(batch)) - batch
						if lo >= len(usages) {
							return
						}
						errs, err := db.RecordUsage(ctx, usages[lo:min(lo+batch, len(usages))])
						if err == nil {
							for _, e := range errs {
								if e != nil {
									err = e
									break
								}
							}
						}
						if err != nil {
							failed.Store(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			if err, _ := failed.Load().(error); err != nil {
				return nil, fmt.Errorf("day %d hour %d: %w", d, h, err)
			}
			events += int64(len(usages))
		}
		if d+1 == 35 || d+1 == 38 || d+1 == days || (d+1)%50 == 0 {
			if path != "" {
				time.Sleep(300 * time.Millisecond) // a checkpoint, and the freeze after it
			}
			measure(d + 1)
		}
		r.prog.note("history  %-14s day %d of %d, %d events, %.0f events/s", spec.Name, d+1, days, events, float64(events)/time.Since(t0).Seconds())
	}
	ingest := time.Since(t0)

	// Latency of summaries a year back.
	end := start.Add(time.Duration(days) * 24 * time.Hour)
	yearBack := end.Add(-365 * 24 * time.Hour)
	if yearBack.Before(start) {
		yearBack = start
	}
	type q struct {
		name string
		p    func(m, c int) meterdb.SummaryParams
	}
	qs := []q{
		{"hourly month a year back", func(m, c int) meterdb.SummaryParams {
			return meterdb.SummaryParams{Meter: ids[m], Customer: custs[c], Start: yearBack, End: yearBack.Add(30 * 24 * time.Hour), Grouping: meterdb.GroupHour}
		}},
		{"daily quarter a year back", func(m, c int) meterdb.SummaryParams {
			return meterdb.SummaryParams{Meter: ids[m], Customer: custs[c], Start: yearBack, End: yearBack.Add(90 * 24 * time.Hour), Grouping: meterdb.GroupDay}
		}},
		{"total, minute edges, a year back", func(m, c int) meterdb.SummaryParams {
			s := yearBack.Add(7*time.Hour + 13*time.Minute)
			return meterdb.SummaryParams{Meter: ids[m], Customer: custs[c], Start: s, End: s.Add(30*24*time.Hour + 5*time.Hour + 31*time.Minute)}
		}},
		{"daily quarter to now", func(m, c int) meterdb.SummaryParams {
			return meterdb.SummaryParams{Meter: ids[m], Customer: custs[c], Start: end.Add(-90 * 24 * time.Hour), End: end, Grouping: meterdb.GroupDay}
		}},
	}
	var rows []Result
	var buf []meterdb.Summary
	const n = 5000
	for _, qq := range qs {
		lat := make([]int64, 0, n)
		for i := range n {
			p := qq.p(i%meters, rng.IntN(customers))
			t := time.Now()
			buf, err = db.AppendSummaries(ctx, buf[:0], p)
			lat = append(lat, time.Since(t).Nanoseconds())
			if err != nil {
				return nil, fmt.Errorf("%s: %w", qq.name, err)
			}
		}
		rows = append(rows, Result{Cell: cell + " query=" + qq.name, Ops: n, Latency: percentiles(lat)})
	}
	// Exactness: every day of the count meter over the quarter a year back
	// holds 24 × perHour events.
	verified := 0
	vEnd := yearBack.Add(90 * 24 * time.Hour)
	if vEnd.After(end) {
		vEnd = end
	}
	vDays := int(vEnd.Sub(yearBack) / (24 * time.Hour))
	for c := 0; c < customers; c += max(1, customers/200) {
		ss, err := db.Summaries(ctx, meterdb.SummaryParams{Meter: ids[0], Customer: custs[c], Start: yearBack, End: vEnd, Grouping: meterdb.GroupDay})
		if err != nil {
			return nil, err
		}
		if len(ss) != vDays {
			return nil, fmt.Errorf("%s: %d days in the quarter a year back, want %d", custs[c], len(ss), vDays)
		}
		for _, s := range ss {
			if v, _ := s.Value.Int64(); v != int64(24*perHour) || s.Count != int64(24*perHour) {
				return nil, fmt.Errorf("%s: day %s counts %d (value %s), want %d", custs[c], s.Start.Format(time.DateOnly), s.Count, s.Value, 24*perHour)
			}
		}
		verified++
	}
	for i := range rows {
		rows[i].Verified = verified
	}
	mem := Result{Cell: cell + " memory", Seconds: ingest.Seconds(), Events: events, EventsPerSec: float64(events) / ingest.Seconds(),
		Metrics: map[string]float64{}, Primary: "heap B", Verified: verified}
	for _, m := range measures {
		pre := "day" + strconv.Itoa(m.day) + " "
		mem.Metrics[pre+"heap B"] = float64(m.heapAlloc)
		mem.Metrics[pre+"heap inuse B"] = float64(m.heapInuse)
		mem.Metrics[pre+"MemoryBytes"] = float64(m.memoryBytes)
		mem.Metrics[pre+"FrozenBytes"] = float64(m.frozenBytes)
		mem.Metrics[pre+"frozen days"] = float64(m.frozenDays)
		mem.Metrics[pre+"stored blocks"] = float64(m.storedBlocks)
		mem.Metrics[pre+"hour buckets"] = float64(m.hourBuckets)
		mem.Metrics[pre+"RSS B"] = float64(m.rss)
	}
	if st := db.Stats(); path != "" {
		mem.Metrics["file B"] = float64(st.FileBytes)
	}
	mib := func(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
	for _, m := range measures {
		mem.Note += fmt.Sprintf("day %d: heap %s (in use %s, RSS %s), MemoryBytes %s, FrozenBytes %s in %d frozen days, %d hour buckets; ",
			m.day, mib(float64(m.heapAlloc)), mib(float64(m.heapInuse)), mib(float64(m.rss)), mib(float64(m.memoryBytes)),
			mib(float64(m.frozenBytes)), m.frozenDays, m.hourBuckets)
	}
	if len(measures) > 1 {
		a, b := measures[0], measures[len(measures)-1]
		mem.Note += fmt.Sprintf("heap day %d / day %d = %.2f; live heap at day %d per series-day %.1f B", b.day, a.day,
			float64(b.heapAlloc)/float64(a.heapAlloc), a.day, float64(a.heapAlloc)/float64(customers*meters*a.day))
		if b.frozenDays > 0 {
			mem.Note += fmt.Sprintf("; frozen history %.1f B per series-day", float64(b.frozenBytes)/float64(b.frozenDays))
		}
	}
	err = db.Close()
	db = nil
	if err == nil && path != "" {
		// Open reads the stored blocks and the checkpoint after them, and
		// freezes as it goes.
		t := time.Now()
		db, err = meterdb.Open(path, &meterdb.Options{Now: now, Durability: meterdb.DurabilityBuffered, NoFsync: true})
		if err != nil {
			return nil, err
		}
		took := time.Since(t)
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		st := db.Stats()
		mem.Metrics["open s"] = took.Seconds()
		mem.Metrics["open heap B"] = float64(ms.HeapAlloc)
		mem.Note += fmt.Sprintf("; Open after Close took %.1f s, heap after it %s, %d frozen days", took.Seconds(), mib(float64(ms.HeapAlloc)), st.FrozenDays)
		ss, qerr := db.Summaries(ctx, meterdb.SummaryParams{Meter: ids[0], Customer: custs[0], Start: yearBack, End: vEnd, Grouping: meterdb.GroupDay})
		if qerr != nil || len(ss) != vDays {
			return nil, fmt.Errorf("after Open: %d days, %v", len(ss), qerr)
		}
		err = db.Close()
		db = nil
	}
	rows = append([]Result{mem}, rows...)
	return rows, err
}
