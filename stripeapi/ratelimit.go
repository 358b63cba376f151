package stripeapi

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// maxBuckets bounds the callers a rateLimiter tracks; past it, every
// bucket is dropped and starts full again.
const maxBuckets = 10000

// rateLimiter is a token bucket per caller. A nil *rateLimiter allows
// everything. It is safe for concurrent use.
type rateLimiter struct {
	rate  float64 // tokens per second
	burst float64

	mu      sync.Mutex // guards buckets
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(rate float64, burst int) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(burst), buckets: map[string]*bucket{}}
}

// allow takes one token from scope's bucket at time now.
func (l *rateLimiter) allow(scope string, now time.Time) bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[scope]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			clear(l.buckets)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[scope] = b
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(l.burst, b.tokens+d.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// admit takes a slot among the requests being served, waiting up to
// AdmissionWait for one to free up.
func (h *handler) admit(ctx context.Context) bool {
	select {
	case h.slots <- struct{}{}:
		return true
	default:
	}
	if h.opts.AdmissionWait < 0 {
		return false
	}
	t := time.NewTimer(h.opts.AdmissionWait)
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// bodyBudget bounds the bytes of request bodies held at once, across
// requests: since a request is admitted only once its body is read, the
// bodies being read are bounded by this budget rather than by the slots.
// Bytes count as they arrive, so a client that stalls mid-body holds only
// what it sent. It is safe for concurrent use.
type bodyBudget struct {
	max  int64
	used atomic.Int64
}

// errBodyBudget ends the read of a body that would exceed the budget.
var errBodyBudget = errors.New("stripeapi: request body budget exhausted")

// budgetBody is a request body whose bytes are charged to a budget as
// they are read; release gives them back.
type budgetBody struct {
	io.ReadCloser
	b     *bodyBudget
	taken int64
}

func (r *budgetBody) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if n > 0 {
		if r.b.used.Add(int64(n)) > r.b.max {
			r.b.used.Add(-int64(n))
			return 0, errBodyBudget
		}
		r.taken += int64(n)
	}
	return n, err
}

func (r *budgetBody) release() { r.b.used.Add(-r.taken) }

// errBusy is a 429 for a body that found the body budget full.
func errBusy() *apiError {
	e := errRateLimited()
	e.Message = "Too many requests are being received at once. Retry after a short pause."
	return e
}
