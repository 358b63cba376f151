package main

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

// Workload is a deterministic stream of usage events: event i is a pure
// function of the seed and i, so any worker can build any slice of the
// stream, and the expected totals of the events [0, n) can be recomputed
// after a run to verify what a target reports.
//
// Customers are drawn from a Zipf distribution (exponent Skew), so a few
// customers carry most of the traffic, as in real billing data. Meters
// cycle through the formulas count, sum and last. Timestamps are uniform
// over the Span before Anchor, whole seconds. Values are 0 to 999 and are a
// function of the customer and the timestamp, so two events of one series
// with equal timestamps carry equal values and "last" is well defined
// whatever the receipt order. Identifiers are unique: 16 hex digits of a
// bijective mix of i.
//
// A Workload is immutable after NewWorkload and safe for concurrent use;
// the payload maps it hands out are shared and must not be modified.
type Workload struct {
	Seed      uint64
	Customers int
	Skew      float64 // Zipf exponent; 0 means uniform
	Meters    []meter.Params
	Anchor    time.Time // the clock of every target: a fixed UTC midnight
	Span      time.Duration

	customerIDs []string
	variants    int                 // payload variants per customer
	payloads    []map[string]string // customer*variants + k
	values      []int64             // the value of each payload
	aliasProb   []uint32            // Vose alias table over customers
	aliasIdx    []uint32
}

// DefaultAnchor is the fixed "now" of every workload: a UTC midnight, so
// that the 35 days before it are whole days.
var DefaultAnchor = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// formulas is the order in which meters take their formula.
var formulas = []meter.Formula{meter.Count, meter.Sum, meter.Last}

// NewWorkload builds the customer table, the payload pool and the meter
// definitions of a workload.
func NewWorkload(seed uint64, customers, meters int, skew float64) *Workload {
	if customers < 1 || meters < 1 {
		panic("bench: a workload needs at least one customer and one meter")
	}
	w := &Workload{
		Seed: seed, Customers: customers, Skew: skew,
		Anchor: DefaultAnchor, Span: 30 * 24 * time.Hour,
	}
	for i := 0; i < meters; i++ {
		f := formulas[i%len(formulas)]
		w.Meters = append(w.Meters, meter.Params{
			DisplayName: fmt.Sprintf("bench %s %d", f, i),
			EventName:   fmt.Sprintf("bench_%s_%d", f, i),
			Formula:     f,
		})
	}
	// Up to 8 payload variants per customer, fewer for large customer
	// counts so that the pool stays near a million maps.
	w.variants = max(1, min(8, (1<<20)/customers))
	w.customerIDs = make([]string, customers)
	w.payloads = make([]map[string]string, customers*w.variants)
	w.values = make([]int64, customers*w.variants)
	for c := range customers {
		id := fmt.Sprintf("cus_%014x", mix(seed^0xC057<<40^uint64(c))>>8)
		w.customerIDs[c] = id
		for k := range w.variants {
			v := int64(mix(seed^uint64(c)<<8^uint64(k)) % 1000)
			w.values[c*w.variants+k] = v
			w.payloads[c*w.variants+k] = map[string]string{
				meter.DefaultCustomerKey: id,
				meter.DefaultValueKey:    strconv.FormatInt(v, 10),
			}
		}
	}
	w.buildAlias()
	return w
}

// Now is the clock of every target: the workload's anchor.
func (w *Workload) Now() time.Time { return w.Anchor }

// CustomerID returns the id of customer c.
func (w *Workload) CustomerID(c int) string { return w.customerIDs[c] }

