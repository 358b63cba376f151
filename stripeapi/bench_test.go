package stripeapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/stripeapi"
)

// BenchmarkV1MeterEvent measures POST /v1/billing/meter_events through the
// handler in process (no network), with and without an Idempotency-Key.
func BenchmarkV1MeterEvent(b *testing.B) {
	for _, idem := range []bool{false, true} {
		b.Run(fmt.Sprintf("idempotency_key=%v", idem), func(b *testing.B) {
			db, err := meterdb.Open("", nil)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			if _, err := db.CreateMeter(context.Background(), meter.Params{DisplayName: "x", EventName: "calls", Formula: meter.Sum}); err != nil {
				b.Fatal(err)
			}
			h, err := stripeapi.NewHandler(db, nil)
			if err != nil {
				b.Fatal(err)
			}
			bodies := make([]string, b.N)
			for i := range bodies {
				bodies[i] = fmt.Sprintf("event_name=calls&identifier=ev%d&payload[stripe_customer_id]=cus_%d&payload[value]=%d", i, i%1000, i%7)
			}
			b.ResetTimer()
			for i := range b.N {
				req := httptest.NewRequest("POST", "/v1/billing/meter_events", strings.NewReader(bodies[i]))
				req.Header.Set("Authorization", "Bearer sk_test_bench")
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				if idem {
					req.Header.Set("Idempotency-Key", fmt.Sprint("k", i))
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
