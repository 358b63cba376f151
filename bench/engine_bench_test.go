package main

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/aggregate"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/internal/dedupe"
	"github.com/meterdb/meterdb/meter"
)

// The engine benchmarks. Every sub-benchmark is named key=value, uses
// fixed seeds, builds its inputs before the timer and verifies the
// engine's answers after it (outside the timer) against the workload.
//
//	go test -run '^$' -bench . -benchmem ./bench

const benchSeed = 1

var (
	workloadsMu sync.Mutex
	workloads   = map[[2]int64]*Workload{}
)

// benchWorkload returns the shared workload with the given customer count
// and timestamp span: three meters (count, sum, last) and Zipf(1.1)
// customers.
func benchWorkload(customers int, span time.Duration) *Workload {
	workloadsMu.Lock()
	defer workloadsMu.Unlock()
	k := [2]int64{int64(customers), int64(span)}
	w := workloads[k]
	if w == nil {
		w = NewWorkload(benchSeed, customers, 3, 1.1)
		w.Span = span
		workloads[k] = w
	}
	return w
}

func openBenchDB(b *testing.B, w *Workload) (*meterDB, []string) {
	b.Helper()
	db, err := meterdb.Open("", &meterdb.Options{Now: w.Now})
	if err != nil {
		b.Fatal(err)
	}
	t := &meterDB{db: db}
	ids, err := t.CreateMeters(context.Background(), w.Meters)
	if err != nil {
		b.Fatal(err)
	}
	return t, ids
}

func totalAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// BenchmarkIngest measures in-memory ingest. One op is one event, so
// ns/op is ns per event whatever the batch size. Timestamps are uniform
// over the last 30 days (ts=30d, a backfill) or over the last hour (ts=1h,
// events reported as they happen).
func BenchmarkIngest(b *testing.B) {
	for _, api := range []struct {
		name  string
		batch int
	}{{"api=Record", 1}, {"api=RecordBatch/batch=100", 100}} {
		for _, span := range []struct {
			name string
			d    time.Duration
		}{{"ts=30d", 30 * 24 * time.Hour}, {"ts=1h", time.Hour}} {
			for _, customers := range []int{1e2, 1e4, 1e6} {
				for _, par := range []bool{false, true} {
					g := "goroutines=1"
					if par {
						g = "goroutines=parallel"
					}
					name := fmt.Sprintf("%s/%s/customers=%s/%s", api.name, span.name, sci(customers), g)
					b.Run(name, func(b *testing.B) { benchIngest(b, benchWorkload(customers, span.d), api.batch, par) })
				}
			}
		}
	}
}

