package stats

import (
	"sync"
	"sync/atomic"
)

// Meters counts events per meter. Meters are keyed by a small, dense
// integer (a meter's sequence number, 0 for events that name no meter);
// counters for a key are created on first use and live as long as the
// Meters. Get is a bounds check and two loads; it locks and allocates only
// for a key it has not seen.
type Meters struct {
	codes int // rejection codes per meter

	mu  sync.Mutex                 // serializes growth of p
	ptr atomic.Pointer[[]*Counter] // by key; copied on growth, never modified in place
}

// Counter holds the event counters of one meter.
type Counter struct {
	Accepted  atomic.Int64
	Duplicate atomic.Int64
	Cancelled atomic.Int64
	rejected  []atomic.Int64 // by rejection code index
}

// Reject counts one rejected event with the given code index, which must
// be below the codes NewMeters was given.
func (c *Counter) Reject(code int) { c.rejected[code].Add(1) }

// NewMeters returns empty per-meter counters, each counting rejections
// under codes distinct code indexes.
func NewMeters(codes int) *Meters {
	m := &Meters{codes: codes}
	m.ptr.Store(new([]*Counter))
	return m
}

// Get returns the counters of key, creating them on first use.
func (m *Meters) Get(key uint64) *Counter {
	if cs := *m.ptr.Load(); key < uint64(len(cs)) {
		if c := cs[key]; c != nil {
			return c
		}
	}
	return m.create(key)
}

func (m *Meters) create(key uint64) *Counter {
	m.mu.Lock()
	defer m.mu.Unlock()
	cs := *m.ptr.Load()
	if key < uint64(len(cs)) && cs[key] != nil {
		return cs[key]
	}
	grown := make([]*Counter, max(key+1, 2*uint64(len(cs))))
	copy(grown, cs)
	c := &Counter{rejected: make([]atomic.Int64, m.codes)}
	grown[key] = c
	m.ptr.Store(&grown)
	return c
}

// MeterSnapshot is the counters of one meter at one time.
type MeterSnapshot struct {
	Key       uint64
	Accepted  int64
	Rejected  []int64 // by code index
	Duplicate int64
	Cancelled int64
}

// Snapshot returns the counters of every key seen so far, in key order.
func (m *Meters) Snapshot() []MeterSnapshot {
	cs := *m.ptr.Load()
	var out []MeterSnapshot
	for k, c := range cs {
		if c == nil {
			continue
		}
		s := MeterSnapshot{Key: uint64(k), Accepted: c.Accepted.Load(), Duplicate: c.Duplicate.Load(),
			Cancelled: c.Cancelled.Load(), Rejected: make([]int64, len(c.rejected))}
		for i := range c.rejected {
			s.Rejected[i] = c.rejected[i].Load()
		}
		out = append(out, s)
	}
	return out
}
