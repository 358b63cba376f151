package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

// errUnaligned is what baselines return for ranges that are not whole
// hours: they keep no minute detail.
var errUnaligned = errors.New("bench: baselines answer hour-aligned ranges only")

// baseMeters is the meter table the baselines share: meters by event name
// and by id, validated with the engine's own event.Validate.
type baseMeters struct {
	byEvent map[string]*meter.Meter
	byID    map[string]*meter.Meter
}

func (b *baseMeters) create(ps []meter.Params, now time.Time) []string {
	b.byEvent, b.byID = map[string]*meter.Meter{}, map[string]*meter.Meter{}
	var ids []string
	for i, p := range ps {
		m := &meter.Meter{
			ID: fmt.Sprintf("mtr_base_%d", i), Seq: uint64(i + 1), DisplayName: p.DisplayName,
			EventName: p.EventName, Formula: p.Formula, CustomerKey: meter.DefaultCustomerKey,
			ValueKey: meter.DefaultValueKey, Status: meter.Active, Created: now, Updated: now,
		}
		b.byEvent[m.EventName], b.byID[m.ID] = m, m
		ids = append(ids, m.ID)
	}
	return ids
}

// query checks a summary query for the baselines: a known meter, an
// hour-aligned range (day-aligned with day grouping). It returns the meter
// and the range in unix seconds.
func (b *baseMeters) query(p meterdb.SummaryParams) (m *meter.Meter, start, end int64, err error) {
	m = b.byID[p.Meter]
	if m == nil {
		return nil, 0, 0, errors.New("bench: no such meter")
	}
	start, end = p.Start.Unix(), p.End.Unix()
	unit := int64(3600)
	if p.Grouping == meterdb.GroupDay {
		unit = 86400
	}
	if start%unit != 0 || end%unit != 0 || end <= start {
		return nil, 0, 0, errUnaligned
	}
	return m, start, end, nil
}

// cell is a baseline aggregate: count, sum and the newest entry.
type cell struct {
	count, sum int64
	lastTS     int64
	lastSeq    uint64
	lastVal    int64
}

func (c *cell) add(ts int64, seq uint64, v int64) {
	if c.count == 0 || ts > c.lastTS || ts == c.lastTS && seq > c.lastSeq {
		c.lastTS, c.lastSeq, c.lastVal = ts, seq, v
	}
	c.count++
	c.sum += v
}

func (c *cell) merge(o *cell) {
	if o == nil || o.count == 0 {
		return
	}
	if c.count == 0 || o.lastTS > c.lastTS || o.lastTS == c.lastTS && o.lastSeq > c.lastSeq {
		c.lastTS, c.lastSeq, c.lastVal = o.lastTS, o.lastSeq, o.lastVal
	}
	c.count += o.count
	c.sum += o.sum
}

func (c *cell) summary(f meter.Formula, start, end int64) meterdb.Summary {
	s := meterdb.Summary{Start: time.Unix(start, 0).UTC(), End: time.Unix(end, 0).UTC(), Count: c.count}
	switch {
	case c.count == 0:
	case f == meter.Count:
		s.Value = meterdb.Int128Of(c.count)
	case f == meter.Sum:
		s.Value = meterdb.Int128Of(c.sum)
	default:
		s.Value = meterdb.Int128Of(c.lastVal)
	}
	return s
}

type bucketKey struct {
	meter    uint64
	customer string
	start    int64 // hour or day start, unix seconds
}

// mutexMap is the naive in-memory ceiling: one global mutex around plain
// Go maps, an hour map and a day map of cells and a set of every
// identifier. It validates events exactly as the engine does but keeps no
// minute detail, no journal and no raw entries, and sums in int64.
type mutexMap struct {
	now    func() time.Time
	meters baseMeters

	mu     sync.Mutex // guards the fields below
	seq    uint64
	idents map[string]struct{}
	hours  map[bucketKey]*cell
	days   map[bucketKey]*cell
}

func newMutexMap(w *Workload) *mutexMap {
	return &mutexMap{now: w.Now, idents: map[string]struct{}{},
		hours: map[bucketKey]*cell{}, days: map[bucketKey]*cell{}}
}