func benchIngest(b *testing.B, w *Workload, batch int, parallel bool) {
	ctx := context.Background()
	const block = 100 // events claimed at a time; a multiple of every batch size
	// Parallel goroutines may each leave one block partly used.
	evs := w.Events(0, b.N+block*runtime.GOMAXPROCS(0))
	db, ids := openBenchDB(b, w)
	defer db.Close()
	var (
		next     atomic.Uint64
		failures atomic.Int64
		rangesMu sync.Mutex
		ranges   [][2]uint64
	)
	// worker records events until more returns false; it claims blocks of
	// consecutive events and remembers which ones it sent.
	worker := func(more func() bool) {
		var mine [][2]uint64
		pos, end, sent := uint64(0), uint64(0), uint64(0)
		flush := func() {
			if sent == pos {
				return
			}
			if batch == 1 {
				for i := sent; i < pos; i++ {
					if err := db.Record(ctx, &evs[i]); err != nil {
						failures.Add(1)
					}
				}
			} else if n, err := db.RecordBatch(ctx, evs[sent:pos]); err != nil || n > 0 {
				failures.Add(1)
			}
			sent = pos
		}
		start := uint64(0)
		for more() {
			if pos == end {
				flush()
				if end > start {
					mine = append(mine, [2]uint64{start, end})
				}
				start = next.Add(block) - block
				pos, end, sent = start, start+block, start
			}
			pos++
			if batch == 1 || pos-sent == uint64(batch) {
				flush()
			}
		}
		flush()
		if pos > start {
			mine = append(mine, [2]uint64{start, pos})
		}
		rangesMu.Lock()
		ranges = append(ranges, mine...)
		rangesMu.Unlock()
	}
	b.ReportAllocs()
	alloc0 := totalAlloc()
	cpu0 := cpuTime()
	b.ResetTimer()
	if parallel {
		b.RunParallel(func(pb *testing.PB) { worker(pb.Next) })
	} else {
		n := 0
		worker(func() bool { n++; return n <= b.N })
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	alloc := totalAlloc() - alloc0
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	// CPU time per event (all threads, GC included) does not depend on how
	// many cores other processes leave to this one.
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/event")
	b.ReportMetric(float64(alloc)/float64(b.N), "B/event")
	if f := failures.Load(); f > 0 {
		b.Fatalf("%d calls failed", f)
	}
	if got := db.db.Stats().EventsAccepted; got != int64(b.N) {
		b.Fatalf("accepted %d events, want %d", got, b.N)
	}
	if _, err := verifyTotals(ctx, "meterdb-mem", db, w, ids, ranges, 3000); err != nil {
		b.Fatal(err)
	}
}

// sci formats powers of ten as 1e4.
func sci(n int) string {
	e := 0
	for m := n; m >= 10 && m%10 == 0; m /= 10 {
		e++
	}
	if n == pow10(e) && e >= 2 {
		return fmt.Sprintf("1e%d", e)
	}
	return fmt.Sprint(n)
}

func pow10(e int) int {
	n := 1
	for range e {
		n *= 10
	}
	return n
}

// summaryFixture is one customer of a sum meter with eventsPerHour events
// in every hour of the 35 days before the anchor, at distinct random
// minutes.
type summaryFixture struct {
	db       *meterDB
	meterID  string
	customer string
	events   []Spec // what was recorded
}

func newSummaryFixture(b *testing.B, eventsPerHour int) *summaryFixture {
	w := benchWorkload(1e2, 30*24*time.Hour)
	db, ids := openBenchDB(b, w)
	f := &summaryFixture{db: db, meterID: ids[1], customer: w.CustomerID(0)}
	anchor := w.Anchor.Unix()
	var evs []event.Event
	seq := uint64(0)
	for h := anchor - 35*86400; h < anchor; h += 3600 {
		used := map[int64]bool{}
		for range eventsPerHour {
			seq++
			x := mix(benchSeed<<32 ^ seq)
			minute := int64(x % 60)
			for used[minute] {
				minute = (minute + 1) % 60
			}
			used[minute] = true
			s := Spec{TS: h + minute*60 + int64(x>>8%60), Value: int64(x >> 16 % 1000)}
			f.events = append(f.events, s)
			evs = append(evs, event.Event{
				Name: w.Meters[1].EventName, Identifier: fmt.Sprintf("sum_%d", seq),
				Payload:   map[string]string{meter.DefaultCustomerKey: f.customer, meter.DefaultValueKey: fmt.Sprint(s.Value)},
				Timestamp: time.Unix(s.TS, 0),
			})
		}
	}
	if n, err := db.RecordBatch(context.Background(), evs); err != nil || n > 0 {
		b.Fatalf("loading the fixture: %d rejected, %v", n, err)
	}
	return f
}

// BenchmarkSummary measures summary queries over one customer with data in
// every hour of 35 days, through Summaries (a new slice per call) and
// AppendSummaries (one slice reused), and reports the latency distribution
// of the timed calls as p50-ns and p99-ns.
func BenchmarkSummary(b *testing.B) {
	anchor := DefaultAnchor
	for _, q := range []struct {
		name string
		p    func(f *summaryFixture) meterdb.SummaryParams
	}{
		{"grouping=hour/range=35d", func(f *summaryFixture) meterdb.SummaryParams {
			return meterdb.SummaryParams{Start: anchor.Add(-35 * 24 * time.Hour), End: anchor, Grouping: meterdb.GroupHour}
		}},
		{"grouping=hour/range=48h", func(f *summaryFixture) meterdb.SummaryParams {
			return meterdb.SummaryParams{Start: anchor.Add(-48 * time.Hour), End: anchor, Grouping: meterdb.GroupHour}
		}},
		{"grouping=day/range=35d", func(f *summaryFixture) meterdb.SummaryParams {
			return meterdb.SummaryParams{Start: anchor.Add(-35 * 24 * time.Hour), End: anchor, Grouping: meterdb.GroupDay}
		}},
		{"grouping=none/range=30d/align=day", func(f *summaryFixture) meterdb.SummaryParams {
			return meterdb.SummaryParams{Start: anchor.Add(-30 * 24 * time.Hour), End: anchor}
		}},
		{"grouping=none/range=30d/align=minute", func(f *summaryFixture) meterdb.SummaryParams {
			return meterdb.SummaryParams{Start: anchor.Add(-30*24*time.Hour + 17*time.Minute), End: anchor.Add(-23 * time.Minute)}
		}},
	} {
		for _, api := range []string{"Summaries", "AppendSummaries"} {
			b.Run(fmt.Sprintf("%s/events-per-hour=4/api=%s", q.name, api), func(b *testing.B) {
				f := newSummaryFixture(b, 4)
				defer f.db.Close()
				p := q.p(f)
				p.Meter, p.Customer = f.meterID, f.customer
				f.check(b, p)
				ctx := context.Background()
				var buf []meterdb.Summary // reused by AppendSummaries
				lat := make([]time.Duration, 0, min(b.N, 1<<20))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					t0 := time.Now()
					var err error
					if api == "Summaries" {
						_, err = f.db.Summaries(ctx, p)
					} else {
						buf, err = f.db.db.AppendSummaries(ctx, buf[:0], p)
					}
					if err != nil {
						b.Fatal(err)
					}
					if len(lat) < cap(lat) {
						lat = append(lat, time.Since(t0))
					}
				}
				b.StopTimer()
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
				b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
				f.check(b, p)
				if api == "AppendSummaries" {
					if err := compareWindows(buf, expectedWindows(f.events, p), meter.Sum); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// check compares the engine's answer to p with brute force over the
// recorded events.
func (f *summaryFixture) check(b *testing.B, p meterdb.SummaryParams) {
	b.Helper()
	got, err := f.db.Summaries(context.Background(), p)
	if err != nil {
		b.Fatal(err)
	}
	if err := compareWindows(got, expectedWindows(f.events, p), meter.Sum); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkBucketMemory measures the heap of aggregate.Table per (meter,
// customer, hour) bucket. One op builds one hour bucket holding
// minutes-per-hour events at distinct minutes; series hold hours-per-series
// consecutive hours, or with hours-per-day=1 one hour in each of
// hours-per-series days (a sparse series).
func BenchmarkBucketMemory(b *testing.B) {
	for _, formula := range []meter.Formula{meter.Sum, meter.Last} {
		for _, hps := range []int{1, 840} {
			for _, mph := range []int{1, 60} {
				name := fmt.Sprintf("formula=%s/hours-per-series=%d/minutes-per-hour=%d", formula, hps, mph)
				b.Run(name, func(b *testing.B) { benchBucketMemory(b, formula, hps, mph, 1) })
			}
		}
		name := fmt.Sprintf("formula=%s/hours-per-series=35/hours-per-day=1/minutes-per-hour=1", formula)
		b.Run(name, func(b *testing.B) { benchBucketMemory(b, formula, 35, 1, 24) })
	}
}

// benchBucketMemory builds hour buckets stride hours apart in each series.
func benchBucketMemory(b *testing.B, formula meter.Formula, hoursPerSeries, minutesPerHour, stride int) {
	mode := aggregate.ModeOf(string(formula), "")
	series := (b.N + hoursPerSeries - 1) / hoursPerSeries
	customers := make([]string, series)
	for i := range customers {
		customers[i] = fmt.Sprintf("cus_%014x", mix(uint64(i))>>8)
	}
	anchor := DefaultAnchor.Unix()
	items := make([]aggregate.Item, 0, minutesPerHour)
	var seq uint64
	base := heapAlloc()
	table := aggregate.NewTable(64)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := aggregate.Key{Meter: 1, Customer: customers[i/hoursPerSeries]}
		hour := anchor - int64(1+i%hoursPerSeries*stride)*3600
		items = items[:0]
		for m := range minutesPerHour {
			seq++
			items = append(items, aggregate.Item{Key: k, Mode: mode,
				Entry: aggregate.Entry{Seq: seq, Timestamp: hour + int64(m)*60, Value: int64(seq % 1000)}})
		}
		table.ApplyBatch(items)
	}
	b.StopTimer()
	st := table.Stats()
	if st.HourBuckets != int64(b.N) || st.MinuteCells != int64(b.N*minutesPerHour) {
		b.Fatalf("table holds %d hour buckets and %d minute cells, want %d and %d",
			st.HourBuckets, st.MinuteCells, b.N, b.N*minutesPerHour)
	}
	heap := float64(heapAlloc() - base)
	runtime.KeepAlive(table)
	runtime.KeepAlive(customers)
	b.ReportMetric(heap/float64(b.N), "B/bucket")
	b.ReportMetric(float64(b.N*minutesPerHour)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDedupeMemory measures the dedupe index per identifier: heap and
// table slots. One op reserves and commits one identifier; 100 identifiers
// share a location, as in a RecordBatch of 100.
func BenchmarkDedupeMemory(b *testing.B) {
	b.Run("layer=index/ids-per-loc=100", func(b *testing.B) {
		ids := make([]string, b.N)
		w := benchWorkload(1e2, 30*24*time.Hour)
		for i := 0; i < b.N; i += 4096 {
			evs := w.Events(uint64(i), min(4096, b.N-i))
			for j := range evs {
				ids[i+j] = evs[j].Identifier
			}
		}
		base := heapAlloc()
		x := dedupe.New()
		b.ResetTimer()
		for i, id := range ids {
			ok, err := x.Reserve(id, confirmIn(ids[:i], id))
			if !ok || err != nil {
				b.Fatalf("identifier %d: reserve %v %v", i, ok, err)
			}
			x.Commit(id, uint64(i/100+1))
		}
		b.StopTimer()
		st := x.Stats()
		if st.Used != int64(b.N) {
			b.Fatalf("index holds %d identifiers, want %d", st.Used, b.N)
		}
		heap := float64(heapAlloc() - base)
		runtime.KeepAlive(x)
		runtime.KeepAlive(ids)
		b.ReportMetric(heap/float64(b.N), "B/identifier")
		b.ReportMetric(float64(st.Bytes)/float64(st.Used), "slot-B/identifier")
	})
	// Through the in-memory DB: the index plus everything else an event
	// leaves in memory (the in-memory journal keeps whole events for the
	// dedupe window).
	b.Run("layer=db/batch=100", func(b *testing.B) {
		w := benchWorkload(1e4, 30*24*time.Hour)
		evs := w.Events(0, b.N) // identifiers are allocated here, outside the measurement
		base := heapAlloc()
		db, _ := openBenchDB(b, w)
		defer db.Close()
		b.ResetTimer()
		for i := 0; i < b.N; i += 100 {
			if n, err := db.RecordBatch(context.Background(), evs[i:min(b.N, i+100)]); n > 0 || err != nil {
				b.Fatalf("%d rejected, %v", n, err)
			}
		}
		b.StopTimer()
		st := db.db.Stats()
		if st.DedupeIdentities != int64(b.N) {
			b.Fatalf("dedupe holds %d identities, want %d", st.DedupeIdentities, b.N)
		}
		heap := float64(heapAlloc() - base)
		runtime.KeepAlive(db)
		runtime.KeepAlive(evs)
		b.ReportMetric(float64(st.DedupeBytes)/float64(st.DedupeIdentities), "slot-B/identifier")
		b.ReportMetric(heap/float64(b.N), "heap-B/event")
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// BenchmarkStage measures the stages of ingest one at a time, single
// goroutine, on the events of the customers=1e4 workload: validation
// (event.Validate with the meter looked up by name), the dedupe index
// (Reserve and Commit of a new identifier) and the aggregate table
// (ApplyBatch of 100 entries). One op is one event.
func BenchmarkStage(b *testing.B) {
	spans := []struct {
		name string
		d    time.Duration
	}{{"ts=30d", 30 * 24 * time.Hour}, {"ts=1h", time.Hour}}
	b.Run("stage=validate", func(b *testing.B) {
		w := benchWorkload(1e4, 30*24*time.Hour)
		var ms baseMeters
		ms.create(w.Meters, w.Now())
		evs := w.Events(0, b.N)
		now := w.Now()
		b.ReportAllocs()
		b.ResetTimer()
		for i := range evs {
			if _, err := event.Validate(&evs[i], ms.byEvent[evs[i].Name], now); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("stage=dedupe", func(b *testing.B) {
		w := benchWorkload(1e4, 30*24*time.Hour)
		evs := w.Events(0, b.N)
		ids := make([]string, len(evs))
		for i := range evs {
			ids[i] = evs[i].Identifier
		}
		x := dedupe.New()
		b.ReportAllocs()
		b.ResetTimer()
		for i, id := range ids {
			if ok, err := x.Reserve(id, confirmIn(ids[:i], id)); !ok || err != nil {
				b.Fatalf("identifier %d refused: %v", i, err)
			}
			x.Commit(id, uint64(i/100+1))
		}
		b.StopTimer()
		if st := x.Stats(); st.Used != int64(b.N) {
			b.Fatalf("index holds %d identifiers, want %d", st.Used, b.N)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	for _, span := range spans {
		b.Run("stage=apply/"+span.name, func(b *testing.B) {
			w := benchWorkload(1e4, span.d)
			items := make([]aggregate.Item, b.N)
			specs := make([]Spec, b.N)
			for i := range items {
				s := w.Spec(uint64(i))
				specs[i] = s
				items[i] = aggregate.Item{
					Key:   aggregate.Key{Meter: uint64(s.Meter + 1), Customer: w.CustomerID(s.Customer)},
					Mode:  aggregate.ModeOf(string(w.Meters[s.Meter].Formula), ""),
					Entry: aggregate.Entry{Seq: uint64(i + 1), Timestamp: s.TS, Value: s.Value},
				}
			}
			table := aggregate.NewTable(64)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += 100 {
				table.ApplyBatch(items[i:min(b.N, i+100)])
			}
			b.StopTimer()
			// Verify the sum meter's total of the hottest customer.
			var want Expect
			for _, s := range specs {
				if s.Meter == 1 && s.Customer == 0 {
					want.add(s)
				}
			}
			ws, err := table.Query(aggregate.Key{Meter: 2, Customer: w.CustomerID(0)},
				w.Anchor.Unix()-31*86400, w.Anchor.Unix(), aggregate.Total)
			if err != nil || ws[0].Count != want.Count || ws[0].Sum != aggregate.Int128Of(want.Sum) {
				b.Fatalf("hottest customer: %+v %v, want count %d sum %d", ws, err, want.Count, want.Sum)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkRecordUsage records the workload through the typed path
// (DB.RecordUsage) in batches from 4 goroutines: 10^3 customers drawn
// uniformly, timestamps over 30 days. The usages are built before the
// timer.
func BenchmarkRecordUsage(b *testing.B) {
	for _, batch := range []int{100, 1000} {
		b.Run(fmt.Sprintf("batch=%d/customers=1e3/skew=0/ts=30d/goroutines=4", batch), func(b *testing.B) {
			w := NewWorkload(benchSeed, 1000, 3, 0)
			w.Span = 30 * 24 * time.Hour
			n := (b.N/batch + 8) * batch
			evs := w.Events(0, n)
			us := make([]event.Usage, n)
			for i, e := range evs {
				v, _ := event.ParseValue(e.Payload[meter.DefaultValueKey])
				us[i] = event.Usage{Name: e.Name, Customer: e.Payload[meter.DefaultCustomerKey], Value: v,
					Identifier: e.Identifier, Timestamp: e.Timestamp}
			}
			db, _ := openBenchDB(b, w)
			defer db.Close()
			var next atomic.Int64
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.SetParallelism(2)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				k := 0
				for pb.Next() {
					if k++; k < batch {
						continue
					}
					k = 0
					i := int(next.Add(int64(batch))) - batch
					if i+batch > len(us) {
						return
					}
					errs, err := db.db.RecordUsage(context.Background(), us[i:i+batch])
					if err != nil {
						b.Error(err)
						return
					}
					for _, e := range errs {
						if e != nil {
							b.Error(e)
							return
						}
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(next.Load())/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(next.Load()), "cpu-ns/event")
		})
	}
}
