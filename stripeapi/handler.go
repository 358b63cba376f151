package stripeapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

// maxIdempotencyKey is the longest Idempotency-Key accepted, in bytes.
const maxIdempotencyKey = 255

// handler serves the API of one DB. It is safe for concurrent use.
type handler struct {
	db      *meterdb.DB
	opts    Options
	log     *slog.Logger
	routes  []*route
	idem    *idempotency
	sess    *sessions
	names   *nameCache
	combine *combiner
	slots   chan struct{} // one token per request being served
	limiter *rateLimiter  // nil without Options.RateLimit
	stats   *httpStats    // see Stats
	bodies  *bodyBudget   // bytes of request bodies held

	// writeReports stores error reports and their index records: the DB's
	// WriteKV, replaced by tests to make those writes fail.
	writeReports func(context.Context, []meterdb.KVWrite) error
	reports      *reportStore

	// execHook, when set (by tests), runs just before each execution step.
	execHook func(*http.Request)
}

// route is one endpoint: a method, a path pattern and the API version
// whose conventions it follows.
type route struct {
	method  string
	pattern []string // path segments; "{name}" captures one whole segment
	api     *apiVersion
	// session makes the route authenticate with a meter event session
	// token (see v2_sessions.go) instead of an API key.
	session bool
	// idemAsync makes the idempotency layer store the route's record
	// without waiting for it to be durable: for routes whose repeat is
	// harmless (meter events and the meter event stream, whose events carry
	// identifiers the engine deduplicates, derived from the Idempotency-Key
	// when the request has none), so that a request waits for one commit
	// only. Should the record be lost in a crash, a repeat is rejected as a
	// duplicate instead of replayed, and is never counted twice.
	idemAsync bool
	// prepare decodes and validates the request and returns the step that
	// executes it. Nothing is executed or stored for a request that fails
	// here, so a retry with corrected parameters may reuse its
	// Idempotency-Key.
	prepare func(c *call) (execFunc, error)
	stats   *routeStats // the route's counters, set by newHTTPStats
}

// repeatable marks r as a route whose repeat is harmless (see idemAsync).
func repeatable(r *route) *route {
	r.idemAsync = true
	return r
}

// execFunc executes a validated request and returns the object to send
// with status 200, or an error for the API version to render.
type execFunc func(ctx context.Context) (any, error)

// apiVersion holds what differs between API versions at the level of the
// pipeline: the shape of error bodies. Decoding belongs to each version's
// route constructor (see v1Route).
type apiVersion struct {
	name      string
	errorBody func(*apiError) any
}

// call is the state of one request as it moves through the pipeline.
type call struct {
	h       *handler
	w       http.ResponseWriter
	r       *http.Request
	id      string // Request-Id
	api     *apiVersion
	key     apiKey
	now     time.Time
	rt      *route
	matched *route   // the route of the method and path, before authentication; nil for none
	vals    []string // path values, in the order of the pattern's captures
	idemKey string   // Idempotency-Key of a POST, trimmed; "" when absent
	// canonical is a deterministic encoding of the decoded parameters,
	// set by the decoder; idempotency compares it between requests.
	canonical []byte
	// idem, set by the idempotency layer for a request with an
	// Idempotency-Key, builds the key's record for a successful result v;
	// a route that records events commits it with them (recordKV) and the
	// layer then stores nothing more.
	idem       func(v any) (meterdb.KV, error)
	idemStored bool
}

// response is a rendered response: what is written, and what an
// idempotency record stores.
type response struct {
	status   int
	body     []byte
	stream   streamed // writes the body instead of body, for large GET responses
	retry    *bool    // Stripe-Should-Retry, when set
	replayed bool
}

