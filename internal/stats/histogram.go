package stats

import (
	"fmt"
	"sync/atomic"
	"time"
)

// DurationBounds are the bucket upper bounds, in nanoseconds, of the
// duration histograms: 25 µs to 60 s.
var DurationBounds = []int64{
	25e3, 50e3, 100e3, 250e3, 500e3, // µs
	1e6, 2.5e6, 5e6, 10e6, 25e6, 50e6, 100e6, 250e6, 500e6, // ms
	1e9, 2.5e9, 5e9, 10e9, 30e9, 60e9, // s
}

// SizeBounds are the bucket upper bounds of the histograms of events per
// batch or per commit: 1 to 100,000.
var SizeBounds = []int64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000}

// Histogram counts int64 observations in fixed buckets. The zero value is
// not usable; see NewHistogram.
type Histogram struct {
	bounds []int64         // ascending upper bounds, inclusive; shared, never modified
	counts []atomic.Uint64 // len(bounds)+1: the last counts what exceeds every bound
	sum    atomic.Int64
}

// NewHistogram returns a histogram with the given ascending upper bounds.
// bounds is retained and must not be modified. It panics when bounds is
// empty or not strictly ascending.
func NewHistogram(bounds []int64) *Histogram {
	if len(bounds) == 0 {
		panic("stats: histogram without bounds")
	}
	for i := 1; i < len(bounds); i++ {
		if bounds[i] <= bounds[i-1] {
			panic(fmt.Sprintf("stats: histogram bounds not ascending at %d: %v", i, bounds))
		}
	}
	return &Histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

// Observe counts v in the first bucket whose bound is at least v.
func (h *Histogram) Observe(v int64) {
	lo, hi := 0, len(h.bounds)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if h.bounds[mid] < v {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	h.counts[lo].Add(1)
	h.sum.Add(v)
}

// ObserveDuration observes d in nanoseconds.
func (h *Histogram) ObserveDuration(d time.Duration) { h.Observe(int64(d)) }

// HistogramSnapshot is a histogram's state at one time. Counts are per
// bucket, not cumulative: Counts[i] observations were at most Bounds[i]
// and greater than Bounds[i-1]; Counts[len(Bounds)] exceeded every bound.
type HistogramSnapshot struct {
	Bounds []int64 // shared with the histogram: do not modify
	Counts []uint64
	Sum    int64
}

// Count returns the number of observations.
func (s HistogramSnapshot) Count() uint64 {
	var n uint64
	for _, c := range s.Counts {
		n += c
	}
	return n
}

// Snapshot returns the current counts in a new slice.
func (h *Histogram) Snapshot() HistogramSnapshot {
	s := HistogramSnapshot{Bounds: h.bounds, Counts: make([]uint64, len(h.counts))}
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
	}
	s.Sum = h.sum.Load()
	return s
}
