package stripeapi_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/internal/sharedlogtest"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/stripeapi"
	"github.com/stripe/stripe-go/v85"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers, for logs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStreamReportWriteFails makes the error reports' own commits fail.
// A request with accepted events commits its report with them, so the
// failure does not touch it. A request none of whose events was accepted
// stores its report in a commit of its own; when that fails, the client
// still learns that the request was processed (200 {}, not a 500 that
// would make it believe nothing counted), and the failure is logged.
func TestStreamReportWriteFails(t *testing.T) {
	var logs syncBuffer
	e := newEnv(t, &stripeapi.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, nil)
	sc := e.client(testKey)
	ctx := context.Background()
	m := createMeter(t, sc, "api_call", "sum")
	stream, _ := e.streamClient(t, sc)
	countReports := func() int {
		t.Helper()
		reports, _, err := stripeapi.ListErrorReports(ctx, e.db, stripeapi.ErrorReportListParams{})
		if err != nil {
			t.Fatal(err)
		}
		return len(reports)
	}
	// A first report opens the report store.
	first := &stripe.V2BillingMeterEventStreamCreateParams{Events: []*stripe.V2BillingMeterEventStreamCreateEventParams{
		streamEvent("nope", "unknown_0", "cus_a", "1"),
	}}
	if err := stream.V2BillingMeterEventStreams.Create(ctx, first); err != nil || countReports() != 1 {
		t.Fatalf("first report: %v, %d reports", err, countReports())
	}
	stripeapi.FailReportWrites(e.h, errors.New("disk on fire"))

	p := &stripe.V2BillingMeterEventStreamCreateParams{Events: []*stripe.V2BillingMeterEventStreamCreateEventParams{
		streamEvent("api_call", "ok1", "cus_a", "5"),
		streamEvent("nope", "unknown_1", "cus_a", "1"),
		streamEvent("api_call", "ok2", "cus_a", "7"),
	}}
	if err := stream.V2BillingMeterEventStreams.Create(ctx, p); err != nil {
		t.Fatalf("stream request whose events were recorded failed: %v", err)
	}
	if v, n := summaryTotal(t, e.db, m.ID, "cus_a"); v != 12 || n != 2 {
		t.Fatalf("valid events: %d over %d, want 12 over 2", v, n)
	}
	if n := countReports(); n != 2 || strings.Contains(logs.String(), "disk on fire") {
		t.Fatalf("%d reports, want the one committed with the events too; logs:\n%s", n, logs.String())
	}
	// A retry of the same events: none is accepted (duplicates, no meter),
	// so its report takes a commit of its own, which fails.
	if err := stream.V2BillingMeterEventStreams.Create(ctx, p); err != nil {
		t.Fatalf("stream request whose report failed: %v", err)
	}
	if v, n := summaryTotal(t, e.db, m.ID, "cus_a"); v != 12 || n != 2 {
		t.Fatalf("after a retry: %d over %d, want 12 over 2", v, n)
	}
	if l := logs.String(); !strings.Contains(l, "error report") || !strings.Contains(l, "disk on fire") {
		t.Errorf("the failed report write was not logged:\n%s", l)
	}
	stripeapi.FailReportWrites(e.h, nil)
	if n := countReports(); n != 2 {
		t.Errorf("%d reports, want 2 (the retry's was not stored)", n)
	}
}

// streamRaw posts a stream request with the session token and fails the
// test unless it gets 200.
func (e *env) streamRaw(t *testing.T, token, body string) {
	t.Helper()
	res, b := e.do("POST", "/v2/billing/meter_event_stream", body,
		"Authorization", "Bearer "+token, "Content-Type", "application/json")
	if res.StatusCode != 200 {
		t.Fatalf("stream: %d %v", res.StatusCode, b)
	}
}

