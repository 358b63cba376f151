package dashboard

import (
	"sync"
	"time"
)

// Ingest rate sampling: each overview page load samples
// Stats().EventsAccepted; the rate is the difference to an earlier sample
// divided by the time between them.
const (
	rateSpacing = time.Second      // samples closer than this to the previous one are not kept
	rateWindow  = time.Minute      // the rate spans at most this much when samples allow
	rateMaxAge  = 10 * time.Minute // older samples are dropped
	rateSamples = 128              // at most this many samples are kept
)

type sample struct {
	t        time.Time
	accepted int64
}

// rateSampler keeps recent samples of the accepted-events counter. It is
// safe for concurrent use.
type rateSampler struct {
	mu      sync.Mutex // guards samples
	samples []sample   // oldest first
}

// ingestRate is the rate shown on the overview.
type ingestRate struct {
	Known     bool
	PerSecond float64
	Over      time.Duration // the time between the two samples
}

// observe records the counter's value at now and returns the rate since
// the oldest sample of the last minute that is at least rateSpacing old,
// or else since the newest earlier sample.
func (s *rateSampler) observe(now time.Time, accepted int64) ingestRate {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := s.samples[:0]
	for _, x := range s.samples {
		if now.Sub(x.t) <= rateMaxAge && !x.t.After(now) {
			keep = append(keep, x)
		}
	}
	s.samples = keep
	var ref *sample
	for i := range s.samples {
		x := &s.samples[i]
		age := now.Sub(x.t)
		if age < rateSpacing {
			break
		}
		ref = x
		if age <= rateWindow {
			break
		}
	}
	var r ingestRate
	if ref != nil {
		r = ingestRate{Known: true, Over: now.Sub(ref.t)}
		r.PerSecond = float64(accepted-ref.accepted) / r.Over.Seconds()
	}
	if n := len(s.samples); n == 0 || now.Sub(s.samples[n-1].t) >= rateSpacing {
		if n == rateSamples {
			s.samples = append(s.samples[:0], s.samples[1:]...)
		}
		s.samples = append(s.samples, sample{now, accepted})
	}
	return r
}
