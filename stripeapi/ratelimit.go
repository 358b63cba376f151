package stripeapi

import (
	"context"
	"sync"
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