func (t *mutexMap) CreateMeters(_ context.Context, ps []meter.Params) ([]string, error) {
	return t.meters.create(ps, t.now()), nil
}

func (t *mutexMap) Record(ctx context.Context, ev *event.Event) error {
	n, err := t.RecordBatch(ctx, unsafe.Slice(ev, 1))
	if err == nil && n > 0 {
		return errors.New("bench: mutexmap rejected an event")
	}
	return err
}

type validated struct {
	m  *meter.Meter
	v  event.Validated
	id string
}

// RecordBatch validates evs with event.Validate outside the lock, then
// dedupes and aggregates them under it.
func (t *mutexMap) RecordBatch(_ context.Context, evs []event.Event) (int, error) {
	now := t.now()
	var buf [128]validated
	vs := buf[:0]
	rejected := 0
	for i := range evs {
		m := t.meters.byEvent[evs[i].Name]
		v, err := event.Validate(&evs[i], m, now)
		if err != nil || evs[i].Identifier == "" {
			rejected++
			continue
		}
		vs = append(vs, validated{m, v, evs[i].Identifier})
	}
	return rejected + t.apply(vs), nil
}

// RecordUsage is the typed path a user's naive version would offer:
// event.ValidateUsage outside the lock (the engine's rules without a
// payload map), then the same dedupe and aggregation as RecordBatch.
func (t *mutexMap) RecordUsage(_ context.Context, us []event.Usage) (int, error) {
	now := t.now()
	var buf [128]validated
	vs := buf[:0]
	rejected := 0
	for i := range us {
		m := t.meters.byEvent[us[i].Name]
		v, err := event.ValidateUsage(&us[i], m, now)
		if err != nil || us[i].Identifier == "" {
			rejected++
			continue
		}
		vs = append(vs, validated{m, v, us[i].Identifier})
	}
	return rejected + t.apply(vs), nil
}

// apply takes the lock once for vs: an identifier already in the set is a
// duplicate and rejected; every other event is added to its hour and day
// cells. It returns the number of duplicates.
func (t *mutexMap) apply(vs []validated) (rejected int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, x := range vs {
		if _, dup := t.idents[x.id]; dup {
			rejected++
			continue
		}
		t.idents[x.id] = struct{}{}
		t.seq++
		ts := x.v.Timestamp
		for _, b := range [2]struct {
			m    map[bucketKey]*cell
			unit int64
		}{{t.hours, 3600}, {t.days, 86400}} {
			k := bucketKey{x.m.Seq, x.v.Customer, ts - ts%b.unit}
			c := b.m[k]
			if c == nil {
				c = &cell{}
				b.m[k] = c
			}
			c.add(ts, t.seq, x.v.Value)
		}
	}
	return rejected
}

func (t *mutexMap) Summaries(_ context.Context, p meterdb.SummaryParams) ([]meterdb.Summary, error) {
	m, start, end, err := t.meters.query(p)
	if err != nil {
		return nil, err
	}
	k := bucketKey{meter: m.Seq, customer: p.Customer}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.Grouping == meterdb.GroupHour || p.Grouping == meterdb.GroupDay {
		cells, unit := t.hours, int64(3600)
		if p.Grouping == meterdb.GroupDay {
			cells, unit = t.days, 86400
		}
		var out []meterdb.Summary
		for w := end - unit; w >= start; w -= unit {
			k.start = w
			if c := cells[k]; c != nil {
				out = append(out, c.summary(m.Formula, w, w+unit))
			}
		}
		return out, nil
	}
	var c cell
	for h := start; h < end; {
		if h%86400 == 0 && h+86400 <= end {
			k.start = h
			c.merge(t.days[k])
			h += 86400
			continue
		}
		k.start = h
		c.merge(t.hours[k])
		h += 3600
	}
	return []meterdb.Summary{c.summary(m.Formula, start, end)}, nil
}

func (t *mutexMap) Close() error {
	t.mu.Lock()
	t.idents, t.hours, t.days = nil, nil, nil
	t.mu.Unlock()
	return nil
}

func (t *mutexMap) Sizes() map[string]float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return map[string]float64{"hour_buckets": float64(len(t.hours)), "day_buckets": float64(len(t.days)),
		"identities": float64(len(t.idents))}
}
