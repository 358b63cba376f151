package stripeapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

// fuzzSummaryEnv is a handler over a DB with one sum meter and a few
// events, for FuzzV1SummaryQuery.
func fuzzSummaryEnv(tb testing.TB) (http.Handler, string) {
	now := time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	db, err := meterdb.Open("", &meterdb.Options{Now: clock})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	ctx := context.Background()
	m, err := db.CreateMeter(ctx, meter.Params{DisplayName: "x", EventName: "calls", Formula: meter.Sum})
	if err != nil {
		tb.Fatal(err)
	}
	for i, v := range []string{"5", "-7", "999999999999999", "3"} {
		if _, err := db.Record(ctx, event.Event{Name: "calls", Timestamp: now.Add(-time.Duration(i*7) * time.Hour),
			Payload: map[string]string{"stripe_customer_id": "cus_1", "value": v}}); err != nil {
			tb.Fatal(err)
		}
	}
	h, err := NewHandler(db, &Options{Now: clock})
	if err != nil {
		tb.Fatal(err)
	}
	return h, m.ID
}

// FuzzV1SummaryQuery sends arbitrary query strings to the event summaries
// endpoint and checks that the answer is never a 5xx, always JSON, and,
// when it succeeds, a well-formed page whose items are windows of the
// requested range, newest first, with ids that parse back.
func FuzzV1SummaryQuery(f *testing.F) {
	for _, s := range []string{
		"customer=cus_1&start_time=1772323200&end_time=1772409600",
		"customer=cus_1&start_time=1772323200&end_time=1772409600&value_grouping_window=hour&limit=2",
		"customer=cus_1&start_time=1772236800&end_time=1772409600&value_grouping_window=day",
		"customer=cus_1&start_time=1772323200&end_time=1772409600&value_grouping_window=hour&starting_after=mtrusg_test_x",
		"customer=cus_1&start_time=1772323260&end_time=1772323200",
		"customer=cus_1&start_time=0&end_time=253402300740",
		"customer=cus_1&start_time=0&end_time=253402300800&value_grouping_window=hour",
		"customer=&start_time=a&end_time=",
		"customer[]=x&start_time[a]=1&expand[0]=data.*&limit=101",
		"customer=cus_1&start_time=-9223372036854775808&end_time=9223372036854775807",
	} {
		f.Add(s)
	}
	h, id := fuzzSummaryEnv(f)
	f.Fuzz(func(t *testing.T, raw string) {
		if strings.ContainsAny(raw, "# \r\n") {
			return // not part of a query string
		}
		req := httptest.NewRequest("GET", "/v1/billing/meters/"+id+"/event_summaries", nil)
		req.URL.RawQuery = raw
		req.Header.Set("Authorization", "Bearer sk_test_fuzz")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%q: status %d: %s", raw, rec.Code, rec.Body)
		}
		if rec.Code != 200 {
			var e struct {
				Error struct{ Type, Message string }
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Type == "" || e.Error.Message == "" {
				t.Fatalf("%q: error body %s", raw, rec.Body)
			}
			return
		}
		var l struct {
			Object  string
			HasMore bool `json:"has_more"`
			Data    []struct {
				ID        string
				Object    string
				StartTime int64 `json:"start_time"`
				EndTime   int64 `json:"end_time"`
			}
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &l); err != nil || l.Object != "list" || len(l.Data) > 100 {
			t.Fatalf("%q: list %s", raw, rec.Body)
		}
		for i, s := range l.Data {
			if s.Object != "billing.meter_event_summary" || s.StartTime >= s.EndTime || s.StartTime%60 != 0 ||
				i > 0 && s.StartTime >= l.Data[i-1].StartTime {
				t.Fatalf("%q: item %d %+v", raw, i, s)
			}
			if start, ok := parseSummaryID(s.ID, summaryTag(id, "cus_1")); ok && start != s.StartTime {
				t.Fatalf("%q: id %s parses to start %d, item starts at %d", raw, s.ID, start, s.StartTime)
			}
		}
	})
}

func TestSummaryIDs(t *testing.T) {
	tag := summaryTag("mtr_1", "cus_1")
	for _, start := range []int64{0, 60, 1772323200, maxSummaryTime - 59} {
		for _, live := range []bool{false, true} {
			id := summaryID(live, tag, start, start+3600)
			if got, ok := parseSummaryID(id, tag); !ok || got != start {
				t.Errorf("%s: %d %v", id, got, ok)
			}
			if _, ok := parseSummaryID(id, summaryTag("mtr_1", "cus_2")); ok {
				t.Errorf("%s parsed for another customer", id)
			}
		}
	}
	for _, id := range []string{"", "mtrusg_", "mtrusg_test_", "mtrusg_!!", "mtr_abc", "mtrusg_" + strings.Repeat("a", 200)} {
		if _, ok := parseSummaryID(id, tag); ok {
			t.Errorf("%q parsed", id)
		}
	}
}