// TestFilteredEventListsCostAPage stores 1,500 error reports, of which
// only the 10 oldest are of type no_meter_found and about meter B, and
// lists with each filter: the number of report records decoded is bounded
// by the page, not by the reports stored.
func TestFilteredEventListsCostAPage(t *testing.T) {
	e := newEnv(t, nil, nil)
	sc := e.client(testKey)
	createMeter(t, sc, "a", "sum")
	b := createMeter(t, sc, "b", "sum")
	var sess *stripe.V2BillingMeterEventSession
	const total, rare = 1500, 10
	var cut time.Time // created of the rare-th report
	for i := range total {
		if i%600 == 0 { // sessions last 15 minutes of the test clock
			_, sess = e.streamClient(t, sc)
		}
		name := "a"
		if i < rare {
			name = "b"
		}
		body := fmt.Sprintf(`{"events":[{"event_name":%q,"identifier":"bad-%d","payload":{"stripe_customer_id":"c","value":"x"}}]}`, name, i)
		if i < rare {
			body = fmt.Sprintf(`{"events":[{"event_name":"nope","identifier":"n-%d","payload":{"stripe_customer_id":"c","value":"1"}},`+
				`{"event_name":"b","identifier":"bad-%d","payload":{"stripe_customer_id":"c","value":"x"}}]}`, i, i)
		}
		e.streamRaw(t, sess.AuthenticationToken, body)
		if i == rare-1 {
			cut = e.clk.Now()
		}
		e.clk.Advance(time.Second)
	}
	for _, tc := range []struct {
		query string
		want  int // reports matching, all of them among the rare ones
		check func(ev map[string]any) bool
	}{
		{"types[]=v1.billing.meter.no_meter_found", rare, func(ev map[string]any) bool {
			return ev["type"] == "v1.billing.meter.no_meter_found"
		}},
		{"object_id=" + b.ID, rare, func(ev map[string]any) bool {
			ro, _ := ev["related_object"].(map[string]any)
			return ro != nil && ro["id"] == b.ID
		}},
		{"types[]=v1.billing.meter.error_report_triggered&object_id=" + b.ID, rare, func(ev map[string]any) bool {
			return ev["type"] == "v1.billing.meter.error_report_triggered"
		}},
		{fmt.Sprintf("created[lte]=%d", cut.Unix()), 2 * rare, func(ev map[string]any) bool {
			c, err := time.Parse(time.RFC3339, ev["created"].(string))
			return err == nil && !c.After(cut)
		}},
		{fmt.Sprintf("created[lt]=%s&types[]=v1.billing.meter.no_meter_found", cut.Add(time.Second).Format(time.RFC3339)), rare, func(ev map[string]any) bool {
			return ev["type"] == "v1.billing.meter.no_meter_found"
		}},
	} {
		for _, limit := range []int{1, 3} {
			before := stripeapi.ReportDecodes()
			path := fmt.Sprintf("/v2/core/events?limit=%d&%s", limit, tc.query)
			got := 0
			for path != "" {
				res, body := e.do("GET", path, "")
				if res.StatusCode != 200 {
					t.Fatalf("%s: %d %v", path, res.StatusCode, body)
				}
				data := body["data"].([]any)
				if len(data) > limit {
					t.Fatalf("%s: %d events", path, len(data))
				}
				for _, ev := range data {
					if !tc.check(ev.(map[string]any)) {
						t.Errorf("%s: event %v does not match", path, ev)
					}
				}
				got += len(data)
				path, _ = body["next_page_url"].(string)
			}
			pages := (tc.want + limit - 1) / limit
			decoded := stripeapi.ReportDecodes() - before
			if got != tc.want {
				t.Errorf("%s, limit %d: %d events, want %d", tc.query, limit, got, tc.want)
			}
			// Each page decodes at most its events and the next one's.
			if max := int64(pages * (2*limit + 2)); decoded > max {
				t.Errorf("%s, limit %d: %d pages decoded %d report records, want at most %d", tc.query, limit, pages, decoded, max)
			}
		}
	}
}

