package stripeapi

import (
	"net/http"
	"path"
	"strings"
)

// route is one endpoint of the route table.
type route struct {
	// pattern is the endpoint's net/http pattern, "METHOD /path/{id}";
	// the request's path values (r.PathValue) are set when it matches.
	pattern string
	// session makes the route authenticate with a meter event session
	// token (see v2_sessions.go) instead of an API key.
	session bool
	// idemAsync makes the idempotency layer store the route's record
	// without waiting for it to be durable, when the execution did not
	// commit it with the events (call.idemKV: meter events and the meter
	// event stream do, unless no event was accepted): for routes whose
	// repeat is harmless (their events carry identifiers the engine
	// deduplicates, derived from the Idempotency-Key when the request has
	// none), so that a request waits for one commit only. Should such a
	// record be lost in a crash, a repeat is rejected as a duplicate
	// instead of replayed, and is never counted twice.
	idemAsync bool
	// prepare decodes and validates the request and returns the step that
	// executes it. Nothing is executed or stored for a request that fails
	// here, so a retry with corrected parameters may reuse its
	// Idempotency-Key.
	prepare func(c *call) (execFunc, error)

	method string      // of pattern, set by newRouter
	api    *apiVersion // whose conventions the route follows, from its path (apiFor)
	stats  *routeStats // the route's counters, set by newHTTPStats
}

// routeTable lists every endpoint and what the pipeline needs to know of
// it. v1 parameters, and those of v2 GETs (stripe-go sends them
// form-encoded in the query string), are read by formRequest; v2 JSON
// bodies by jsonRequest; the meter event stream has its own decoder.
func (h *handler) routeTable() []*route {
	return []*route{
		{pattern: "GET /v1/billing/meters", prepare: formRequest(h.v1ListMeters)},
		{pattern: "POST /v1/billing/meters", prepare: formRequest(h.v1CreateMeter)},
		{pattern: "GET /v1/billing/meters/{id}", prepare: formRequest(h.v1RetrieveMeter)},
		{pattern: "POST /v1/billing/meters/{id}", prepare: formRequest(h.v1UpdateMeter)},
		{pattern: "POST /v1/billing/meters/{id}/deactivate", prepare: formRequest(h.v1DeactivateMeter)},
		{pattern: "POST /v1/billing/meters/{id}/reactivate", prepare: formRequest(h.v1ReactivateMeter)},
		{pattern: "GET /v1/billing/meters/{id}/event_summaries", prepare: formRequest(h.v1ListEventSummaries)},
		{pattern: "POST /v1/billing/meter_events", idemAsync: true, prepare: formRequest(h.v1CreateMeterEvent)},
		{pattern: "POST /v1/billing/meter_event_adjustments", prepare: formRequest(h.v1CreateMeterEventAdjustment)},

		{pattern: "POST /v2/billing/meter_events", idemAsync: true, prepare: jsonRequest(h.v2CreateMeterEvent)},
		{pattern: "POST /v2/billing/meter_event_adjustments", prepare: jsonRequest(h.v2CreateMeterEventAdjustment)},
		{pattern: "POST /v2/billing/meter_event_session", prepare: jsonRequest(h.v2CreateSession)},
		{pattern: "POST /v2/billing/meter_event_stream", session: true, idemAsync: true, prepare: h.v2Stream},
		{pattern: "GET /v2/core/events", prepare: formRequest(h.v2ListEvents)},
		{pattern: "GET /v2/core/events/{id}", prepare: formRequest(h.v2RetrieveEvent)},
	}
}

// apiFor returns the API version whose conventions apply to requests for
// path: the route's, and before any route matched, for authentication
// failures and unknown routes.
func apiFor(path string) *apiVersion {
	if strings.HasPrefix(path, "/v2/") {
		return apiV2
	}
	return apiV1
}

// router finds the route of a request with an http.ServeMux holding the
// route table. The mux only matches: what it would write itself (404,
// 405, redirects to a cleaned path) never reaches the client, as an
// unknown route is answered by the pipeline, after authentication, in
// Stripe's shape.
type router struct {
	mux *http.ServeMux
}

func newRouter(table []*route) *router {
	mux := http.NewServeMux()
	for _, rt := range table {
		method, p, _ := strings.Cut(rt.pattern, " ")
		rt.method, rt.api = method, apiFor(p)
		mux.Handle(rt.pattern, rt)
	}
	// Every other path, with any method, matches nothing.
	mux.Handle("/", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	return &router{mux: mux}
}

// match sets c.rt to the route of c.r, or leaves it nil for an unknown
// route; a matched request's path values are set. Paths that are not
// clean (the mux would redirect them) and a HEAD for a GET route (the mux
// would serve it) match nothing.
func (rr *router) match(c *call) {
	if !isCleanPath(c.r.URL.EscapedPath()) {
		return
	}
	rr.mux.ServeHTTP(matchWriter{c}, c.r)
}

// ServeHTTP, called by the router's mux for a match, reports rt as the
// route of the request.
func (rt *route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if m, ok := w.(matchWriter); ok && r.Method == rt.method {
		m.c.rt = rt
	}
}

// matchWriter is the ResponseWriter the router's mux gets: it carries the
// call whose route is found, and discards anything written.
type matchWriter struct{ c *call }

func (matchWriter) Header() http.Header         { return http.Header{} }
func (matchWriter) Write(b []byte) (int, error) { return len(b), nil }
func (matchWriter) WriteHeader(int)             {}

// isCleanPath reports whether p is a path http.ServeMux matches as it is,
// without redirecting to a cleaned form.
func isCleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	clean := path.Clean(p)
	if p[len(p)-1] == '/' && clean != "/" {
		clean += "/"
	}
	return clean == p
}
