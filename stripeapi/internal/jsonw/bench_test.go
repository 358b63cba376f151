package jsonw

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkStreamDecode decodes a stream body of 100 events with the
// single-pass decoder (decoder=single-pass) and with refDecode, the same
// rules written with encoding/json (decoder=encoding-json).
func BenchmarkStreamDecode(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"events":[`)
	for i := range 100 {
		if i > 0 {
			sb.WriteString(",")
		}
		fmt.Fprintf(&sb, `{"event_name":"api_call","identifier":"%08x-1b2c-4d5e-8f90-a1b2c3d4e5f6","payload":{"stripe_customer_id":"cus_%d","value":"%d"},"timestamp":"2026-03-01T12:00:00.000Z"}`, i, i%7, i)
	}
	sb.WriteString("]}")
	body := []byte(sb.String())
	names := NewNames()
	b.Run("decoder=single-pass", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			bt := GetBatch()
			if err := bt.Decode(body, names); err != nil {
				b.Fatal(err)
			}
			bt.Release()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/event")
	})
	b.Run("decoder=encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, ok := refDecode(body); !ok {
				b.Fatal("refDecode failed")
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/event")
	})
}
