package stripeapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

func TestDecodeForm(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"", `{}`},
		{"a=1&&b=2&", `{"a":"1","b":"2"}`},
		{"a=1&a=2", `{"a":["1","2"]}`},
		{"a[]=1", `{"a":["1"]}`},
		{"a[]=1&a[]=2&a=3", `{"a":["1","2","3"]}`},
		{"a[0]=x&a[1]=y", `{"a":{"0":"x","1":"y"}}`},
		{"a[b][c]=1&a[b][d]=2&a[e]=3", `{"a":{"b":{"c":"1","d":"2"},"e":"3"}}`},
		{"p%5Bk%5D=v+w%21", `{"p":{"k":"v w!"}}`},
		{"a", `{"a":""}`},
		{"a=b=c", `{"a":"b=c"}`},
		{"a[b]=", `{"a":{"b":""}}`},
	} {
		root := newHash()
		n := 0
		if err := decodeForm(root, tc.raw, &n, 100); err != nil {
			t.Errorf("%q: %v", tc.raw, err)
			continue
		}
		if got := string(root.canonical()); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.raw, got, tc.want)
		}
	}
	for _, raw := range []string{"%", "a=%g1", "]=1", "[a]=1", "a]=1", "a[b=1", "a[b]c=1", "a[[b]]=1", "a[][b]=1",
		"a=1&a[b]=2", "a[b]=1&a=2", "a[b]=1&a[]=2", "a[b][c]=1&a[b]=2", "a[1][2][3][4][5]=1", strings.Repeat("k", 501) + "=1"} {
		root := newHash()
		n := 0
		err := decodeForm(root, raw, &n, 100)
		var ae *apiError
		if !errors.As(err, &ae) || ae.Status != 400 {
			t.Errorf("%q: error %v, want a 400", raw, err)
		}
	}
	n := 0
	if err := decodeForm(newHash(), strings.Repeat("a=1&", 11), &n, 10); err == nil {
		t.Error("11 pairs accepted with a limit of 10")
	}
}

// FuzzV1Form checks that the v1 form decoder never panics, fails only with
// a 400 or 413 *apiError, and that what it decodes re-encodes to the same
// parameters.
func FuzzV1Form(f *testing.F) {
	for _, s := range []string{
		"", "a=1", "a=1&a=2", "expand[]=a&expand[]=b", "expand[0]=a&expand[1]=b",
		"default_aggregation[formula]=sum&display_name=x&event_name=y",
		"payload[stripe_customer_id]=cus_1&payload[value]=25&event_name=api&timestamp=1700000000",
		"cancel[identifier]=abc&type=cancel", "a[b][c][d][e]=1", "a=1&a[b]=2", "%zz", "a[=1", "a[]b=1", "+%2B=%26",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		root := newHash()
		n := 0
		err := decodeForm(root, raw, &n, 200)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.Status != 400 || ae.Message == "" {
				t.Fatalf("%q: error %v", raw, err)
			}
			return
		}
		enc := root.encode()
		again := newHash()
		n = 0
		if err := decodeForm(again, enc, &n, 1<<20); err != nil {
			t.Fatalf("%q re-encoded as %q: %v", raw, enc, err)
		}
		if a, b := root.canonical(), again.canonical(); !bytes.Equal(a, b) {
			t.Fatalf("%q: decoded %s, after re-encoding as %q %s", raw, a, enc, b)
		}
		// Reading any parameter never panics, and done always decides.
		p := newV1Params(root)
		for k := range root.hash {
			switch len(k) % 5 {
			case 0:
				p.str(k, 10, true)
			case 1:
				p.int(k, false)
			case 2:
				p.strMap(k, true, 3, 5, 5)
			case 3:
				if h := p.hash(k, false); h != nil {
					h.str("x", 5, true)
				}
			default:
				p.expand()
			}
		}
		_ = p.done()
	})
}

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

// FuzzJSONUTF8 checks the UTF-8 check of JSON bodies against utf8.Valid,
// and the shape of its error.
func FuzzJSONUTF8(f *testing.F) {
	for _, s := range []string{`{"a":"b"}`, "{\"a\":\"\xff\"}", "{\"\xfe\":1}", "{\"a\":[\"x\",\"\xc3\x28\"]}",
		"{\"a\":{\"b\":\"\xe2\x82\"}}", "\xff", `[]`, "{\"events\":[{\"payload\":{\"k\":\"v\xff\"}}]}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		err := checkJSONUTF8(body)
		if (err == nil) != utf8.Valid(body) {
			t.Fatalf("checkJSONUTF8(%q) = %v, utf8.Valid %v", body, err, utf8.Valid(body))
		}
		if err == nil {
			return
		}
		if err.Status != 400 || err.Code != codeParameterInvalid || !utf8.ValidString(err.Param) || !utf8.ValidString(err.Message) {
			t.Fatalf("checkJSONUTF8(%q) = %+v", body, err)
		}
		if !strings.Contains(err.Message, "UTF-8") {
			t.Fatalf("checkJSONUTF8(%q) says %q", body, err.Message)
		}
	})
}
