package stripeapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/stripeapi"
	"github.com/stripe/stripe-go/v85"
)

const jsonCT = "application/json"

func TestV2HTTP(t *testing.T) {
	e := newEnv(t, nil, nil)
	m := createMeter(t, e.client(testKey), "api_call", "sum")
	for _, tt := range []struct {
		name, path, body string
		status           int
		typ, code, want  string // want: a substring of the body
	}{
		{"nulls are absent", "/v2/billing/meter_events",
			`{"event_name":"api_call","identifier":null,"payload":{"stripe_customer_id":"c","value":"1"},"timestamp":null}`,
			200, "", "", `"timestamp": "2026-03-01T12:30:00.000Z"`},
		{"fraction and offset", "/v2/billing/meter_events",
			`{"event_name":"api_call","payload":{"stripe_customer_id":"c","value":"2"},"timestamp":"2026-03-01T13:29:59.999+01:00"}`,
			200, "", "", `"timestamp": "2026-03-01T12:29:59.000Z"`},
		{"unknown parameter", "/v2/billing/meter_events", `{"event_name":"api_call","payload":{"stripe_customer_id":"c"},"extra":1}`,
			400, "invalid_request_error", "parameter_unknown", "extra"},
		{"malformed", "/v2/billing/meter_events", `{"event_name":`, 400, "invalid_request_error", "parameter_invalid", "Invalid JSON"},
		{"payload value not a string", "/v2/billing/meter_events", `{"event_name":"api_call","payload":{"stripe_customer_id":"c","value":1}}`,
			400, "invalid_request_error", "parameter_invalid", "payload[value]"},
		{"bad timestamp", "/v2/billing/meter_events", `{"event_name":"api_call","payload":{"stripe_customer_id":"c"},"timestamp":"now"}`,
			400, "invalid_request_error", "parameter_invalid", "RFC 3339"},
		{"an empty object before a string in an array", "/v2/billing/meter_events",
			`{"event_name":"api_call","payload":{"stripe_customer_id":"c"},"extra":[{},"x"]}`,
			400, "invalid_request_error", "parameter_unknown", "extra"},
		{"a field twice", "/v2/billing/meter_events",
			`{"event_name":"api_call","payload":{"stripe_customer_id":"c","value":"1"},"event_name":"api_call"}`,
			400, "invalid_request_error", "parameter_invalid", "Invalid event_name: given more than once"},
		{"a payload key twice", "/v2/billing/meter_events",
			`{"event_name":"api_call","payload":{"stripe_customer_id":"c","value":"1","value":"2"}}`,
			400, "invalid_request_error", "parameter_invalid", "Invalid payload[value]: given more than once"},
		{"unknown route", "/v2/billing/nothing", `{}`, 404, "invalid_request_error", "not_found", "Unrecognized request URL"},
		{"session with parameters", "/v2/billing/meter_event_session", `{"ttl":1}`, 400, "invalid_request_error", "parameter_unknown", "ttl"},
		{"stream with an API key", "/v2/billing/meter_event_stream", `{"events":[]}`, 401, "invalid_request_error", "", "session token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, body := e.do("POST", tt.path, tt.body, "Content-Type", jsonCT)
			if res.StatusCode != tt.status || errField(body, "type") != tt.typ || errField(body, "code") != tt.code {
				t.Fatalf("status %d, body %v", res.StatusCode, body)
			}
			if eo, ok := body["error"].(map[string]any); ok {
				if _, has := eo["param"]; has {
					t.Errorf("v2 error with a param field: %v", eo)
				}
				if !strings.Contains(errField(body, "message"), tt.want) {
					t.Errorf("message %q lacks %q", errField(body, "message"), tt.want)
				}
			} else if !strings.Contains(fmt.Sprint(body), strings.Trim(strings.SplitN(tt.want, ": ", 2)[1], `"`)) {
				t.Errorf("body %v lacks %s", body, tt.want)
			}
		})
	}
	if v, n := summaryTotal(t, e.db, m.ID, "c"); v != 3 || n != 2 {
		t.Errorf("total %d over %d events", v, n)
	}

	// The stream decodes escapes and reports shape errors by position.
	_, sess := e.do("POST", "/v2/billing/meter_event_session", "", "Content-Type", "")
	token, _ := sess["authentication_token"].(string)
	auth := "Bearer " + token
	res, body := e.do("POST", "/v2/billing/meter_event_stream",
		`{"events":[{"event_name":"api\u005fcall","identifier":"esc","payload":{"stripe_customer_id":"c\u00e9","value":"5"}}]}`,
		"Content-Type", jsonCT, "Authorization", auth)
	if res.StatusCode != 200 || len(body) != 0 {
		t.Fatalf("stream: %d %v", res.StatusCode, body)
	}
	if v, _ := summaryTotal(t, e.db, m.ID, "cé"); v != 5 {
		t.Errorf("escaped event counted %d", v)
	}
	for _, body := range []string{`{"events":[{"event_name":`, `{"events":[`, `{"events":`,
		`{"events":[{"event_name":"api_call","payload":{"a":`, `{"events":[{"event_name":"api_call","payload":`} {
		res, got := e.do("POST", "/v2/billing/meter_event_stream", body, "Content-Type", jsonCT, "Authorization", auth)
		if res.StatusCode != 400 || !strings.Contains(errField(got, "message"), "malformed JSON") {
			t.Errorf("truncated %s: %d %v", body, res.StatusCode, got)
		}
	}
	for body, param := range map[string]string{
		`{"events":[{"event_name":"api_call","payload":{"stripe_customer_id":"c"}}],"events":[]}`:              "events",
		`{"events":[{"event_name":"api_call","payload":{"stripe_customer_id":"c"},"payload":{}}]}`:             "events[0][payload]",
		`{"events":[{"event_name":"api_call","payload":{"stripe_customer_id":"c","stripe_customer_id":"d"}}]}`: "events[0][payload][stripe_customer_id]",
	} {
		res, got := e.do("POST", "/v2/billing/meter_event_stream", body, "Content-Type", jsonCT, "Authorization", auth)
		if res.StatusCode != 400 || errField(got, "message") != "Invalid "+param+": given more than once." {
			t.Errorf("%s: %d %v", body, res.StatusCode, got)
		}
	}
	res, body = e.do("POST", "/v2/billing/meter_event_stream",
		`{"events":[{"event_name":"api_call","payload":{"stripe_customer_id":"c"}},{"event_name":"api_call","payload":{"value":"1"},"color":"red"}]}`,
		"Content-Type", jsonCT, "Authorization", auth)
	if res.StatusCode != 400 || errField(body, "code") != "parameter_unknown" || !strings.Contains(errField(body, "message"), "events[1][color]") {
		t.Fatalf("unknown event field: %d %v", res.StatusCode, body)
	}
	res, body = e.do("POST", "/v2/billing/meter_event_stream",
		`{"events":[{"event_name":"api_call","payload":{"stripe_customer_id":"c","note":"`+strings.Repeat("x", 101)+`"}}]}`,
		"Content-Type", jsonCT, "Authorization", auth)
	if res.StatusCode != 400 || errField(body, "code") != "string_too_long" || !strings.Contains(errField(body, "message"), "events[0]") {
		t.Fatalf("long payload value: %d %v", res.StatusCode, body)
	}
}

