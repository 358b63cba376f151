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
// cycle through the formulas count, sum and last (SetFormulas changes
// the cycle). Timestamps are uniform
// over the Span before Anchor, whole seconds. Values are 0 to 999 and are a
// function of the customer and the timestamp, so two events of one series
// with equal timestamps carry equal values and "last" is well defined
// whatever the receipt order. Identifiers are unique: IDLen characters
// built from a bijective mix of i, UUID-shaped (8-4-4-4-12 hex digits) at
// the default length of 36.
//
// A Workload is immutable after NewWorkload (set Span, Anchor and IDLen
// before the first use) and safe for concurrent use; the payload maps
// that Fill hands out are shared and must not be modified.
type Workload struct {
	Seed      uint64
	Customers int
	Skew      float64 // Zipf exponent; 0 means uniform
	Meters    []meter.Params
	Anchor    time.Time // the clock of every target: a fixed UTC midnight
	Span      time.Duration
	IDLen     int // length of every identifier, 16 to 100; 36 is UUID-shaped

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
		Anchor: DefaultAnchor, Span: 30 * 24 * time.Hour, IDLen: DefaultIDLen,
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

// SetFormulas makes the meters cycle through fs instead of count, sum,
// last; call it before the first use.
func (w *Workload) SetFormulas(fs []meter.Formula) {
	for i := range w.Meters {
		f := fs[i%len(fs)]
		w.Meters[i].Formula = f
		w.Meters[i].DisplayName = fmt.Sprintf("bench %s %d", f, i)
		w.Meters[i].EventName = fmt.Sprintf("bench_%s_%d", f, i)
	}
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

// DefaultIDLen is the default identifier length: a UUID's text, as most
// clients generate identifiers.
const DefaultIDLen = 36

// appendIdent appends the identifier of event i. Its first 16 hex digits
// (at the positions of a UUID's first 12 and its fourth group) are a
// bijective mix of i, so identifiers are unique; the rest are derived
// digits, with a UUID's version 4 and variant digits when IDLen is 36.
func (w *Workload) appendIdent(buf []byte, i uint64) []byte {
	const hex = "0123456789abcdef"
	x := mix(w.Seed<<20 ^ 0x1D ^ i) // bijective in i for a fixed seed
	y := mix(x ^ 0xA5A5)
	if w.IDLen == 36 {
		var d [32]byte
		for k := range 12 {
			d[k] = hex[x>>(60-4*k)&15]
		}
		for k := range 4 {
			d[20+k] = hex[x>>(12-4*k)&15]
		}
		for k, p := range [...]int{13, 14, 15, 17, 18, 19, 24, 25, 26, 27, 28, 29, 30, 31} {
			d[p] = hex[y>>(4*k)&15]
		}
		d[12], d[16] = '4', "89ab"[y>>60&3]
		buf = append(buf, d[0:8]...)
		buf = append(append(buf, '-'), d[8:12]...)
		buf = append(append(buf, '-'), d[12:16]...)
		buf = append(append(buf, '-'), d[16:20]...)
		return append(append(buf, '-'), d[20:32]...)
	}
	for k := range w.IDLen {
		switch {
		case k < 16:
			buf = append(buf, hex[x>>(60-4*k)&15])
		default:
			if k%16 == 0 {
				y = mix(y)
			}
			buf = append(buf, hex[y>>(60-4*(k%16))&15])
		}
	}
	return buf
}

// idents returns the identifiers of events [first, first+n) in one string,
// IDLen bytes each.
func (w *Workload) idents(first uint64, n int) string {
	buf := make([]byte, 0, w.IDLen*n)
	for j := range n {
		buf = w.appendIdent(buf, first+uint64(j))
	}
	return string(buf)
}

// Fill sets evs[j] to event first+j. Identifiers of one call share one
// string allocation. The events share payload maps owned by w: Fill costs
// what generating the workload costs, not what a client building payloads
// costs (see FillMaps).
func (w *Workload) Fill(evs []event.Event, first uint64) {
	ids := w.idents(first, len(evs))
	for j := range evs {
		s := w.Spec(first + uint64(j))
		evs[j] = event.Event{
			Name:       w.Meters[s.Meter].EventName,
			Payload:    w.payloads[s.Payload],
			Identifier: ids[j*w.IDLen : (j+1)*w.IDLen],
			Timestamp:  time.Unix(s.TS, 0).UTC(),
		}
	}
}

// FillMaps is Fill as a client of the payload-map API does it: every event
// gets a payload map of its own, built here with the customer and the
// value formatted by strconv, as Stripe's shape requires
// (map[string]string{"stripe_customer_id": …, "value": …}). The maps
// belong to the caller.
func (w *Workload) FillMaps(evs []event.Event, first uint64) {
	ids := w.idents(first, len(evs))
	for j := range evs {
		s := w.Spec(first + uint64(j))
		evs[j] = event.Event{
			Name: w.Meters[s.Meter].EventName,
			Payload: map[string]string{
				meter.DefaultCustomerKey: w.customerIDs[s.Customer],
				meter.DefaultValueKey:    strconv.FormatInt(s.Value, 10),
			},
			Identifier: ids[j*w.IDLen : (j+1)*w.IDLen],
			Timestamp:  time.Unix(s.TS, 0).UTC(),
		}
	}
}

// FillUsage sets us[j] to event first+j in typed form: the same meter,
// customer, value, identifier and timestamp as Fill's event, no map.
func (w *Workload) FillUsage(us []event.Usage, first uint64) {
	ids := w.idents(first, len(us))
	for j := range us {
		s := w.Spec(first + uint64(j))
		us[j] = event.Usage{
			Name:       w.Meters[s.Meter].EventName,
			Customer:   w.customerIDs[s.Customer],
			Value:      s.Value,
			Identifier: ids[j*w.IDLen : (j+1)*w.IDLen],
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
