package stripeapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/stripeapi/internal/jsonw"
	"github.com/meterdb/meterdb/stripeapi/internal/wire"
)

// maxIdempotencyKey is the longest Idempotency-Key accepted, in bytes.
const maxIdempotencyKey = 255

// handler serves the API of one DB. It is safe for concurrent use.
type handler struct {
	db      *meterdb.DB
	opts    Options
	log     *slog.Logger
	router  *router
	idem    *idempotency
	sess    *sessions
	names   *jsonw.Names
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

// execFunc executes a validated request and returns the object to send
// with status 200, or an error for the API version to render.
type execFunc func(ctx context.Context) (any, error)

// apiVersion holds what differs between API versions at the level of the
// pipeline: the shape of error bodies. Decoding belongs to each version's
// request reader (see formRequest).
type apiVersion struct {
	name      string
	errorBody func(*apiError) any
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
		db:     db,
		opts:   o,
		log:    o.Logger,
		slots:  make(chan struct{}, o.MaxConcurrentRequests),
		bodies: &bodyBudget{max: o.MaxBodyMemory},
		idem:   newIdempotency(db, o.IdempotencyTTL),
		sess:   newSessions(db),
		names:  jsonw.NewNames(),
	}
	h.writeReports = db.WriteKV
	h.reports = &reportStore{db: db, max: o.MaxErrorReportBytes,
		write: func(ctx context.Context, ws []meterdb.KVWrite) error { return h.writeReports(ctx, ws) }}
	if o.RateLimit > 0 {
		h.limiter = newRateLimiter(o.RateLimit, o.RateBurst)
	}
	table := h.routeTable()
	h.router = newRouter(table)
	h.stats = newHTTPStats(table)
	return h, nil
}

// ServeHTTP runs the pipeline: request id, routing, authentication (an API
// key, or a session token for the meter event stream; unknown routes are
// reported after API key authentication), the rate limit, decoding and
// validation (which read the body), admission (a slot among
// MaxConcurrentRequests), execution (through the idempotency layer for
// POST), and one JSON writer.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	c := &call{h: h, w: w, r: r, id: newRequestID(), api: apiFor(r.URL.Path), now: h.opts.Now()}
	w.Header().Set("Request-Id", c.id)
	res := h.serve(c)
	c.write(res)
	h.stats.observe(c.matched, res.status, time.Since(start))
	h.log.LogAttrs(r.Context(), slog.LevelDebug, "request",
		slog.String("request_id", c.id), slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.Int("status", res.status), slog.Bool("replayed", res.replayed), slog.Duration("took", time.Since(start)))
	res.release()
	c.releaseForm()
}

func (h *handler) serve(c *call) response {
	if n := headerBytes(c.r); n > h.opts.MaxHeaderBytes {
		return c.errorResponse(wire.InvalidRequest(http.StatusRequestHeaderFieldsTooLarge, "", "",
			fmt.Sprintf("Request headers too large: %d bytes, the limit is %d.", n, h.opts.MaxHeaderBytes)))
	}
	h.router.match(c)
	rt := c.rt
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
	c.api = rt.api
	if c.r.Method == http.MethodPost {
		c.idemKey = strings.TrimSpace(c.r.Header.Get("Idempotency-Key"))
		if len(c.idemKey) > maxIdempotencyKey {
			c.idemKey = ""
			return c.errorResponse(wire.InvalidRequest(http.StatusBadRequest, "", "",
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

func newRequestID() string { return "req_" + meter.RandomBase62(14) }