// buildAlias builds a Vose alias table for the Zipf weights 1/(k+1)^Skew,
// which samples a customer in constant time from one 64-bit hash.
func (w *Workload) buildAlias() {
	n := w.Customers
	p := make([]float64, n)
	var total float64
	for k := range n {
		p[k] = 1 / math.Pow(float64(k+1), w.Skew)
		total += p[k]
	}
	small, large := make([]int, 0, n), make([]int, 0, n)
	for k := range p {
		p[k] *= float64(n) / total
		if p[k] < 1 {
			small = append(small, k)
		} else {
			large = append(large, k)
		}
	}
	w.aliasProb = make([]uint32, n)
	w.aliasIdx = make([]uint32, n)
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small = small[:len(small)-1]
		w.aliasProb[s] = uint32(p[s] * math.MaxUint32)
		w.aliasIdx[s] = uint32(l)
		p[l] -= 1 - p[s]
		if p[l] < 1 {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	for _, k := range append(small, large...) {
		w.aliasProb[k] = math.MaxUint32
		w.aliasIdx[k] = uint32(k)
	}
}

// mix is the splitmix64 finalizer: a bijection on uint64 with good
// avalanche.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Spec is what event i of a workload is, before it becomes an event.Event.
type Spec struct {
	Meter    int
	Customer int
	Payload  int   // index into the payload pool
	TS       int64 // unix seconds
	Value    int64 // the payload's value
}

// Spec returns the description of event i.
func (w *Workload) Spec(i uint64) Spec {
	h := mix(w.Seed*0x5851F42D4C957F2D ^ i)
	col := uint32((h & 0xFFFFFFFF) * uint64(w.Customers) >> 32)
	c := col
	if uint32(h>>32) > w.aliasProb[col] {
		c = w.aliasIdx[col]
	}
	h2 := mix(h)
	span := uint64(w.Span / time.Second)
	ts := w.Anchor.Unix() - 1 - int64((h2>>8)%span)
	k := 0
	if w.variants > 1 {
		k = int(mix(uint64(c)<<34^uint64(ts)) % uint64(w.variants))
	}
	p := int(c)*w.variants + k
	return Spec{Meter: int(h2 % uint64(len(w.Meters))), Customer: int(c), Payload: p, TS: ts, Value: w.values[p]}
}

// identLen is the length of every generated identifier.
const identLen = 19

// Fill sets evs[j] to event first+j. Identifiers of one call share one
// string allocation. The events share payload maps owned by w.
func (w *Workload) Fill(evs []event.Event, first uint64) {
	buf := make([]byte, 0, identLen*len(evs))
	for j := range evs {
		buf = append(buf, "ev_"...)
		x := mix(w.Seed<<20 ^ 0x1D ^ (first + uint64(j))) // bijective in i for a fixed seed
		for s := 60; s >= 0; s -= 4 {
			buf = append(buf, "0123456789abcdef"[x>>uint(s)&15])
		}
	}
	ids := string(buf)
	for j := range evs {
		s := w.Spec(first + uint64(j))
		evs[j] = event.Event{
			Name:       w.Meters[s.Meter].EventName,
			Payload:    w.payloads[s.Payload],
			Identifier: ids[j*identLen : (j+1)*identLen],
			Timestamp:  time.Unix(s.TS, 0).UTC(),
		}
	}
}

// Events returns events [first, first+n).
func (w *Workload) Events(first uint64, n int) []event.Event {
	evs := make([]event.Event, n)
	const chunk = 4096
	for i := 0; i < n; i += chunk {
		w.Fill(evs[i:min(n, i+chunk)], first+uint64(i))
	}
	return evs
}

// Expect is the expected aggregate of one series (meter, customer).
type Expect struct {
	Count, Sum      int64
	LastTS, LastVal int64
}

func (e *Expect) add(s Spec) {
	e.Count++
	e.Sum += s.Value
	if e.Count == 1 || s.TS >= e.LastTS {
		// Equal timestamps carry equal values, so >= and > agree.
		e.LastTS, e.LastVal = s.TS, s.Value
	}
}

// Value is what a meter with formula f reports for e.
func (e Expect) Value(f meter.Formula) int64 {
	switch f {
	case meter.Count:
		return e.Count
	case meter.Sum:
		return e.Sum
	}
	return e.LastVal
}

// Expected returns the expected aggregates of every series over the events
// in ranges (half-open index ranges), indexed by meter*Customers+customer.
func (w *Workload) Expected(ranges [][2]uint64) []Expect {
	out := make([]Expect, len(w.Meters)*w.Customers)
	for _, r := range ranges {
		for i := r[0]; i < r[1]; i++ {
			s := w.Spec(i)
			out[s.Meter*w.Customers+s.Customer].add(s)
		}
	}
	return out
}
