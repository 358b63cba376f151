package stripeapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
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

// BenchmarkStreamDuplicates measures meter event stream requests of 100
// events, in a database file, when the events are new (duplicates=false)
// and when every request replays a batch already recorded
// (duplicates=true), as a client retrying does: the replays are rejected
// as duplicate_meter_event and reported.
func BenchmarkStreamDuplicates(b *testing.B) {
	for _, dup := range []bool{false, true} {
		b.Run(fmt.Sprintf("duplicates=%v", dup), func(b *testing.B) {
			db, err := meterdb.Open(filepath.Join(b.TempDir(), "bench.db"), nil)
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
			serve := func(path, token, body string) []byte {
				req := httptest.NewRequest("POST", path, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: status %d: %s", path, rec.Code, rec.Body)
				}
				return rec.Body.Bytes()
			}
			var sess struct {
				Token string `json:"authentication_token"`
			}
			if err := json.Unmarshal(serve("/v2/billing/meter_event_session", "sk_test_bench", ""), &sess); err != nil {
				b.Fatal(err)
			}
			batch := func(r int) string {
				var sb strings.Builder
				sb.WriteString(`{"events":[`)
				for i := range 100 {
					if i > 0 {
						sb.WriteString(",")
					}
					fmt.Fprintf(&sb, `{"event_name":"calls","identifier":"r%d-e%d","payload":{"stripe_customer_id":"cus_%d","value":"1"}}`, r, i, i%10)
				}
				sb.WriteString("]}")
				return sb.String()
			}
			bodies := make([]string, b.N)
			for i := range bodies {
				bodies[i] = batch(i + 1)
			}
			if dup {
				serve("/v2/billing/meter_event_stream", sess.Token, batch(0))
				for i := range bodies {
					bodies[i] = batch(0)
				}
			}
			b.ResetTimer()
			for i := range b.N {
				serve("/v2/billing/meter_event_stream", sess.Token, bodies[i])
			}
			b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/event")
		})
	}
}
