package stripeapi

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Options configure a handler. A nil *Options and every zero field mean
// the default.
type Options struct {
	// APIKeys are the secret keys the handler accepts, e.g. "sk_test_…" or
	// "sk_live_…". A key starting with sk_live_ or rk_live_ makes responses
	// report livemode true; every other key reports false. Empty means any
	// key starting with sk_test_ is accepted and live keys are refused:
	// convenient for local development and tests, and never suitable for a
	// handler reachable by others.
	APIKeys []string
	// MaxBodyBytes bounds a request body, in bytes. Zero means 1 MiB.
	// Larger bodies get 413.
	MaxBodyBytes int64
	// MaxBodyMemory bounds the bytes of request bodies held at once, all
	// requests together, counted as they arrive (bodies are read before a
	// request takes one of the MaxConcurrentRequests slots). A body that
	// finds the budget spent gets 429 rate_limit with
	// Stripe-Should-Retry: true. Zero means 64 MiB.
	MaxBodyMemory int64
	// MaxHeaderBytes bounds the request line and headers of a request, in
	// bytes, counted as http.Server.MaxHeaderBytes counts them. Zero means
	// 32 KiB. Larger requests get 431 with a Stripe error body; set the
	// server's MaxHeaderBytes above this limit, or net/http answers first,
	// in plain text.
	MaxHeaderBytes int
	// MaxParams bounds the number of form fields (key=value pairs) of one
	// request, query string and body together. Zero means 500.
	MaxParams int
	// IdempotencyTTL is how long the response to a POST with an
	// Idempotency-Key is kept for replay. Zero means 24 hours.
	IdempotencyTTL time.Duration
	// MaxConcurrentRequests bounds the requests the handler executes at
	// once. A request takes its slot after its body was read and decoded,
	// so that clients that stall mid-body hold none; bound the time a body
	// may take with the server's ReadTimeout. Zero means 256.
	MaxConcurrentRequests int
	// AdmissionWait is how long a request beyond MaxConcurrentRequests
	// waits for one of them to finish, its body already read, before it
	// gets 429 rate_limit (with Stripe-Should-Retry: true, which stripe-go
	// honours). Zero means one second; negative turns it away at once.
	AdmissionWait time.Duration
	// RateLimit is the sustained number of requests per second accepted
	// per API key; the excess gets 429 rate_limit. Zero means no limit.
	RateLimit float64
	// RateBurst is how many requests one API key may make at once above
	// RateLimit. Zero means max(1, RateLimit). Ignored without RateLimit.
	RateBurst int
	// MaxErrorReportBytes bounds the error reports of the meter event
	// stream kept in the DB, in bytes of stored records (indexes not
	// counted); past it the oldest reports are dropped first. Zero means
	// 64 MiB.
	MaxErrorReportBytes int64
	// Now is the clock for created timestamps, idempotency expiry and rate
	// limits. Nil means time.Now.
	Now func() time.Time
	// Logger receives one Debug record per request and an Error record for
	// each 5xx response. Nil means silent.
	Logger *slog.Logger
}

const (
	defaultMaxBodyBytes   = 1 << 20
	defaultMaxParams      = 500
	defaultMaxHeaderBytes = 32 << 10
	defaultMaxReportBytes = 64 << 20
	defaultMaxBodyMemory  = 64 << 20
	defaultIdempotencyTTL = 24 * time.Hour
	defaultMaxConcurrent  = 256
	defaultAdmissionWait  = time.Second
)

// withDefaults returns a copy of o with zero fields set to their defaults,
// or an error naming the first invalid field.
func (o *Options) withDefaults() (Options, error) {
	var r Options
	if o != nil {
		r = *o
		r.APIKeys = append([]string(nil), o.APIKeys...)
	}
	for i, k := range r.APIKeys {
		if k == "" || strings.ContainsAny(k, " \t\r\n:") {
			return r, fmt.Errorf("stripeapi: Options.APIKeys[%d] is empty or contains a space or colon", i)
		}
	}
	if r.MaxBodyBytes < 0 || r.MaxParams < 0 || r.MaxHeaderBytes < 0 || r.IdempotencyTTL < 0 || r.MaxConcurrentRequests < 0 ||
		r.RateLimit < 0 || r.RateBurst < 0 || r.MaxErrorReportBytes < 0 || r.MaxBodyMemory < 0 {
		return r, errors.New("stripeapi: Options fields must not be negative")
	}
	if r.MaxBodyBytes == 0 {
		r.MaxBodyBytes = defaultMaxBodyBytes
	}
	if r.MaxHeaderBytes == 0 {
		r.MaxHeaderBytes = defaultMaxHeaderBytes
	}
	if r.MaxBodyMemory == 0 {
		r.MaxBodyMemory = defaultMaxBodyMemory
	}
	if r.MaxErrorReportBytes == 0 {
		r.MaxErrorReportBytes = defaultMaxReportBytes
	}
	if r.MaxParams == 0 {
		r.MaxParams = defaultMaxParams
	}
	if r.IdempotencyTTL == 0 {
		r.IdempotencyTTL = defaultIdempotencyTTL
	}
	if r.MaxConcurrentRequests == 0 {
		r.MaxConcurrentRequests = defaultMaxConcurrent
	}
	if r.AdmissionWait == 0 {
		r.AdmissionWait = defaultAdmissionWait
	}
	if r.RateLimit > 0 && r.RateBurst == 0 {
		r.RateBurst = max(1, int(r.RateLimit))
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return r, nil
}
