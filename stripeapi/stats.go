package stripeapi

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/internal/stats"
)

// HTTPStats is a snapshot of a handler's request counters, for an
// exporter such as package metrics. Counters start at zero when the
// handler is created and only grow. The slices and maps are the caller's.
type HTTPStats struct {
	// Routes has one entry per route, in the handler's order, then one
	// named "other" for requests that matched no route.
	Routes []RouteStats
	// Throttled counts 429 responses: requests turned away by admission
	// (Options.MaxConcurrentRequests, AdmissionWait) or the rate limit.
	Throttled int64
	// StreamEventsAccepted and StreamEventsRejected count the events of
	// the meter event stream that the engine recorded and those it
	// rejected (which go to an error report); events of a request
	// rejected whole count in Routes only.
	StreamEventsAccepted int64
	StreamEventsRejected int64
}

// RouteStats are the counters of one route.
type RouteStats struct {
	// Route is the method and path pattern, such as
	// "POST /v1/billing/meters/{id}/deactivate".
	Route string
	// Responses counts responses by status code; absent codes were never
	// sent.
	Responses map[int]int64
	// Duration is the time from a request's arrival at the handler until
	// its response was written, in seconds.
	Duration meterdb.Histogram
}

// Stats returns the counters of h, which must be a handler NewHandler
// returned (not one wrapping it); ok is false for any other handler. It is
// safe to call while h serves requests.
func Stats(h http.Handler) (s HTTPStats, ok bool) {
	hd, ok := h.(*handler)
	if !ok {
		return HTTPStats{}, false
	}
	return hd.stats.snapshot(), true
}

// httpStats are a handler's counters; see HTTPStats. A route's counters
// hang off the route itself, so counting a request takes no lookup.
type httpStats struct {
	routes []*routeStats // the handler's routes in order, then other
	other  *routeStats

	throttled                      atomic.Int64
	streamAccepted, streamRejected atomic.Int64
}

// routeStats are the counters of one route.
type routeStats struct {
	name     string
	statuses [600]atomic.Int64 // by status code; 0 takes codes outside 100..599
	duration *stats.Histogram  // nanoseconds
}

// newHTTPStats returns counters for routes, and attaches each route's to
// the route.
func newHTTPStats(routes []*route) *httpStats {
	s := &httpStats{other: newRouteStats("other")}
	for _, rt := range routes {
		rt.stats = newRouteStats(rt.pattern)
		s.routes = append(s.routes, rt.stats)
	}
	s.routes = append(s.routes, s.other)
	return s
}

func newRouteStats(name string) *routeStats {
	return &routeStats{name: name, duration: stats.NewHistogram(stats.DurationBounds)}
}

// observe counts a response with status to a request for rt (nil when no
// route matched) that took d.
func (s *httpStats) observe(rt *route, status int, d time.Duration) {
	rs := s.other
	if rt != nil {
		rs = rt.stats
	}
	if status < 100 || status >= len(rs.statuses) {
		status = 0
	}
	rs.statuses[status].Add(1)
	rs.duration.ObserveDuration(d)
	if status == http.StatusTooManyRequests {
		s.throttled.Add(1)
	}
}

// streamEvents counts the engine's verdicts on a stream request's events.
func (s *httpStats) streamEvents(errs []error) {
	var rejected int64
	for _, err := range errs {
		if err != nil {
			rejected++
		}
	}
	s.streamAccepted.Add(int64(len(errs)) - rejected)
	s.streamRejected.Add(rejected)
}

func (s *httpStats) snapshot() HTTPStats {
	out := HTTPStats{Routes: make([]RouteStats, len(s.routes)), Throttled: s.throttled.Load(),
		StreamEventsAccepted: s.streamAccepted.Load(), StreamEventsRejected: s.streamRejected.Load()}
	for i, rs := range s.routes {
		r := RouteStats{Route: rs.name, Responses: map[int]int64{}}
		for code := range rs.statuses {
			if n := rs.statuses[code].Load(); n != 0 {
				r.Responses[code] = n
			}
		}
		d := rs.duration.Snapshot()
		r.Duration = meterdb.Histogram{Bounds: make([]float64, len(d.Bounds)), Counts: d.Counts, Sum: float64(d.Sum) / 1e9}
		for j, b := range d.Bounds {
			r.Duration.Bounds[j] = float64(b) / 1e9
		}
		out.Routes[i] = r
	}
	return out
}