// NewHandler returns an http.Handler serving the Stripe Billing Meters API
// (v1 and v2, see the package documentation) from db. Mount it on a mux at "/" or, for a prefix, with
// http.StripPrefix:
//
//	mux.Handle("/stripe/", http.StripPrefix("/stripe", h))
//
// The handler does not own db: closing db is the caller's job, after the
// server stopped sending requests to the handler. opts may be nil; the
// handler keeps a copy.
func NewHandler(db *meterdb.DB, opts *Options) (http.Handler, error) {
	if db == nil {
		return nil, errors.New("stripeapi: NewHandler with a nil DB")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	h := &handler{
		db:      db,
		opts:    o,
		log:     o.Logger,
		slots:   make(chan struct{}, o.MaxConcurrentRequests),
		bodies:  &bodyBudget{max: o.MaxBodyMemory},
		idem:    newIdempotency(db, o.IdempotencyTTL),
		sess:    newSessions(db),
		names:   newNameCache(),
		combine: newCombiner(db),
	}
	h.writeReports = db.WriteKV
	h.reports = &reportStore{db: db, max: o.MaxErrorReportBytes,
		write: func(ctx context.Context, ws []meterdb.KVWrite) error { return h.writeReports(ctx, ws) }}
	if o.RateLimit > 0 {
		h.limiter = newRateLimiter(o.RateLimit, o.RateBurst)
	}
	h.routes = append(h.routes, h.v1Routes()...)
	h.routes = append(h.routes, h.v2Routes()...)
	h.stats = newHTTPStats(h.routes)
	return h, nil
}

// apiFor returns the API version whose conventions apply to requests for
// path before any route matched: for authentication failures and unknown
// routes.
func (h *handler) apiFor(path string) *apiVersion {
	if strings.HasPrefix(path, "/v2/") {
		return apiV2
	}
	return apiV1
}

// ServeHTTP runs the pipeline: request id, routing, authentication (an API
// key, or a session token for the meter event stream; unknown routes are
// reported after API key authentication), the rate limit, decoding and
// validation (which read the body), admission (a slot among
// MaxConcurrentRequests), execution (through the idempotency layer for
// POST), and one JSON writer.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	c := &call{h: h, w: w, r: r, id: newRequestID(), api: h.apiFor(r.URL.Path), now: h.opts.Now()}
	w.Header().Set("Request-Id", c.id)
	res := h.serve(c)
	c.write(res)
	h.stats.observe(c.matched, res.status, time.Since(start))
	h.log.LogAttrs(r.Context(), slog.LevelDebug, "request",
		slog.String("request_id", c.id), slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.Int("status", res.status), slog.Bool("replayed", res.replayed), slog.Duration("took", time.Since(start)))
}

func (h *handler) serve(c *call) response {
	if n := headerBytes(c.r); n > h.opts.MaxHeaderBytes {
		return c.errorResponse(invalidRequest(http.StatusRequestHeaderFieldsTooLarge, "", "",
			fmt.Sprintf("Request headers too large: %d bytes, the limit is %d.", n, h.opts.MaxHeaderBytes)))
	}
	rt, vals := h.match(c.r)
	c.matched = rt
	var key apiKey
	var err error
	if rt != nil && rt.session {
		key, err = h.sess.authenticate(c)
	} else {
		key, err = h.authenticate(c.r)
	}
	if err != nil {
		return c.errorResponse(err)
	}
	c.key = key
	if !h.limiter.allow(key.scope, c.now) {
		return c.errorResponse(errRateLimited())
	}
	if rt == nil {
		return c.errorResponse(errNotFoundRoute(c.r.Method, c.r.URL.Path))
	}
	c.rt, c.vals, c.api = rt, vals, rt.api
	if c.r.Method == http.MethodPost {
		c.idemKey = strings.TrimSpace(c.r.Header.Get("Idempotency-Key"))
		if len(c.idemKey) > maxIdempotencyKey {
			c.idemKey = ""
			return c.errorResponse(invalidRequest(http.StatusBadRequest, "", "",
				fmt.Sprintf("Idempotency-Key is %d characters long; it must be at most %d characters.",
					len(strings.TrimSpace(c.r.Header.Get("Idempotency-Key"))), maxIdempotencyKey)))
		}
	}
	// Decoding reads the body (bounded by MaxBodyBytes and MaxBodyMemory,
	// and in time by the server's ReadTimeout) before the request takes a
	// slot: a client that stalls mid-body holds a connection, never a slot.
	if c.r.Body != nil && c.r.Body != http.NoBody {
		bb := &budgetBody{ReadCloser: c.r.Body, b: h.bodies}
		c.r.Body = bb
		defer bb.release()
	}
	run, err := rt.prepare(c)
	if err != nil {
		return c.errorResponse(err)
	}
	if !h.admit(c.r.Context()) {
		return c.errorResponse(errRateLimited())
	}
	defer func() { <-h.slots }()
	if c.idemKey != "" {
		return h.idem.do(c, run)
	}
	return c.execute(run)
}