// storedReports returns the number of error report records and their
// bytes.
func storedReports(t *testing.T, e *env) (n, bytes int) {
	t.Helper()
	if err := e.db.ListKV(context.Background(), stripeapi.ReportNamespace, "", func(_ string, v []byte) bool {
		n++
		bytes += len(v)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return n, bytes
}

// TestDuplicateRetriesAddNoReports replays one stream batch of 100
// already-recorded events 50 times, each a new request (its own
// Idempotency-Key): the reports stored grow by at most one record.
func TestDuplicateRetriesAddNoReports(t *testing.T) {
	e := newEnv(t, nil, nil)
	sc := e.client(testKey)
	ctx := context.Background()
	m := createMeter(t, sc, "api_call", "sum")
	stream, _ := e.streamClient(t, sc)
	var evs []*stripe.V2BillingMeterEventStreamCreateEventParams
	for i := range 100 {
		evs = append(evs, streamEvent("api_call", fmt.Sprintf("ev-%03d", i), "cus_a", "1"))
	}
	if err := stream.V2BillingMeterEventStreams.Create(ctx, &stripe.V2BillingMeterEventStreamCreateParams{Events: evs}); err != nil {
		t.Fatal(err)
	}
	n0, b0 := storedReports(t, e)
	for range 50 {
		e.clk.Advance(time.Second)
		if err := stream.V2BillingMeterEventStreams.Create(ctx, &stripe.V2BillingMeterEventStreamCreateParams{Events: evs}); err != nil {
			t.Fatal(err)
		}
	}
	n, b := storedReports(t, e)
	t.Logf("after 50 replays: %d report records (%d bytes), before %d (%d bytes)", n, b, n0, b0)
	if n-n0 > 1 {
		t.Errorf("50 replays of recorded events stored %d report records (%d bytes), want at most 1", n-n0, b-b0)
	}
	if v, cnt := summaryTotal(t, e.db, m.ID, "cus_a"); v != 100 || cnt != 100 {
		t.Errorf("counted %d over %d events, want 100", v, cnt)
	}
	reports, _, err := stripeapi.ListErrorReports(ctx, e.db, stripeapi.ErrorReportListParams{})
	if err != nil || len(reports) != 1 || reports[0].ErrorCount != 100 || reports[0].ErrorTypes[0].Code != "duplicate_meter_event" {
		t.Fatalf("%d reports (%v); want one of 100 duplicates", len(reports), err)
	}
	// The same duplicates a day later are reported again.
	e.clk.Advance(25 * time.Hour)
	stream, _ = e.streamClient(t, sc)
	evs2 := []*stripe.V2BillingMeterEventStreamCreateEventParams{streamEvent("api_call", "later", "cus_a", "1"), evs[0]}
	for range 2 {
		if err := stream.V2BillingMeterEventStreams.Create(ctx, &stripe.V2BillingMeterEventStreamCreateParams{Events: evs2}); err != nil {
			t.Fatal(err)
		}
	}
	if n2, _ := storedReports(t, e); n2 != n+1 {
		t.Errorf("%d report records, want %d", n2, n+1)
	}
}

// TestReportStoreBounded writes distinct error reports past
// Options.MaxErrorReportBytes: the oldest are dropped, the bytes stored
// stay near the bound, and the newest are kept.
func TestReportStoreBounded(t *testing.T) {
	const bound = 64 << 10
	e := newEnv(t, &stripeapi.Options{MaxErrorReportBytes: bound}, nil)
	sc := e.client(testKey)
	createMeter(t, sc, "a", "sum")
	_, sess := e.streamClient(t, sc)
	var body strings.Builder
	for i := range 300 {
		body.Reset()
		body.WriteString(`{"events":[`)
		for j := range 5 {
			if j > 0 {
				body.WriteString(",")
			}
			fmt.Fprintf(&body, `{"event_name":"nope","identifier":"r%d-e%d","payload":{"stripe_customer_id":"c","value":"1"}}`, i, j)
		}
		body.WriteString("]}")
		e.streamRaw(t, sess.AuthenticationToken, body.String())
		e.clk.Advance(time.Second)
		if _, b := storedReports(t, e); b > bound+bound/4 {
			t.Fatalf("after %d requests %d bytes of reports are stored, bound %d", i+1, b, bound)
		}
	}
	n, b := storedReports(t, e)
	t.Logf("%d report records, %d bytes", n, b)
	reports, _, err := stripeapi.ListErrorReports(context.Background(), e.db, stripeapi.ErrorReportListParams{Limit: 1})
	if err != nil || len(reports) != 1 || reports[0].ErrorTypes[0].SampleErrors[0].Identifier != "r299-e0" {
		t.Fatalf("newest report: %d reports, %v", len(reports), err)
	}
	// Filtered lists see only what is kept.
	res, page := e.do("GET", "/v2/core/events?limit=100&types[]=v1.billing.meter.no_meter_found", "")
	if res.StatusCode != 200 || len(page["data"].([]any)) > n {
		t.Errorf("filtered list: %d, %d events for %d records", res.StatusCode, len(page["data"].([]any)), n)
	}
}

// TestReportIndexBuiltForOldRecords: reports stored without index records
// (by earlier versions) are indexed on first use, and filtered lists find
// them.
func TestReportIndexBuiltForOldRecords(t *testing.T) {
	e := newEnv(t, nil, nil)
	ctx := context.Background()
	for i, typ := range []string{stripeapi.EventNoMeterFound, stripeapi.EventErrorReportTriggered, stripeapi.EventNoMeterFound} {
		r := stripeapi.ErrorReport{Type: typ, Created: t0.Add(time.Duration(i) * time.Second), RequestID: fmt.Sprint("req_", i),
			ErrorCount: 1, ErrorTypes: []stripeapi.ErrorReportType{{Code: "no_meter", ErrorCount: 1}}}
		if typ == stripeapi.EventErrorReportTriggered {
			r.Meter = "mtr_old"
		}
		if err := stripeapi.WriteUnindexedReport(ctx, e.db, r); err != nil {
			t.Fatal(err)
		}
	}
	for q, want := range map[string]int{
		"types[]=" + stripeapi.EventNoMeterFound: 2, "object_id=mtr_old": 1, "types[]=" + stripeapi.EventErrorReportTriggered: 1,
		"types[]=v1.other": 0, "object_id=mtr_old&types[]=" + stripeapi.EventNoMeterFound: 0, "": 3,
	} {
		res, body := e.do("GET", "/v2/core/events?"+q, "")
		if res.StatusCode != 200 || len(body["data"].([]any)) != want {
			t.Errorf("%s: %d, %v; want %d events", q, res.StatusCode, body["data"], want)
		}
	}
}

// recordClock reads t0 and runs a hook once, at its first reading from
// inside the engine's Record once armed: after the stream handler read
// the meters' ids, before the engine validates the events.
type recordClock struct{ hook atomic.Pointer[func()] }

func (c *recordClock) Now() time.Time {
	if f := c.hook.Load(); f != nil {
		pcs := make([]uintptr, 64)
		frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
		for fr, more := frames.Next(); more; fr, more = frames.Next() {
			if strings.HasSuffix(fr.Function, "pipeline.(*Engine).Record") {
				if c.hook.CompareAndSwap(f, nil) {
					(*f)()
				}
				break
			}
		}
	}
	return t0
}

// sessionToken opens a meter event session and returns its token.
func (e *env) sessionToken(t *testing.T) string {
	t.Helper()
	res, sess := e.do("POST", "/v2/billing/meter_event_session", "", "Content-Type", "")
	token, _ := sess["authentication_token"].(string)
	if res.StatusCode != 200 || token == "" {
		t.Fatalf("session: %d %v", res.StatusCode, sess)
	}
	return token
}

// A meter created after the stream handler read the meters' ids and
// before the engine validated the events rejects one of them: the report
// committed with the accepted event cannot name that meter, so it takes a
// commit of its own, which reads the ids again and names it.
func TestStreamReportMeterCreatedMeanwhile(t *testing.T) {
	clk := &recordClock{}
	e := newEnvDB(t, "", meterdb.Options{Now: clk.Now}, nil, nil)
	ctx := context.Background()
	if _, err := e.db.CreateMeter(ctx, meter.Params{DisplayName: "c", EventName: "calls", Formula: meter.Sum}); err != nil {
		t.Fatal(err)
	}
	token := e.sessionToken(t)
	// A first report opens the report store.
	e.streamRaw(t, token, `{"events":[{"event_name":"nope","payload":{"stripe_customer_id":"w","value":"1"}}]}`)
	var late meter.Meter
	create := func() {
		var err error
		if late, err = e.db.CreateMeter(ctx, meter.Params{DisplayName: "l", EventName: "late", Formula: meter.Sum}); err != nil {
			t.Error(err)
		}
	}
	clk.hook.Store(&create)
	e.streamRaw(t, token, `{"events":[{"event_name":"calls","identifier":"ok1","payload":{"stripe_customer_id":"c","value":"1"}},`+
		`{"event_name":"late","identifier":"bad1","payload":{"stripe_customer_id":"c","value":"x"}}]}`)
	if late.ID == "" {
		t.Fatal("no meter was created while the request was recorded")
	}
	reports, _, err := stripeapi.ListErrorReports(ctx, e.db, stripeapi.ErrorReportListParams{})
	if err != nil || len(reports) != 2 {
		t.Fatalf("reports %+v, %v", reports, err)
	}
	if r := reports[0]; r.Type != stripeapi.EventErrorReportTriggered || r.Meter != late.ID {
		t.Errorf("the report of an event rejected by meter %s is %s about %q", late.ID, r.Type, r.Meter)
	}
}

// On a replica of a shared log a stream request's error reports take
// their own commit, as before the first report: were they the second
// change that follows the events, a failure to append it would answer
// 500 for counted events, and a retry without identifiers would count
// them twice.
func TestStreamReportSharedLogFailure(t *testing.T) {
	shared := sharedlogtest.New()
	var logs syncBuffer
	e := newEnvDB(t, "", meterdb.Options{Log: shared.Client()},
		&stripeapi.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, nil)
	m, err := e.db.CreateMeter(context.Background(), meter.Params{DisplayName: "c", EventName: "calls", Formula: meter.Sum})
	if err != nil {
		t.Fatal(err)
	}
	token := e.sessionToken(t)
	e.streamRaw(t, token, `{"events":[{"event_name":"nope","payload":{"stripe_customer_id":"w","value":"1"}}]}`)
	shared.SetMaxRecord(400) // room for the events' record, not for the report's
	res, b := e.do("POST", "/v2/billing/meter_event_stream", `{"events":[{"event_name":"calls","payload":{"stripe_customer_id":"c","value":"1"}},`+
		`{"event_name":"calls","payload":{"stripe_customer_id":"c","value":"x"}}]}`,
		"Authorization", "Bearer "+token, "Content-Type", jsonCT)
	if _, n := summaryTotal(t, e.db, m.ID, "c"); n != 1 || res.StatusCode != 200 {
		t.Fatalf("%d events counted, answered %d %v", n, res.StatusCode, b)
	}
	if l := logs.String(); !strings.Contains(l, "error report") {
		t.Errorf("the failed report was not logged:\n%s", l)
	}
}
