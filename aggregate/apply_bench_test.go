//go:build unix

package aggregate_test

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/meterdb/meterdb/aggregate"
)

// BenchmarkApplyBatch measures the apply path alone: 3 meters (count,
// sum, last) times 10^3 customers drawn uniformly, timestamps uniform over
// 30 days (a backfill: most events open an hour), batches applied from
// every P. One op is one event.
//
//	go test -run '^$' -bench ApplyBatch ./aggregate
func BenchmarkApplyBatch(b *testing.B) {
	for _, batch := range []int{100, 1000} {
		b.Run(fmt.Sprintf("batch=%d/customers=1e3/ts=30d/shards=64", batch), func(b *testing.B) {
			const customers, span = 1000, 30 * day
			modes := []aggregate.Mode{aggregate.ModeOf("count", ""), aggregate.ModeOf("sum", ""), aggregate.ModeOf("last", "")}
			names := make([]string, customers)
			for i := range names {
				names[i] = fmt.Sprintf("cus_%014x", i*0x9E3779B1)
			}
			r := rand.New(rand.NewPCG(1, 2))
			n := (b.N/batch + 1) * batch
			items := make([]aggregate.Item, n)
			for i := range items {
				m := r.IntN(len(modes))
				items[i] = aggregate.Item{
					Key:   aggregate.Key{Meter: uint64(m + 1), Customer: names[r.IntN(customers)]},
					Mode:  modes[m],
					Entry: aggregate.Entry{Seq: uint64(i + 1), Timestamp: d0 - r.Int64N(span), Value: r.Int64N(1000)},
				}
			}
			tb := aggregate.NewTable(64)
			tb.TrackDirty()
			var next atomic.Int64
			cpu0 := cpuTime()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				k := 0
				for pb.Next() {
					if k++; k < batch {
						continue
					}
					k = 0
					i := int(next.Add(int64(batch))) - batch
					if i+batch > len(items) {
						return
					}
					tb.ApplyBatch(items[i : i+batch])
				}
			})
			b.StopTimer()
			if done := min(next.Load(), int64(len(items))); done > 0 {
				b.ReportMetric(float64(done)/b.Elapsed().Seconds(), "events/s")
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(done), "cpu-ns/event")
			}
		})
	}
}

// cpuTime returns the user plus system CPU time of the process so far, in
// nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
