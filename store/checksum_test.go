package store

import (
	"fmt"
	"testing"

	"github.com/meterdb/meterdb/internal/idhash"
)

// BenchmarkChecksum measures what format 2 adds to a commit and to a read:
// sealing and checking one log record of events=n.
func BenchmarkChecksum(b *testing.B) {
	for _, n := range []int{1, 100, 10_000} {
		g := &Group{Events: make([]Event, n)}
		for i := range g.Events {
			g.Events[i] = Event{Seq: uint64(i + 1), Meter: 1, Customer: fmt.Sprintf("cus_%06d", i%1000),
				Identifier: fmt.Sprintf("evt_%016d", i), Value: int64(i % 977), Timestamp: 1_700_000_000, Received: 1_700_000_000}
		}
		body := appendGroup(nil, g, idhash.Key{})
		key := u64(12345)
		v := seal(scopeLog, key, append(make([]byte, 0, len(body)+crcLen), body...))
		if _, err := unseal(scopeLog, key, v); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("op=seal/events=%d", n), func(b *testing.B) {
			buf := make([]byte, len(body), len(body)+crcLen)
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				copy(buf, body)
				seal(scopeLog, key, buf[:len(body)])
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
		})
		b.Run(fmt.Sprintf("op=check/events=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(v)))
			for b.Loop() {
				if _, err := unseal(scopeLog, key, v); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
		})
	}
}