// TestV2SessionSurvivesReopen streams with a session created before the
// database was closed and reopened.
func TestV2SessionSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	ctx := context.Background()
	serve := func() (*meterdb.DB, *httptest.Server) {
		db, err := meterdb.Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		h, err := stripeapi.NewHandler(db, nil)
		if err != nil {
			t.Fatal(err)
		}
		return db, httptest.NewServer(h)
	}
	db, srv := serve()
	sc := newClient(srv.URL, testKey, 0)
	m := createMeter(t, sc, "api_call", "sum")
	sess, err := sc.V2BillingMeterEventSessions.Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, srv = serve()
	defer func() { srv.Close(); db.Close() }()
	err = newClient(srv.URL, sess.AuthenticationToken, 0).V2BillingMeterEventStreams.Create(ctx,
		&stripe.V2BillingMeterEventStreamCreateParams{Events: []*stripe.V2BillingMeterEventStreamCreateEventParams{
			streamEvent("api_call", "after-reopen", "cus_a", "4")}})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := summaryTotal(t, db, m.ID, "cus_a"); v != 4 {
		t.Errorf("total %d", v)
	}
}

// TestV2StreamConcurrent streams from many goroutines, with identifiers
// shared between requests, whose events meet in the pipeline's group
// commits: every identifier counts once and every repeat is reported.
func TestV2StreamConcurrent(t *testing.T) {
	e := newEnv(t, nil, nil)
	sc := e.client(testKey)
	m := createMeter(t, sc, "api_call", "sum")
	stream, _ := e.streamClient(t, sc)
	const workers, requests = 8, 10
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range requests {
				var evs []*stripe.V2BillingMeterEventStreamCreateEventParams
				for i := range 50 {
					// Workers w and w^1 send the same identifiers.
					evs = append(evs, streamEvent("api_call", fmt.Sprintf("p%d-r%d-e%d", w/2, r, i), "cus_x", "1"))
				}
				if err := stream.V2BillingMeterEventStreams.Create(context.Background(),
					&stripe.V2BillingMeterEventStreamCreateParams{Events: evs}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if v, n := summaryTotal(t, e.db, m.ID, "cus_x"); v != workers/2*requests*50 || n != v {
		t.Errorf("counted %d over %d events, want %d", v, n, workers/2*requests*50)
	}
	var dups int64
	after := ""
	for {
		reports, more, err := stripeapi.ListErrorReports(context.Background(), e.db, stripeapi.ErrorReportListParams{Limit: 100, After: after})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range reports {
			for _, et := range r.ErrorTypes {
				if et.Code != "duplicate_meter_event" {
					t.Errorf("code %s", et.Code)
				}
				dups += et.ErrorCount
			}
		}
		if !more {
			break
		}
		after = reports[len(reports)-1].ID
	}
	if dups != workers/2*requests*50 {
		t.Errorf("%d duplicates reported, want %d", dups, workers/2*requests*50)
	}
	if res, _ := e.do("GET", "/v2/core/events?limit=0", ""); res.StatusCode != http.StatusBadRequest {
		t.Errorf("limit=0: %d", res.StatusCode)
	}
}

// A stream request with an Idempotency-Key commits the key's record with
// its events, in one commit of the file, as v1 meter events do: a crash
// keeps both or neither, and nothing is written after the response.
func TestStreamIdempotencyRecordCommitsWithEvents(t *testing.T) {
	e := newEnvDB(t, filepath.Join(t.TempDir(), "m.db"), meterdb.Options{CheckpointInterval: time.Hour},
		&stripeapi.Options{APIKeys: []string{testKey}}, nil)
	db := e.db
	res, mo := e.do("POST", "/v1/billing/meters", "display_name=a&event_name=calls&default_aggregation[formula]=sum")
	if res.StatusCode != 200 {
		t.Fatalf("meter: %d %v", res.StatusCode, mo)
	}
	_, sess := e.do("POST", "/v2/billing/meter_event_session", "", "Content-Type", "")
	auth := "Bearer " + sess["authentication_token"].(string)
	commits := func() uint64 { return db.Stats().CommitDuration.Count() }
	// stream sends body with an Idempotency-Key, counts the commits it
	// made, replays it, and checks the events accepted in all.
	stream := func(path, body, key string, wantCommits int, wantAccepted int64) {
		t.Helper()
		before := commits()
		res, got := e.do("POST", "/v2/billing/meter_event_stream", body, "Content-Type", jsonCT, "Authorization", auth, "Idempotency-Key", key)
		if res.StatusCode != 200 || len(got) != 0 {
			t.Fatalf("stream, %s: %d %v", path, res.StatusCode, got)
		}
		time.Sleep(300 * time.Millisecond) // a record stored after the response would be committed by now
		if n := commits() - before; n != uint64(wantCommits) {
			t.Fatalf("%d commits for one stream request on the %s path, want %d", n, path, wantCommits)
		}
		res, again := e.do("POST", "/v2/billing/meter_event_stream", body, "Content-Type", jsonCT, "Authorization", auth, "Idempotency-Key", key)
		if res.StatusCode != 200 || len(again) != 0 || res.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay, %s path: %d %v %v", path, res.StatusCode, again, res.Header)
		}
		if n := db.Stats().EventsAccepted; n != wantAccepted {
			t.Fatalf("%d events accepted, want %d", n, wantAccepted)
		}
	}
	// The typed path: one commit, the events and the key's record.
	stream("typed", `{"events":[{"event_name":"calls","payload":{"stripe_customer_id":"c","value":"2"}},{"event_name":"calls","payload":{"stripe_customer_id":"d","value":"3"}}]}`,
		"batch-1", 1, 2)

	// The map path (an event without a meter): the events, the key's
	// record and the error report share one commit (after a first report,
	// which opens the report store in a commit of its own).
	warm := `{"events":[{"event_name":"nope","payload":{"stripe_customer_id":"w","value":"1"}}]}`
	if res, got := e.do("POST", "/v2/billing/meter_event_stream", warm, "Content-Type", jsonCT, "Authorization", auth); res.StatusCode != 200 {
		t.Fatalf("stream, first report: %d %v", res.StatusCode, got)
	}
	stream("map", `{"events":[{"event_name":"calls","payload":{"stripe_customer_id":"c","value":"5"}},{"event_name":"nope","payload":{"stripe_customer_id":"d","value":"1"}}]}`,
		"batch-2", 1, 3)
	reports, _, err := stripeapi.ListErrorReports(context.Background(), db, stripeapi.ErrorReportListParams{})
	if err != nil || len(reports) != 2 || reports[0].IdempotencyKey != "batch-2" {
		t.Fatalf("reports %+v, %v: want the map path's, newest, after the first", reports, err)
	}
	// A report about an existing meter names it, read before the commit.
	stream("map", `{"events":[{"event_name":"calls","payload":{"stripe_customer_id":"c","value":"4"}},{"event_name":"calls","payload":{"stripe_customer_id":"d","value":"x"}}]}`,
		"batch-3", 1, 4)
	reports, _, err = stripeapi.ListErrorReports(context.Background(), db, stripeapi.ErrorReportListParams{})
	if err != nil || len(reports) != 3 || reports[0].IdempotencyKey != "batch-3" ||
		reports[0].Type != stripeapi.EventErrorReportTriggered || reports[0].Meter != mo["id"] {
		t.Fatalf("reports %+v, %v: want batch-3's about meter %v, newest", reports, err, mo["id"])
	}
}
