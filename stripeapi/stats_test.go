package stripeapi_test

import (
	"net/http"
	"testing"

	"github.com/meterdb/meterdb/stripeapi"
)

// routeStats returns the counters of route, failing the test when the
// handler has no such route.
func routeStats(t *testing.T, s stripeapi.HTTPStats, route string) stripeapi.RouteStats {
	t.Helper()
	for _, r := range s.Routes {
		if r.Route == route {
			return r
		}
	}
	t.Fatalf("no route %q in %+v", route, s.Routes)
	return stripeapi.RouteStats{}
}

// wantResponses checks a route's responses by status and that each has a
// duration.
func wantResponses(t *testing.T, s stripeapi.HTTPStats, route string, want map[int]int64) {
	t.Helper()
	r := routeStats(t, s, route)
	var n int64
	for code, c := range want {
		if r.Responses[code] != c {
			t.Errorf("%s: %d responses with status %d, want %d (all: %v)", route, r.Responses[code], code, c, r.Responses)
		}
		n += c
	}
	if len(r.Responses) != len(want) {
		t.Errorf("%s: responses %v, want %v", route, r.Responses, want)
	}
	if got := r.Duration.Count(); got != uint64(n) || (n > 0 && r.Duration.Sum <= 0) {
		t.Errorf("%s: %d durations summing to %v s, want %d", route, got, r.Duration.Sum, n)
	}
}

// TestHTTPStats sends known requests and checks that each counter moved by
// exactly what it should.
func TestHTTPStats(t *testing.T) {
	e := newEnv(t, nil, nil)
	if _, ok := stripeapi.Stats(http.NotFoundHandler()); ok {
		t.Error("Stats of another handler")
	}
	s0, ok := stripeapi.Stats(e.h)
	if !ok {
		t.Fatal("Stats of a handler NewHandler returned: not ok")
	}
	if last := s0.Routes[len(s0.Routes)-1]; last.Route != "other" || len(last.Responses) != 0 {
		t.Errorf("last route %+v", last)
	}
	createMeter(t, e.client(testKey), "api_call", "sum")
	for _, body := range []string{
		"event_name=api_call&payload[stripe_customer_id]=c&payload[value]=1",
		"event_name=api_call&payload[stripe_customer_id]=c&payload[value]=2",
		"event_name=nope&payload[stripe_customer_id]=c&payload[value]=1",
	} {
		e.do("POST", "/v1/billing/meter_events", body)
	}
	e.do("GET", "/v1/billing/meters", "", "Authorization", "Bearer sk_test_")
	e.do("GET", "/v1/billing/meters", "")
	e.do("GET", "/v1/nowhere", "")
	e.do("GET", "/v1/nowhere/else", "")
	_, sess := e.do("POST", "/v2/billing/meter_event_session", "", "Content-Type", "")
	token, _ := sess["authentication_token"].(string)
	res, body := e.do("POST", "/v2/billing/meter_event_stream",
		`{"events":[{"event_name":"api_call","payload":{"stripe_customer_id":"c","value":"5"}},`+
			`{"event_name":"nope","payload":{"stripe_customer_id":"c","value":"5"}},`+
			`{"event_name":"api_call","payload":{"stripe_customer_id":"d","value":"5"}}]}`,
		"Content-Type", jsonCT, "Authorization", "Bearer "+token)
	if res.StatusCode != 200 {
		t.Fatalf("stream: %d %v", res.StatusCode, body)
	}
	e.do("POST", "/v2/billing/meter_event_stream", `{"events":[]}`, "Content-Type", jsonCT, "Authorization", "Bearer "+token)

	s, _ := stripeapi.Stats(e.h)
	wantResponses(t, s, "POST /v1/billing/meters", map[int]int64{200: 1})
	wantResponses(t, s, "POST /v1/billing/meter_events", map[int]int64{200: 2, 400: 1})
	wantResponses(t, s, "GET /v1/billing/meters", map[int]int64{200: 1, 401: 1})
	wantResponses(t, s, "other", map[int]int64{404: 2})
	wantResponses(t, s, "POST /v2/billing/meter_event_session", map[int]int64{200: 1})
	wantResponses(t, s, "POST /v2/billing/meter_event_stream", map[int]int64{200: 1, 400: 1})
	wantResponses(t, s, "GET /v1/billing/meters/{id}", nil)
	if s.StreamEventsAccepted != 2 || s.StreamEventsRejected != 1 || s.Throttled != 0 {
		t.Errorf("stream events %d accepted, %d rejected; %d throttled", s.StreamEventsAccepted, s.StreamEventsRejected, s.Throttled)
	}
	if len(s.Routes) != len(s0.Routes) {
		t.Errorf("%d routes, then %d", len(s0.Routes), len(s.Routes))
	}
}

// TestHTTPStatsThrottled checks that 429s count as throttled, on their
// route.
func TestHTTPStatsThrottled(t *testing.T) {
	e := newEnv(t, &stripeapi.Options{RateLimit: 1, RateBurst: 2}, nil)
	for range 3 {
		e.do("GET", "/v1/billing/meters", "")
	}
	s, _ := stripeapi.Stats(e.h)
	wantResponses(t, s, "GET /v1/billing/meters", map[int]int64{200: 2, 429: 1})
	if s.Throttled != 1 {
		t.Errorf("throttled %d, want 1", s.Throttled)
	}
}