// headerBytes is the size of r's request line and headers, counted as
// net/http counts them for http.Server.MaxHeaderBytes.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// match finds the route for r's method and path and returns it with the
// captured path values.
func (h *handler) match(r *http.Request) (*route, []string) {
	segs := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
next:
	for _, rt := range h.routes {
		if rt.method != r.Method || len(rt.pattern) != len(segs) {
			continue
		}
		var vals []string
		for i, p := range rt.pattern {
			if strings.HasPrefix(p, "{") {
				v, err := url.PathUnescape(segs[i])
				if err != nil || v == "" {
					continue next
				}
				vals = append(vals, v)
			} else if p != segs[i] {
				continue next
			}
		}
		return rt, vals
	}
	return nil, nil
}

// pathValue returns the i-th value captured from the path.
func (c *call) pathValue(i int) string { return c.vals[i] }

// execute runs the execution step and renders its result.
func (c *call) execute(run execFunc) response {
	if c.h.execHook != nil {
		c.h.execHook(c.r)
	}
	v, err := run(c.r.Context())
	if err != nil {
		return c.errorResponse(err)
	}
	if s, ok := v.(streamed); ok {
		return response{status: http.StatusOK, stream: s}
	}
	body, err := encodeBody(v)
	if err != nil {
		return c.errorResponse(err)
	}
	return response{status: http.StatusOK, body: body}
}

// encodeBody renders a successful result: the bytes sent and stored for a
// replay.
func encodeBody(v any) ([]byte, error) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("stripeapi: encoding response: %w", err)
	}
	return append(body, '\n'), nil
}

// recordKV records ev and returns it with its identifier and timestamp
// filled in, and the response result builds from it. With an
// Idempotency-Key, the key's record is committed in the same commit as the
// event, so that a crash can keep neither without the other.
func (c *call) recordKV(ctx context.Context, ev event.Event, result func(rec event.Event) any) (any, error) {
	evs := [1]event.Event{ev}
	var out any
	errs, err := c.h.db.RecordBatchKV(ctx, evs[:], func(errs []error) []meterdb.KV {
		if errs[0] != nil || c.idem == nil {
			return nil
		}
		out = result(evs[0])
		rec, err := c.idem(out)
		if err != nil {
			return nil
		}
		c.idemStored = true
		return []meterdb.KV{rec}
	})
	if err != nil {
		c.idemStored = false
		return nil, err
	}
	if errs[0] != nil {
		return nil, errs[0]
	}
	if out == nil {
		out = result(evs[0])
	}
	return out, nil
}

// errorResponse renders err in the shape of the call's API version.
func (c *call) errorResponse(err error) response {
	ae, internal := toAPIError(err)
	if internal {
		c.h.log.LogAttrs(c.r.Context(), slog.LevelError, "request failed",
			slog.String("request_id", c.id), slog.String("method", c.r.Method),
			slog.String("path", c.r.URL.Path), slog.Any("error", err))
	}
	body, mErr := json.MarshalIndent(c.api.errorBody(ae), "", "  ")
	if mErr != nil {
		panic(fmt.Sprintf("stripeapi: encoding an error body: %v", mErr)) // the body holds strings only
	}
	return response{status: ae.Status, body: append(body, '\n'), retry: ae.Retry}
}

// write is the one place responses are written.
func (c *call) write(res response) {
	hd := c.w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-cache, no-store")
	if c.idemKey != "" {
		hd.Set("Idempotency-Key", c.idemKey)
	}
	if res.replayed {
		hd.Set("Idempotent-Replayed", "true")
	}
	if res.retry != nil {
		hd.Set("Stripe-Should-Retry", fmt.Sprint(*res.retry))
	}
	if v := c.r.Header.Get("Stripe-Version"); v != "" && len(v) <= 64 {
		hd.Set("Stripe-Version", v)
	}
	if res.status == http.StatusUnauthorized {
		hd.Set("WWW-Authenticate", `Basic realm="meterdb"`)
		// A client without a valid key keeps no connection open.
		hd.Set("Connection", "close")
	}
	c.w.WriteHeader(res.status)
	if res.stream != nil {
		// The status is sent: a failure can only cut the body short.
		if err := res.stream(c.r.Context(), c.w); err != nil {
			c.h.log.LogAttrs(c.r.Context(), slog.LevelWarn, "writing a response failed",
				slog.String("request_id", c.id), slog.String("path", c.r.URL.Path), slog.Any("error", err))
		}
		return
	}
	c.w.Write(res.body)
}

// streamed is an execution result written in pieces as it is produced,
// for responses too large to hold whole while a slow client reads them
// (pages of error reports). Only GET routes return one: the idempotency
// layer stores bodies. A write deadline on the connection (the server's
// WriteTimeout) drops a client that stops reading.
type streamed func(ctx context.Context, w io.Writer) error

func newRequestID() string { return "req_" + meter.RandomBase62(14) }
