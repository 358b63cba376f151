package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/dashboard"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/stripeapi"
)

const testKey = "sk_test_dashboard"

// t0 is the tests' time: a Tuesday, 14:37 UTC, so that the 48 hours and
// 35 days of the charts cross midnights and a month boundary.
var t0 = time.Date(2026, 3, 10, 14, 37, 0, 0, time.UTC)

// clock is a settable clock shared by a DB and its handlers.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a file-backed DB with known usage, served as meterd serves it:
// the Stripe API at the root and the dashboard under /dashboard/.
type env struct {
	t      *testing.T
	clk    *clock
	db     *meterdb.DB
	srv    *httptest.Server
	meters map[string]meter.Meter // by event name
	// customers with usage, among them one whose id needs escaping in
	// paths and HTML.
	customers []string
}

// dashURL is the dashboard's root on the test server.
func (e *env) dashURL() string { return e.srv.URL + "/dashboard/" }

// newEnv opens a DB in t.TempDir(), fills it and starts the server. keys
// are the dashboard's and the API's keys (none: open).
func newEnv(t *testing.T, keys ...string) *env {
	t.Helper()
	clk := &clock{t: t0}
	db, err := meterdb.Open(filepath.Join(t.TempDir(), "usage.db"), &meterdb.Options{Now: clk.Now, NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	api, err := stripeapi.NewHandler(db, &stripeapi.Options{APIKeys: keys, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	dash, err := dashboard.NewHandler(db, &dashboard.Options{APIKeys: keys, Now: clk.Now, Refresh: -1})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", api)
	mux.Handle("/dashboard/", http.StripPrefix("/dashboard", dash))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	e := &env{t: t, clk: clk, db: db, srv: srv, meters: map[string]meter.Meter{}}
	e.fill()
	return e
}

// fill creates five meters (sum, last, count, a deactivated sum meter and
// a sum meter with values of 15 digits whose sums no float64 holds) and
// records events for five customers spread over the last 34 days, denser
// in the last 48 hours, some with negative values; it cancels one event and sends a stream request with two
// invalid events, which leaves two error reports.
func (e *env) fill() {
	t, ctx := e.t, context.Background()
	for _, p := range []meter.Params{
		{DisplayName: "API calls", EventName: "api_calls", Formula: meter.Sum},
		{DisplayName: "Storage (GB)", EventName: "storage_gb", Formula: meter.Last},
		{DisplayName: "Logins", EventName: "logins", Formula: meter.Count},
		{DisplayName: "Legacy exports", EventName: "legacy_exports", Formula: meter.Sum},
		{DisplayName: "LLM tokens", EventName: "tokens", Formula: meter.Sum},
	} {
		m, err := e.db.CreateMeter(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		e.meters[p.EventName] = m
	}
	e.customers = []string{"cus_alpha", "cus_beta", "cus_gamma", "cus_delta", `acme/eu "<b>" & co`}
	rng := rand.New(rand.NewPCG(12, 34))
	var evs []event.Event
	add := func(name, cus string, ts time.Time, v int64) {
		evs = append(evs, event.Event{Name: name, Timestamp: ts, Identifier: fmt.Sprintf("ev_%d", len(evs)),
			Payload: map[string]string{"stripe_customer_id": cus, "value": strconv.FormatInt(v, 10)}})
	}
	now := e.clk.Now()
	for ci, cus := range e.customers {
		for d := range 34 { // one day in three or so, per customer
			if rng.IntN(3) != 0 {
				continue
			}
			ts := now.Add(-time.Duration(d)*24*time.Hour - time.Duration(rng.IntN(86400))*time.Second)
			add("api_calls", cus, ts, rng.Int64N(1000)*int64(ci+1))
			add("logins", cus, ts, 1)
		}
		for h := range 48 { // hourly detail for the last two days
			if rng.IntN(2) != 0 {
				continue
			}
			ts := now.Add(-time.Duration(h)*time.Hour - time.Duration(rng.IntN(3600))*time.Second)
			add("api_calls", cus, ts, rng.Int64N(100)-20) // some negative
			add("storage_gb", cus, ts, rng.Int64N(500))
		}
		add("legacy_exports", cus, now.Add(-20*24*time.Hour), int64(ci+1)*100)
	}
	// Values of 15 digits: their sums leave the range of a float64's
	// exact integers, so only an exact rendering shows them right.
	for range 10 { // 9_999_999_999_999_997 in one hour: no float64 holds it
		add("tokens", "cus_alpha", now.Add(-3*time.Hour), 999_999_999_999_999)
	}
	add("tokens", "cus_alpha", now.Add(-3*time.Hour), 7)
	add("tokens", "cus_alpha", now.Add(-27*time.Hour), -999_999_999_999_999)
	add("tokens", "cus_beta", now.Add(-5*24*time.Hour), 123_456_789_012_345)
	add("tokens", "cus_gamma", now.Add(-40*time.Minute), 900_719_925_474_098) // totals of today and 30 days: odd, above 2^53
	cancelled := len(evs)
	add("api_calls", "cus_beta", now.Add(-2*time.Hour), 5000)
	errs, err := e.db.RecordBatch(ctx, evs)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("event %d (%+v): %v", i, evs[i], err)
		}
	}
	// Cancel one event of the last hours.
	if err := e.db.Cancel(ctx, "api_calls", evs[cancelled].Identifier); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.DeactivateMeter(ctx, e.meters["legacy_exports"].ID); err != nil {
		t.Fatal(err)
	}
	// A stream request with one valid and two invalid events.
	sess := e.api("POST", "/v2/billing/meter_event_session", "", testKey)
	token, _ := sess["authentication_token"].(string)
	if token == "" {
		t.Fatalf("no session token: %v", sess)
	}
	e.api("POST", "/v2/billing/meter_event_stream", `{"events":[
		{"event_name":"api_calls","identifier":"s1","payload":{"stripe_customer_id":"cus_alpha","value":"7"}},
		{"event_name":"api_calls","identifier":"s2","payload":{"stripe_customer_id":"cus_alpha","value":"seven"}},
		{"event_name":"no_such_meter","identifier":"s3","payload":{"stripe_customer_id":"cus_alpha","value":"1"}}]}`, token)
}

// api sends a JSON request to the Stripe API and decodes the answer,
// failing the test unless it is a 200.
func (e *env) api(method, path, body, key string) map[string]any {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		e.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	return out
}

// httpClient returns a client with a cookie jar that does not follow
// redirects.
func httpClient(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
