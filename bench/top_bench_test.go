package main

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

// topFixture is a sum meter with customers customers, each with two
// events on every UTC day of the 31 days before the anchor, and the
// expected usage of each customer over the 30 whole days before the
// anchor's day.
type topFixture struct {
	db         *meterdb.DB
	meterID    string
	start, end time.Time
	usage      map[string]int64 // customer -> sum over [start, end)
	counts     map[string]int64
}

func newTopFixture(b *testing.B, customers int) *topFixture {
	b.Helper()
	anchor := DefaultAnchor
	db, err := meterdb.Open("", &meterdb.Options{Now: func() time.Time { return anchor }})
	if err != nil {
		b.Fatal(err)
	}
	m, err := db.CreateMeter(context.Background(), meter.Params{DisplayName: "tokens", EventName: "tokens", Formula: meter.Sum})
	if err != nil {
		b.Fatal(err)
	}
	f := &topFixture{db: db, meterID: m.ID, end: anchor, start: anchor.Add(-30 * 24 * time.Hour),
		usage: map[string]int64{}, counts: map[string]int64{}}
	evs := make([]event.Event, 0, 1<<14)
	flush := func() {
		errs, err := db.RecordBatch(context.Background(), evs)
		if err != nil {
			b.Fatal(err)
		}
		for i, e := range errs {
			if e != nil {
				b.Fatalf("loading the fixture: %+v: %v", evs[i], e)
			}
		}
		evs = evs[:0]
	}
	seq := uint64(0)
	for d := 31; d >= 1; d-- {
		day := anchor.Add(-time.Duration(d) * 24 * time.Hour)
		for c := range customers {
			customer := fmt.Sprintf("cus_%06d", c)
			for range 2 {
				seq++
				x := mix(benchSeed<<40 ^ seq)
				ts := day.Add(time.Duration(x%86400) * time.Second)
				v := int64(x >> 20 % 10000)
				if !ts.Before(f.start) {
					f.usage[customer] += v
					f.counts[customer]++
				}
				evs = append(evs, event.Event{Name: "tokens", Identifier: "t" + strconv.FormatUint(seq, 36), Timestamp: ts,
					Payload: map[string]string{meter.DefaultCustomerKey: customer, meter.DefaultValueKey: strconv.FormatInt(v, 10)}})
				if len(evs) == cap(evs) {
					flush()
				}
			}
		}
	}
	flush()
	return f
}

// check compares got with the top n of the expected usage.
func (f *topFixture) check(b *testing.B, got []meterdb.CustomerUsage, n int) {
	b.Helper()
	type cu struct {
		c string
		v int64
	}
	var all []cu
	for c, v := range f.usage {
		all = append(all, cu{c, v})
	}
	slices.SortFunc(all, func(a, b cu) int { return cmp.Or(cmp.Compare(b.v, a.v), cmp.Compare(a.c, b.c)) })
	all = all[:min(n, len(all))]
	if len(got) != len(all) {
		b.Fatalf("top %d: got %d customers, want %d", n, len(got), len(all))
	}
	for i := range all {
		if got[i].Customer != all[i].c || got[i].Value != meterdb.Int128Of(all[i].v) || got[i].Count != f.counts[all[i].c] {
			b.Fatalf("top %d: #%d is %+v, want %s with %d (%d events)", n, i, got[i], all[i].c, all[i].v, f.counts[all[i].c])
		}
	}
}

// BenchmarkTopCustomers measures TopCustomers (N = 10) over a sum meter
// with 10^4 customers, each with usage on every day, and a 30-day
// UTC-day-aligned range; it reports the latency distribution of the timed
// calls as p50-ns and p99-ns (wall clock), and on Linux also of the CPU
// time of each call as p50-cpu-ns and p99-cpu-ns: what a call costs when
// the machine is loaded enough to deschedule it, as this shared one is. method=summaries-loop is what a caller
// without TopCustomers does: one Summaries call per customer and a
// selection of the greatest.
func BenchmarkTopCustomers(b *testing.B) {
	const customers, n = 10_000, 10
	var f *topFixture
	for _, method := range []string{"TopCustomers", "summaries-loop"} {
		b.Run(fmt.Sprintf("customers=%s/range=30d/n=%d/method=%s", sci(customers), n, method), func(b *testing.B) {
			if f == nil {
				f = newTopFixture(b, customers)
			}
			ctx := context.Background()
			p := meterdb.TopParams{Meter: f.meterID, Start: f.start, End: f.end, N: n}
			top := func() []meterdb.CustomerUsage {
				if method == "TopCustomers" {
					got, err := f.db.TopCustomers(ctx, p)
					if err != nil {
						b.Fatal(err)
					}
					return got
				}
				var all []meterdb.CustomerUsage
				for c := range customers {
					customer := fmt.Sprintf("cus_%06d", c)
					s, err := f.db.Summaries(ctx, meterdb.SummaryParams{Meter: f.meterID, Customer: customer, Start: f.start, End: f.end})
					if err != nil {
						b.Fatal(err)
					}
					if s[0].Count > 0 {
						all = append(all, meterdb.CustomerUsage{Customer: customer, Value: s[0].Value, Count: s[0].Count})
					}
				}
				slices.SortFunc(all, func(a, b meterdb.CustomerUsage) int {
					return cmp.Or(b.Value.Big().Cmp(a.Value.Big()), cmp.Compare(a.Customer, b.Customer))
				})
				return all[:min(n, len(all))]
			}
			f.check(b, top(), n)
			lat := make([]time.Duration, 0, min(b.N, 1<<20))
			cpu := make([]int64, 0, cap(lat))
			runtime.LockOSThread() // the thread's CPU time is the call's
			defer runtime.UnlockOSThread()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c0, t0 := threadCPUTime(), time.Now()
				top()
				if len(lat) < cap(lat) {
					lat = append(lat, time.Since(t0))
					cpu = append(cpu, threadCPUTime()-c0)
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			slices.Sort(cpu)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
			if cpu[len(cpu)-1] > 0 {
				b.ReportMetric(float64(cpu[len(cpu)/2]), "p50-cpu-ns")
				b.ReportMetric(float64(cpu[len(cpu)*99/100]), "p99-cpu-ns")
			}
			f.check(b, top(), n)
		})
	}
}
