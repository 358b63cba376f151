package meterdb_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

// This file checks the DB against a brute-force model: a list of every
// accepted raw event, from which every summary is recomputed from scratch
// following the semantics documented in doc.go. The model never looks at
// the DB's internals, so the same model serves a DB that is closed and
// reopened (or crashed and reopened) between actions: openDB is the one
// place that opens a database. A quarter of the checks run on a
// file-backed database and close and reopen it now and then.

// Time units in seconds.
const (
	secMinute = int64(60)
	secHour   = int64(3600)
	secDay    = int64(86400)
)

func floorTo(t, unit int64) int64 {
	r := t % unit
	if r < 0 {
		r += unit
	}
	return t - r
}

// testClock is an injected Options.Now; it moves only when told.
type testClock struct{ ns atomic.Int64 }

func newTestClock(t time.Time) *testClock {
	c := &testClock{}
	c.Set(t)
	return c
}

func (c *testClock) Now() time.Time            { return time.Unix(0, c.ns.Load()).UTC() }
func (c *testClock) Set(t time.Time)           { c.ns.Store(t.UnixNano()) }
func (c *testClock) Add(d time.Duration)       { c.ns.Add(int64(d)) }
func (c *testClock) Unix() int64               { return c.Now().Unix() }
func (c *testClock) Options() *meterdb.Options { return &meterdb.Options{Now: c.Now} }

// openDB opens the database under test. An empty path is an in-memory
// database; a file-backed path can be passed again after Close to reopen
// the same data.
func openDB(t rapid.TB, path string, opts *meterdb.Options) *meterdb.DB {
	t.Helper()
	db, err := meterdb.Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	return db
}

// sentinels maps every code an event or cancellation error may carry to
// the sentinel it must unwrap to.
var sentinels = map[string]error{
	event.CodeNoMeter:          event.ErrNoMeter,
	event.CodeArchivedMeter:    event.ErrArchivedMeter,
	event.CodeNoCustomer:       event.ErrNoCustomer,
	event.CodeNoValue:          event.ErrNoValue,
	event.CodeInvalidValue:     event.ErrInvalidValue,
	event.CodeTooManyDigits:    event.ErrTooManyDigits,
	event.CodeTooFarInPast:     event.ErrTooFarInPast,
	event.CodeInFuture:         event.ErrInFuture,
	event.CodeDuplicate:        event.ErrDuplicate,
	event.CodeParameterMissing: event.ErrInvalid,
	event.CodeStringTooLong:    event.ErrInvalid,
	event.CodeParameterInvalid: event.ErrInvalid,
	event.CodeNotFound:         event.ErrNotFound,
	event.CodeCancelExpired:    event.ErrCancelExpired,
	event.CodeAlreadyCancelled: event.ErrAlreadyCancelled,
}

// checkCodes fails unless err is nil and codes is empty, or err is an
// *event.Error whose code is one of codes and which unwraps to that code's
// sentinel.
func checkCodes(t rapid.TB, what string, err error, codes []string) {
	t.Helper()
	if len(codes) == 0 {
		if err != nil {
			t.Fatalf("%s: got error %v, want success", what, err)
		}
		return
	}
	var ee *event.Error
	if !errors.As(err, &ee) {
		t.Fatalf("%s: got %v, want an *event.Error with one of the codes %v", what, err, codes)
	}
	if !slices.Contains(codes, ee.Code) {
		t.Fatalf("%s: got code %s (%v), want one of %v", what, ee.Code, err, codes)
	}
	if !errors.Is(err, sentinels[ee.Code]) {
		t.Fatalf("%s: error %v with code %s does not unwrap to %v", what, err, ee.Code, sentinels[ee.Code])
	}
}

// modelEvent is one accepted event.
type modelEvent struct {
	seq       int // receipt order, 0 for the first accepted event
	meter     int // index into model.meters
	customer  string
	id        string
	ts        int64 // unix seconds
	value     int64 // the parsed value; 1 for count meters
	received  int64 // unix seconds
	cancelled bool
}

// newer reports whether e is after o in "last" order: greater timestamp,
// then received later.
func (e *modelEvent) newer(o *modelEvent) bool {
	return e.ts > o.ts || e.ts == o.ts && e.seq > o.seq
}

// model is the brute-force reference.
type model struct {
	meters []meter.Meter // creation order; the fields the DB must return
	events []*modelEvent // receipt order
	byID   map[string][]*modelEvent
	window int64 // dedupe window, seconds

	rejected, duplicates int64
}

func newModel(window time.Duration) *model {
	return &model{byID: map[string][]*modelEvent{}, window: int64(window / time.Second)}
}

func (m *model) meterByName(name string) int {
	for i := range m.meters {
		if m.meters[i].EventName == name {
			return i
		}
	}
	return -1
}

// taken reports whether an accepted event with identifier id was received
// within the dedupe window.
func (m *model) taken(id string, now int64) bool {
	evs := m.byID[id]
	return len(evs) > 0 && now-evs[len(evs)-1].received < m.window
}

var wholeNumber = regexp.MustCompile(`^[+-]?[0-9]+$`)

// parseValue follows the documented value rules: a whole decimal number,
// optionally signed, at most 15 digits after leading zeros.
func parseValue(s string) (int64, string) {
	if !wholeNumber.MatchString(s) {
		return 0, event.CodeInvalidValue
	}
	digits := strings.TrimLeft(strings.TrimLeft(s, "+-"), "0")
	if len(digits) > 15 {
		return 0, event.CodeTooManyDigits
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		panic(err)
	}
	return v, ""
}

// validate returns every code ev may be rejected with at now (none: it
// must be accepted), its meter index and, when valid, its customer, value
// and timestamp.
func (m *model) validate(ev event.Event, now time.Time) (codes []string, mi int, customer string, value, ts int64) {
	add := func(c string) { codes = append(codes, c) }
	switch {
	case ev.Name == "":
		add(event.CodeParameterMissing)
	case len(ev.Name) > 100:
		add(event.CodeStringTooLong)
	}
	if len(ev.Identifier) > 100 {
		add(event.CodeStringTooLong)
	}
	switch {
	case len(ev.Payload) == 0:
		add(event.CodeParameterMissing)
	case len(ev.Payload) > 50:
		add(event.CodeParameterInvalid)
	}
	for k, v := range ev.Payload {
		if len(k) > 100 || len(v) > 100 {
			add(event.CodeStringTooLong)
		}
	}
	mi = m.meterByName(ev.Name)
	if mi < 0 {
		add(event.CodeNoMeter)
	} else {
		mt := m.meters[mi]
		if mt.Status != meter.Active {
			add(event.CodeArchivedMeter)
		}
		customer = ev.Payload[mt.CustomerKey]
		if customer == "" {
			add(event.CodeNoCustomer)
		}
		value = 1
		if mt.Formula != meter.Count {
			raw := ev.Payload[mt.ValueKey]
			if raw == "" {
				add(event.CodeNoValue)
			} else if v, code := parseValue(raw); code != "" {
				add(code)
			} else {
				value = v
			}
		}
		ts = now.Unix()
		if !ev.Timestamp.IsZero() {
			ts = ev.Timestamp.Unix()
			if ev.Timestamp.Before(now.Add(-35 * 24 * time.Hour)) {
				add(event.CodeTooFarInPast)
			}
			if ev.Timestamp.After(now.Add(5 * time.Minute)) {
				add(event.CodeInFuture)
			}
		}
	}
	if ev.Identifier != "" && m.taken(ev.Identifier, now.Unix()) {
		add(event.CodeDuplicate)
	}
	return codes, mi, customer, value, ts
}

// accept appends an accepted event.
func (m *model) accept(mi int, customer, id string, value, ts, now int64) *modelEvent {
	e := &modelEvent{seq: len(m.events), meter: mi, customer: customer, id: id, ts: ts, value: value, received: now}
	m.events = append(m.events, e)
	m.byID[id] = append(m.byID[id], e)
	return e
}

// cancel returns the codes Cancel may fail with (none: it must succeed)
// and the event it cancels. An identifier names the newest event of the
// meter that carries it. An event received 24 hours ago or earlier can no longer be
// cancelled; once it is older than the retention (the longer of the dedupe
// and cancellation windows, plus a minute) the DB may have forgotten it
// and may answer not found instead.
func (m *model) cancel(name, id string, now int64) ([]string, *modelEvent) {
	mi := m.meterByName(name)
	var e *modelEvent
	for _, x := range m.byID[id] {
		if x.meter == mi {
			e = x
		}
	}
	if mi < 0 || id == "" || e == nil {
		return []string{event.CodeNotFound}, nil
	}
	age := now - e.received
	if age >= secDay {
		if age >= max(m.window, secDay)+secMinute {
			return []string{event.CodeCancelExpired, event.CodeNotFound}, nil
		}
		return []string{event.CodeCancelExpired}, nil
	}
	if e.cancelled {
		return []string{event.CodeAlreadyCancelled}, nil
	}
	return nil, e
}

// surviving returns the uncancelled events of series (mi, customer) that
// count: all of them, or for a pre-aggregated meter only the newest of each
// customer window.
func (m *model) surviving(mi int, customer string) []*modelEvent {
	var unit int64
	switch m.meters[mi].EventTimeWindow {
	case meter.Hour:
		unit = secHour
	case meter.Day:
		unit = secDay
	}
	var out []*modelEvent
	newest := map[int64]*modelEvent{}
	for _, e := range m.events {
		if e.meter != mi || e.customer != customer || e.cancelled {
			continue
		}
		if unit == 0 {
			out = append(out, e)
			continue
		}
		w := floorTo(e.ts, unit)
		if o := newest[w]; o == nil || e.newer(o) {
			newest[w] = e
		}
	}
	for _, e := range newest {
		out = append(out, e)
	}
	return out
}

// modelWindow is one expected summary.
type modelWindow struct {
	start, end int64
	count      int64
	value      *big.Int
}

func (w modelWindow) String() string {
	return fmt.Sprintf("[%s, %s) count=%d value=%s", time.Unix(w.start, 0).UTC().Format(time.RFC3339),
		time.Unix(w.end, 0).UTC().Format(time.RFC3339), w.count, w.value)
}

// aggregate applies mi's formula to evs.
func (m *model) aggregate(mi int, start, end int64, evs []*modelEvent) modelWindow {
	w := modelWindow{start: start, end: end, value: new(big.Int)}
	var last *modelEvent
	for _, e := range evs {
		w.count++
		w.value.Add(w.value, big.NewInt(e.value))
		if last == nil || e.newer(last) {
			last = e
		}
	}
	switch m.meters[mi].Formula {
	case meter.Count:
		w.value.SetInt64(w.count)
	case meter.Last:
		w.value.SetInt64(0)
		if last != nil {
			w.value.SetInt64(last.value)
		}
	}
	return w
}

// summaries computes Summaries from the raw events.
func (m *model) summaries(mi int, customer string, start, end int64, g meter.Window) []modelWindow {
	var in []*modelEvent
	for _, e := range m.surviving(mi, customer) {
		if e.ts >= start && e.ts < end {
			in = append(in, e)
		}
	}
	if g == meter.NoWindow {
		return []modelWindow{m.aggregate(mi, start, end, in)}
	}
	unit := secHour
	if g == meter.Day {
		unit = secDay
	}
	groups := map[int64][]*modelEvent{}
	for _, e := range in {
		w := floorTo(e.ts, unit)
		groups[w] = append(groups[w], e)
	}
	var out []modelWindow
	for w, evs := range groups {
		out = append(out, m.aggregate(mi, w, w+unit, evs))
	}
	slices.SortFunc(out, func(a, b modelWindow) int { return int(b.start - a.start) })
	return out
}

// sizes returns what Stats must report about the aggregates: series,
// minute cells, hour and day buckets, raw entries. Days before frozen
// (Stats.FrozenBefore) are frozen or may be: they keep no raw entries
// when they are; rawFrozen counts the raw entries of those days.
func (m *model) sizes(frozen int64) (series, minutes, hours, days, raw, rawFrozen int64) {
	type key struct {
		mi       int
		customer string
	}
	seen := map[key]bool{}
	for _, e := range m.events {
		if !e.cancelled {
			seen[key{e.meter, e.customer}] = true
		}
	}
	for k := range seen {
		series++
		mt := m.meters[k.mi]
		mins, hrs, dys := map[int64]bool{}, map[int64]bool{}, map[int64]bool{}
		for _, e := range m.surviving(k.mi, k.customer) {
			mins[floorTo(e.ts, secMinute)] = true
			hrs[floorTo(e.ts, secHour)] = true
			dys[floorTo(e.ts, secDay)] = true
		}
		for _, e := range m.events {
			if e.meter != k.mi || e.customer != k.customer || e.cancelled {
				continue
			}
			// Raw entries are kept for last meters and pre-aggregated
			// meters, in the hour (last, hour window) or day (day window)
			// bucket of the event, which exists while it holds them.
			keeps := mt.EventTimeWindow != meter.NoWindow || mt.Formula == meter.Last
			switch {
			case keeps && e.ts < frozen:
				rawFrozen++
			case mt.EventTimeWindow == meter.Day:
				raw++
				dys[floorTo(e.ts, secDay)] = true
			case keeps:
				raw++
				hrs[floorTo(e.ts, secHour)] = true
			}
		}
		minutes += int64(len(mins))
		hours += int64(len(hrs))
		days += int64(len(dys))
	}
	return
}

// Pools of names the generators draw from; small, so that collisions are
// frequent.
var (
	eventNames   = []string{"e0", "e1", "e2", "e3", "e4"}
	customers    = []string{"cus_a", "cus_b", "cus_c"}
	identPool    = []string{"p0", "p1", "p2", "p3", "p4", "p5"}
	validValues  = []string{"0", "1", "2", "7", "-3", "42", "+5", "-0", "007", "999999999999999", "-999999999999999", "000000000000000000000000000012", "100000000000000"}
	badValues    = []string{"1.5", "abc", " 1", "1 ", "1e3", "--1", "+", "-", "0x10", "+-1", "١", "12345678901234567a"}
	longValues   = []string{"1000000000000000", "-9999999999999999", "0001234567890123456", "+12345678901234567890"}
	customKeySet = [][2]string{{"", ""}, {"customer", "tokens"}, {"user", ""}, {"", "amount"}}
)

// machine is the rapid state machine: a DB and the model it must match.
type machine struct {
	ctx   context.Context
	clock *testClock
	t0    time.Time // initial clock
	path  string    // "" for an in-memory DB
	opts  meterdb.Options
	db    *meterdb.DB
	m     *model
	fresh int // counter for fresh identifiers

	// Every other compare goes through AppendSummaries, reusing buf after
	// a sentinel that must survive.
	queries int
	buf     []meterdb.Summary

	// Counters restart with each open: Check compares the DB's counters
	// since the last open with the model's since then.
	base      meterdb.Stats
	baseModel [4]int64 // accepted, cancelled, rejected, duplicates at the last open
}

func newMachine(t *rapid.T) *machine {
	t0 := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC).
		Add(time.Duration(rapid.Int64Range(0, secDay-1).Draw(t, "t0_offset_s")) * time.Second)
	window := rapid.SampledFrom([]time.Duration{0, time.Hour, 2 * time.Hour, 30 * time.Hour}).Draw(t, "dedupe_window")
	shards := rapid.SampledFrom([]int{0, 1, 2}).Draw(t, "shards")
	s := &machine{ctx: context.Background(), clock: newTestClock(t0), t0: t0}
	s.opts = meterdb.Options{Now: s.clock.Now, DedupeWindow: window, Shards: shards}
	// Small dedupe epochs, in time and in identifiers, so that resends
	// cross epoch boundaries (and epochs retire) often.
	meterdb.SetDedupeEpochsForTest(&s.opts,
		rapid.SampledFrom([]time.Duration{0, time.Minute, 20 * time.Minute}).Draw(t, "dedupe_epoch"),
		rapid.SampledFrom([]int{0, 1, 4}).Draw(t, "dedupe_min_epoch"))
	if rapid.IntRange(0, 3).Draw(t, "file_backed") == 0 {
		dir, err := os.MkdirTemp("", "meterdb-model-")
		if err != nil {
			t.Fatal(err)
		}
		s.path = filepath.Join(dir, "model.db")
		s.opts.NoFsync = true // a process crash loses nothing without it
	}
	if window == 0 {
		window = 24 * time.Hour
	}
	s.m = newModel(window)
	s.db = openDB(t, s.path, &s.opts)
	for range rapid.IntRange(1, 3).Draw(t, "initial_meters") {
		s.CreateMeter(t)
	}
	return s
}

func (s *machine) now() time.Time { return s.clock.Now() }

// close closes the DB and removes its file.
func (s *machine) close() {
	s.db.Close()
	if s.path != "" {
		os.RemoveAll(filepath.Dir(s.path))
	}
}

// counters returns the model's event counters: accepted, cancelled,
// rejected, duplicates.
func (s *machine) counters() [4]int64 {
	var c [4]int64
	c[0] = int64(len(s.m.events))
	for _, e := range s.m.events {
		if e.cancelled {
			c[1]++
		}
	}
	c[2], c[3] = s.m.rejected, s.m.duplicates
	return c
}

// Reopen closes a file-backed DB and opens it again: everything the model
// knows must survive.
func (s *machine) Reopen(t *rapid.T) {
	s.reopen(t, s.db.Close)
	coverage.reopens.Add(1)
}

// Crash ends a file-backed DB as a killed process would (no final
// checkpoint; the next Open replays the log since the last one) and opens
// it again: with synchronous durability everything the model knows must
// survive.
func (s *machine) Crash(t *rapid.T) {
	s.reopen(t, func() error { return meterdb.CrashForTest(s.db) })
	coverage.crashes.Add(1)
}

// reopen ends a file-backed DB with end and opens the file again.
func (s *machine) reopen(t *rapid.T, end func() error) {
	if s.path == "" {
		t.Skip("in-memory database")
	}
	if err := end(); err != nil {
		t.Fatalf("ending the database: %v", err)
	}
	s.db = openDB(t, s.path, &s.opts)
	s.base, s.baseModel = s.db.Stats(), s.counters()
}

// Checkpoint writes the aggregates changed since the last checkpoint, so
// that a later Crash replays only the log after it.
func (s *machine) Checkpoint(t *rapid.T) {
	if s.path == "" {
		t.Skip("in-memory database")
	}
	if err := meterdb.CheckpointForTest(s.db); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
}

// Check runs after every action: counters and sizes, and every series'
// total over a range holding all its events.
func (s *machine) Check(t *rapid.T) {
	st := s.db.Stats()
	d, c := st.Sub(s.base), s.counters()
	for i := range c {
		c[i] -= s.baseModel[i]
	}
	if d.EventsAccepted != c[0] || d.EventsCancelled != c[1] || d.EventsRejected != c[2] || d.EventsDuplicate != c[3] ||
		st.Meters != int64(len(s.m.meters)) {
		t.Fatalf("stats since the last open %+v, want accepted %d cancelled %d rejected %d duplicates %d; meters %d, want %d",
			d, c[0], c[1], c[2], c[3], st.Meters, len(s.m.meters))
	}
	var frozen int64
	if !st.FrozenBefore.IsZero() {
		frozen = st.FrozenBefore.Unix()
		coverage.frozen.Add(1)
	}
	if st.FrozenStoredBlocks > 0 {
		coverage.stored.Add(1)
	}
	series, minutes, hours, days, raw, rawFrozen := s.m.sizes(frozen)
	// Frozen days drop their raw entries; a day before the horizon that a
	// checkpoint has not covered yet still holds them.
	if st.Series != series || st.MinuteCells != minutes || st.HourBuckets != hours || st.DayBuckets != days ||
		st.RawEntries < raw || st.RawEntries > raw+rawFrozen || s.path == "" && st.RawEntries != raw {
		t.Fatalf("stats %+v, want series %d minute cells %d hour buckets %d day buckets %d raw entries %d (and up to %d more of days before the horizon)",
			st, series, minutes, hours, days, raw, rawFrozen)
	}
	start := floorTo(s.t0.Unix(), secDay) - 40*secDay
	end := floorTo(s.clock.Unix(), secDay) + 2*secDay
	for mi := range s.m.meters {
		for _, c := range customers {
			s.compare(t, mi, c, start, end, meter.NoWindow)
		}
		s.compareCustomers(t, mi, start, end, 2)
		s.compareTotals(t, mi, start, end, meter.NoWindow)
		s.compareTop(t, mi, start, end, 2)
	}
}

// compare checks one Summaries call against the model.
func (s *machine) compare(t *rapid.T, mi int, customer string, start, end int64, g meter.Window) (nonEmpty bool) {
	t.Helper()
	p := meterdb.SummaryParams{Meter: s.m.meters[mi].ID, Customer: customer,
		Start: time.Unix(start, 0).UTC(), End: time.Unix(end, 0).UTC(), Grouping: meterdb.Grouping(g)}
	var got []meterdb.Summary
	var err error
	if s.queries++; s.queries%2 == 0 {
		got, err = s.db.Summaries(s.ctx, p)
	} else {
		sentinel := meterdb.Summary{Count: -1}
		s.buf = append(s.buf[:0], sentinel)
		s.buf, err = s.db.AppendSummaries(s.ctx, s.buf, p)
		if len(s.buf) == 0 || s.buf[0] != sentinel {
			t.Fatalf("AppendSummaries(%+v) lost what dst held: %v", p, s.buf)
		}
		got = s.buf[1:]
	}
	if err != nil {
		t.Fatalf("Summaries(%+v): %v", p, err)
	}
	want := s.m.summaries(mi, customer, start, end, g)
	mt := s.m.meters[mi]
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = got[i].Start.Unix() == want[i].start && got[i].End.Unix() == want[i].end &&
			got[i].Count == want[i].count && got[i].Value.Big().Cmp(want[i].value) == 0 &&
			got[i].Start.Location() == time.UTC && got[i].End.Location() == time.UTC
		nonEmpty = nonEmpty || got[i].Count > 0
	}
	if !ok {
		var b strings.Builder
		for _, w := range got {
			fmt.Fprintf(&b, "\n  got  [%s, %s) count=%d value=%s", w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339), w.Count, w.Value)
		}
		for _, w := range want {
			fmt.Fprintf(&b, "\n  want %v", w)
		}
		for _, e := range s.m.events {
			if e.meter == mi && e.customer == customer {
				fmt.Fprintf(&b, "\n  event seq=%d ts=%s value=%d cancelled=%v id=%s", e.seq,
					time.Unix(e.ts, 0).UTC().Format(time.RFC3339), e.value, e.cancelled, e.id)
			}
		}
		t.Fatalf("Summaries of meter %s (%s, window %q) for %s over [%s, %s) grouping %q differ:%s",
			mt.EventName, mt.Formula, mt.EventTimeWindow, customer, p.Start.Format(time.RFC3339), p.End.Format(time.RFC3339), g, b.String())
	}
	return nonEmpty
}

// CreateMeter creates a meter with a random formula, window and payload
// keys; event names collide on purpose.
func (s *machine) CreateMeter(t *rapid.T) {
	keys := rapid.SampledFrom(customKeySet).Draw(t, "keys")
	p := meter.Params{
		DisplayName:     "meter",
		EventName:       rapid.SampledFrom(eventNames).Draw(t, "event_name"),
		Formula:         rapid.SampledFrom([]meter.Formula{meter.Count, meter.Sum, meter.Last}).Draw(t, "formula"),
		EventTimeWindow: rapid.SampledFrom([]meter.Window{meter.NoWindow, meter.Hour, meter.Day}).Draw(t, "window"),
		CustomerKey:     keys[0],
		ValueKey:        keys[1],
	}
	got, err := s.db.CreateMeter(s.ctx, p)
	if s.m.meterByName(p.EventName) >= 0 {
		var me *meter.Error
		if !errors.Is(err, meter.ErrEventNameTaken) || !errors.As(err, &me) || me.Code != meter.CodeEventNameTaken || me.Param != "event_name" {
			t.Fatalf("CreateMeter with taken event name %q: %v", p.EventName, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("CreateMeter(%+v): %v", p, err)
	}
	now := s.now().Truncate(time.Second)
	want := meter.Meter{
		ID: got.ID, Seq: uint64(len(s.m.meters) + 1), DisplayName: p.DisplayName, EventName: p.EventName,
		Formula: p.Formula, CustomerKey: cmp.Or(p.CustomerKey, meter.DefaultCustomerKey),
		ValueKey: cmp.Or(p.ValueKey, meter.DefaultValueKey), EventTimeWindow: p.EventTimeWindow,
		Status: meter.Active, Created: now, Updated: now,
	}
	if !strings.HasPrefix(got.ID, "mtr_") || len(got.ID) != 28 {
		t.Fatalf("meter id %q, want mtr_ and 24 characters", got.ID)
	}
	for _, o := range s.m.meters {
		if o.ID == got.ID {
			t.Fatalf("meter id %q reused", got.ID)
		}
	}
	checkMeter(t, got, want)
	s.m.meters = append(s.m.meters, want)
}

func checkMeter(t rapid.TB, got, want meter.Meter) {
	t.Helper()
	if got.ID != want.ID || got.Seq != want.Seq || got.DisplayName != want.DisplayName || got.EventName != want.EventName ||
		got.Formula != want.Formula || got.CustomerKey != want.CustomerKey || got.ValueKey != want.ValueKey ||
		got.EventTimeWindow != want.EventTimeWindow || got.Status != want.Status || !got.Created.Equal(want.Created) ||
		!got.Updated.Equal(want.Updated) || !got.DeactivatedAt.Equal(want.DeactivatedAt) || got.DeactivatedAt.IsZero() != want.DeactivatedAt.IsZero() {
		t.Fatalf("meter\n got  %+v\n want %+v", got, want)
	}
}

func (s *machine) pickMeter(t *rapid.T) int {
	if len(s.m.meters) == 0 {
		t.Skip("no meters")
	}
	return rapid.IntRange(0, len(s.m.meters)-1).Draw(t, "meter")
}

// Deactivate and Reactivate flip a meter's status; both are idempotent.
func (s *machine) Deactivate(t *rapid.T) { s.setStatus(t, meter.Inactive) }
func (s *machine) Reactivate(t *rapid.T) { s.setStatus(t, meter.Active) }

func (s *machine) setStatus(t *rapid.T, st meter.Status) {
	mi := s.pickMeter(t)
	want := s.m.meters[mi]
	var got meter.Meter
	var err error
	if st == meter.Inactive {
		got, err = s.db.DeactivateMeter(s.ctx, want.ID)
	} else {
		got, err = s.db.ReactivateMeter(s.ctx, want.ID)
	}
	if err != nil {
		t.Fatalf("set status %s: %v", st, err)
	}
	if want.Status != st {
		now := s.now().Truncate(time.Second)
		want.Status, want.Updated, want.DeactivatedAt = st, now, time.Time{}
		if st == meter.Inactive {
			want.DeactivatedAt = now
		}
	}
	checkMeter(t, got, want)
	s.m.meters[mi] = want
}

// Rename changes a meter's display name.
func (s *machine) Rename(t *rapid.T) {
	mi := s.pickMeter(t)
	want := s.m.meters[mi]
	want.DisplayName = rapid.SampledFrom([]string{"a", "b", "Tokens"}).Draw(t, "display_name")
	want.Updated = s.now().Truncate(time.Second)
	got, err := s.db.UpdateMeter(s.ctx, want.ID, want.DisplayName)
	if err != nil {
		t.Fatal(err)
	}
	checkMeter(t, got, want)
	s.m.meters[mi] = want
}

// ListMeters compares the meter list, newest first, with every status
// filter.
func (s *machine) ListMeters(t *rapid.T) {
	for _, st := range []meter.Status{"", meter.Active, meter.Inactive} {
		got, more, err := s.db.ListMeters(s.ctx, meter.ListParams{Status: st, Limit: 100})
		if err != nil || more {
			t.Fatalf("ListMeters(%q): more %v, %v", st, more, err)
		}
		var want []meter.Meter
		for i := len(s.m.meters) - 1; i >= 0; i-- {
			if st == "" || s.m.meters[i].Status == st {
				want = append(want, s.m.meters[i])
			}
		}
		if len(got) != len(want) {
			t.Fatalf("ListMeters(%q): %d meters, want %d", st, len(got), len(want))
		}
		for i := range got {
			checkMeter(t, got[i], want[i])
		}
		for i := range want {
			m, err := s.db.Meter(s.ctx, want[i].ID)
			if err != nil {
				t.Fatal(err)
			}
			checkMeter(t, m, want[i])
		}
	}
}

// drawTimestamp returns zero (now), a point on a grid of a few hours near
// now or near the initial clock (so that minutes, hours and timestamps
// collide), a point at the edges of the accepted range, or any accepted
// point.
func (s *machine) drawTimestamp(t *rapid.T) time.Time {
	now := s.now()
	var ts time.Time
	switch k := rapid.IntRange(0, 19).Draw(t, "ts_kind"); {
	case k < 4:
		return time.Time{}
	case k < 10:
		h := rapid.SampledFrom([]int64{0, 1, 2, 23, 24, 25}).Draw(t, "ts_hours_ago")
		ts = time.Unix(floorTo(now.Unix(), secHour)-h*secHour, 0)
	case k < 16:
		d := rapid.SampledFrom([]int64{0, -1, 1}).Draw(t, "ts_day")
		h := rapid.SampledFrom([]int64{0, 1, 12, 23}).Draw(t, "ts_hour")
		ts = time.Unix(floorTo(s.t0.Unix(), secDay)+d*secDay+h*secHour, 0)
	case k < 18:
		edges := []time.Duration{-event.MaxPast - time.Second, -event.MaxPast, -event.MaxPast + time.Second,
			event.MaxFuture - time.Second, event.MaxFuture, event.MaxFuture + time.Second}
		return now.Add(rapid.SampledFrom(edges).Draw(t, "ts_edge"))
	default:
		return now.Add(-time.Duration(rapid.Int64Range(0, 35*secDay).Draw(t, "ts_ago_s")) * time.Second)
	}
	m := rapid.SampledFrom([]int64{0, 1, 30, 59}).Draw(t, "ts_minute")
	sec := rapid.SampledFrom([]int64{0, 1, 59}).Draw(t, "ts_second")
	ts = ts.Add(time.Duration(m*secMinute+sec) * time.Second)
	if rapid.IntRange(0, 9).Draw(t, "ts_subsecond") == 0 {
		ts = ts.Add(500 * time.Millisecond)
	}
	return ts.UTC()
}

func (s *machine) drawIdentifier(t *rapid.T) string {
	switch k := rapid.IntRange(0, 9).Draw(t, "id_kind"); {
	case k < 3:
		s.fresh++
		return "u" + strconv.Itoa(s.fresh)
	case k < 5:
		return ""
	case k < 8:
		return rapid.SampledFrom(identPool).Draw(t, "id_pool")
	default:
		if len(s.m.events) == 0 {
			return ""
		}
		return s.m.events[rapid.IntRange(0, len(s.m.events)-1).Draw(t, "id_reuse")].id
	}
}

// drawEvent returns a mostly valid event; some break one rule or another.
func (s *machine) drawEvent(t *rapid.T) event.Event {
	name := rapid.SampledFrom(append(eventNames, "e_none")).Draw(t, "name")
	custKey, valKey := meter.DefaultCustomerKey, meter.DefaultValueKey
	if len(s.m.meters) > 0 && rapid.IntRange(0, 9).Draw(t, "unknown_meter") < 9 {
		mt := s.m.meters[rapid.IntRange(0, len(s.m.meters)-1).Draw(t, "meter")]
		name, custKey, valKey = mt.EventName, mt.CustomerKey, mt.ValueKey
	}
	value := rapid.SampledFrom(validValues).Draw(t, "value")
	switch rapid.IntRange(0, 19).Draw(t, "value_kind") {
	case 18:
		value = rapid.SampledFrom(badValues).Draw(t, "bad_value")
	case 19:
		value = rapid.SampledFrom(longValues).Draw(t, "long_value")
	}
	ev := event.Event{
		Name:       name,
		Payload:    map[string]string{custKey: rapid.SampledFrom(customers).Draw(t, "customer"), valKey: value},
		Identifier: s.drawIdentifier(t),
		Timestamp:  s.drawTimestamp(t),
	}
	switch rapid.IntRange(0, 49).Draw(t, "fault") {
	case 36:
		delete(ev.Payload, custKey)
	case 37:
		ev.Payload[custKey] = ""
	case 38:
		delete(ev.Payload, valKey)
	case 39:
		ev.Payload[valKey] = ""
	case 40:
		ev.Payload = map[string]string{meter.DefaultCustomerKey: "cus_a", meter.DefaultValueKey: "1"}
	case 41:
		ev.Payload["extra"] = "ignored"
	case 42:
		for i := len(ev.Payload); i <= 50; i++ {
			ev.Payload["k"+strconv.Itoa(i)] = "x"
		}
	case 43:
		ev.Payload[strings.Repeat("k", 101)] = "x"
	case 44:
		ev.Payload["note"] = strings.Repeat("x", 101)
	case 45:
		ev.Payload = nil
	case 46:
		ev.Name = ""
	case 47:
		ev.Name = strings.Repeat("e", 101)
	case 48:
		ev.Identifier = strings.Repeat("i", 101)
	case 49:
		ev.Payload[custKey] = strings.Repeat("c", 100) // longest allowed
	}
	return ev
}

// record checks the DB's answer to ev (err, and out, ev as returned) and
// applies it to the model.
func (s *machine) record(t *rapid.T, what string, ev, out event.Event, err error) {
	now := s.now()
	codes, mi, customer, value, ts := s.m.validate(ev, now)
	checkCodes(t, fmt.Sprintf("%s %+v", what, ev), err, codes)
	if err != nil {
		if errors.Is(err, event.ErrDuplicate) {
			s.m.duplicates++
			coverage.duplicates.Add(1)
		} else {
			s.m.rejected++
			coverage.rejected.Add(1)
		}
		return
	}
	coverage.accepted.Add(1)
	id := out.Identifier
	switch {
	case ev.Identifier != "" && id != ev.Identifier:
		t.Fatalf("%s: identifier %q became %q", what, ev.Identifier, id)
	case ev.Identifier == "" && (id == "" || len(id) > 100 || len(s.m.byID[id]) > 0):
		t.Fatalf("%s: generated identifier %q is empty, too long or reused", what, id)
	case !ev.Timestamp.IsZero() && !out.Timestamp.Equal(ev.Timestamp):
		t.Fatalf("%s: timestamp %v became %v", what, ev.Timestamp, out.Timestamp)
	case ev.Timestamp.IsZero() && !out.Timestamp.Equal(time.Unix(now.Unix(), 0)):
		t.Fatalf("%s: default timestamp is %v, want %v", what, out.Timestamp, now.Truncate(time.Second))
	}
	if len(s.m.byID[id]) > 0 {
		coverage.reaccepted.Add(1)
	}
	s.m.accept(mi, customer, id, value, ts, now.Unix())
}

// Record records one event.
func (s *machine) Record(t *rapid.T) {
	ev := s.drawEvent(t)
	out, err := s.db.Record(s.ctx, ev)
	s.record(t, "Record", ev, out, err)
}

// RecordBatch records a few events together; some share identifiers.
func (s *machine) RecordBatch(t *rapid.T) {
	n := rapid.IntRange(1, 8).Draw(t, "batch_size")
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = s.drawEvent(t)
		if i > 0 && rapid.IntRange(0, 3).Draw(t, "share_id") == 0 {
			evs[i].Identifier = evs[rapid.IntRange(0, i-1).Draw(t, "share_with")].Identifier
		}
	}
	in := slices.Clone(evs)
	errs, err := s.db.RecordBatch(s.ctx, evs)
	if err != nil || len(errs) != n {
		t.Fatalf("RecordBatch: %d errors, %v", len(errs), err)
	}
	for i := range evs {
		s.record(t, fmt.Sprintf("RecordBatch[%d]", i), in[i], evs[i], errs[i])
	}
}

// RecordUsage records a few events in typed form. Events that the typed
// form cannot express (a payload of the wrong shape, a value that is not a
// number) are left out; for the rest, the answer must be the one the model
// gives the equivalent payload event.
func (s *machine) RecordUsage(t *rapid.T) {
	n := rapid.IntRange(1, 8).Draw(t, "batch_size")
	var evs []event.Event
	var us []event.Usage
	for range n {
		ev := s.drawEvent(t)
		u := event.Usage{Name: ev.Name, Identifier: ev.Identifier, Timestamp: ev.Timestamp}
		if event.CheckShape(&ev) != nil {
			continue
		}
		custKey, valueKey, count := meter.DefaultCustomerKey, meter.DefaultValueKey, false
		if mi := s.m.meterByName(ev.Name); mi >= 0 {
			custKey, valueKey, count = s.m.meters[mi].CustomerKey, s.m.meters[mi].ValueKey, s.m.meters[mi].Formula == meter.Count
		}
		u.Customer = ev.Payload[custKey]
		if count {
			u.Value = rapid.Int64().Draw(t, "ignored_value") // count meters ignore it
		} else {
			raw, ok := ev.Payload[valueKey]
			v, err := event.ParseValue(raw)
			if !ok || raw == "" || (err != nil && err.Code != event.CodeTooManyDigits) {
				continue
			}
			if err != nil {
				v = 1_000_000_000_000_000 // sixteen digits, as the payload had
			}
			u.Value = v
		}
		evs, us = append(evs, ev), append(us, u)
	}
	if len(us) == 0 {
		t.Skip("no event of the typed form")
	}
	errs, err := s.db.RecordUsage(s.ctx, us)
	if err != nil || len(errs) != len(us) {
		t.Fatalf("RecordUsage: %d errors, %v", len(errs), err)
	}
	for i := range us {
		out := evs[i]
		out.Identifier, out.Timestamp = us[i].Identifier, us[i].Timestamp
		s.record(t, fmt.Sprintf("RecordUsage[%d]", i), evs[i], out, errs[i])
	}
}

// RecordDuplicate records a valid event with the identifier of an accepted
// one: a duplicate within the dedupe window, accepted after it.
func (s *machine) RecordDuplicate(t *rapid.T) {
	if len(s.m.events) == 0 {
		t.Skip("no events")
	}
	e := s.m.events[rapid.IntRange(0, len(s.m.events)-1).Draw(t, "event")]
	mi := s.pickMeter(t)
	mt := s.m.meters[mi]
	ev := event.Event{Name: mt.EventName, Identifier: e.id,
		Payload: map[string]string{mt.CustomerKey: rapid.SampledFrom(customers).Draw(t, "customer"), mt.ValueKey: "3"}}
	out, err := s.db.Record(s.ctx, ev)
	s.record(t, "Record duplicate", ev, out, err)
}

// ResendAtEdge moves the clock to one second before, at or one second
// after the end of an accepted identifier's dedupe window and resends it
// (in a batch with fresh events, or alone): a duplicate just inside the
// window, accepted just outside, across however many dedupe epochs the
// window spans.
func (s *machine) ResendAtEdge(t *rapid.T) {
	if len(s.m.events) == 0 {
		t.Skip("no events")
	}
	e := s.m.events[len(s.m.events)-1-rapid.IntRange(0, len(s.m.events)-1).Draw(t, "back")]
	last := s.m.byID[e.id][len(s.m.byID[e.id])-1]
	target := last.received + s.m.window + rapid.SampledFrom([]int64{-1, 0, 1}).Draw(t, "edge_s")
	if target < s.clock.Unix() {
		t.Skip("edge already passed")
	}
	s.clock.Set(time.Unix(target, 0))
	mt := s.m.meters[s.pickMeter(t)]
	ev := event.Event{Name: mt.EventName, Identifier: e.id,
		Payload: map[string]string{mt.CustomerKey: rapid.SampledFrom(customers).Draw(t, "customer"), mt.ValueKey: "2"}}
	inside := s.m.taken(e.id, s.clock.Unix())
	if rapid.Bool().Draw(t, "alone") {
		out, err := s.db.Record(s.ctx, ev)
		s.record(t, "Resend at the window's edge", ev, out, err)
	} else {
		evs := []event.Event{s.drawEvent(t), ev, s.drawEvent(t)}
		in := slices.Clone(evs)
		errs, err := s.db.RecordBatch(s.ctx, evs)
		if err != nil || len(errs) != len(evs) {
			t.Fatalf("RecordBatch with a resend at the window's edge: %d errors, %v", len(errs), err)
		}
		for i := range evs {
			s.record(t, fmt.Sprintf("Resend at the window's edge, RecordBatch[%d]", i), in[i], evs[i], errs[i])
		}
	}
	if inside {
		coverage.edgeInside.Add(1)
	} else {
		coverage.edgeOutside.Add(1)
	}
}

// Cancel cancels an accepted event, or tries an unknown, cancelled or
// expired one, or a wrong event name.
func (s *machine) Cancel(t *rapid.T) {
	name := rapid.SampledFrom(append(eventNames, "e_none")).Draw(t, "name")
	id := rapid.SampledFrom(append(identPool, "", "unknown")).Draw(t, "id")
	if len(s.m.events) > 0 && rapid.IntRange(0, 4).Draw(t, "unknown") < 4 {
		e := s.m.events[rapid.IntRange(0, len(s.m.events)-1).Draw(t, "event")]
		if rapid.Bool().Draw(t, "recent") {
			e = s.m.events[len(s.m.events)-1-rapid.IntRange(0, min(len(s.m.events)-1, 3)).Draw(t, "recent_event")]
		}
		id = e.id
		if rapid.IntRange(0, 5).Draw(t, "wrong_name") < 5 {
			name = s.m.meters[e.meter].EventName
		}
	}
	err := s.db.Cancel(s.ctx, name, id)
	codes, e := s.m.cancel(name, id, s.clock.Unix())
	checkCodes(t, fmt.Sprintf("Cancel(%q, %q)", name, id), err, codes)
	if err == nil {
		e.cancelled = true
		coverage.cancels.Add(1)
	} else {
		coverage.cancelErrors.Add(1)
		if errors.Is(err, event.ErrCancelExpired) {
			coverage.expired.Add(1)
		}
	}
}

// Advance moves the clock by a random amount, from milliseconds to days.
func (s *machine) Advance(t *rapid.T) {
	var d time.Duration
	switch rapid.IntRange(0, 5).Draw(t, "advance_kind") {
	case 0:
		d = time.Duration(rapid.IntRange(1, 999).Draw(t, "ms")) * time.Millisecond
	case 1:
		d = time.Duration(rapid.IntRange(1, 120).Draw(t, "s")) * time.Second
	case 2:
		d = time.Duration(rapid.IntRange(1, 180).Draw(t, "min")) * time.Minute
	case 3:
		d = time.Duration(rapid.IntRange(1, 30).Draw(t, "h")) * time.Hour
	case 4:
		d = time.Duration(rapid.IntRange(1, 3).Draw(t, "d"))*24*time.Hour + time.Duration(rapid.IntRange(0, 3599).Draw(t, "s"))*time.Second
	case 5:
		d = 24*time.Hour + time.Duration(rapid.IntRange(0, 120).Draw(t, "s"))*time.Second
	}
	s.clock.Add(d)
}

// AdvanceFar moves the clock by five to seven weeks: the days before the
// jump can no longer change, and freeze (at the next prune in memory, at
// the next checkpoint with a file).
func (s *machine) AdvanceFar(t *rapid.T) {
	s.clock.Add(time.Duration(rapid.IntRange(35, 50).Draw(t, "days"))*24*time.Hour +
		time.Duration(rapid.IntRange(0, 86399).Draw(t, "s"))*time.Second)
	coverage.far.Add(1)
}

// AdvanceToEdge moves the clock to just before, at or just after the end
// of an accepted event's dedupe window or cancellation window.
func (s *machine) AdvanceToEdge(t *rapid.T) {
	if len(s.m.events) == 0 {
		t.Skip("no events")
	}
	e := s.m.events[rapid.IntRange(0, len(s.m.events)-1).Draw(t, "event")]
	span := s.m.window
	if rapid.Bool().Draw(t, "cancel_window") {
		span = secDay
	}
	target := e.received + span + rapid.SampledFrom([]int64{-1, 0, 1, 30, 59}).Draw(t, "delta_s")
	if target <= s.clock.Unix() {
		t.Skip("edge already passed")
	}
	s.clock.Set(time.Unix(target, 0))
}

// Query compares Summaries over a random range and grouping.
func (s *machine) Query(t *rapid.T) {
	mi := s.pickMeter(t)
	customer := rapid.SampledFrom(append(customers, "cus_none")).Draw(t, "customer")
	g := rapid.SampledFrom([]meter.Window{meter.NoWindow, meter.Hour, meter.Day}).Draw(t, "grouping")
	start, end, e := s.drawRange(t, g)
	if e != nil {
		mi, customer = e.meter, e.customer
	}
	if s.compare(t, mi, customer, start, end, g) {
		coverage.nonEmpty.Add(1)
	}
	coverage.queries.Add(1)
}

// drawRange returns a query range aligned for grouping g: near now, near
// the initial clock, or (with the event it returns) around an event.
func (s *machine) drawRange(t *rapid.T, g meter.Window) (start, end int64, anchor *modelEvent) {
	var base int64
	switch rapid.IntRange(0, 3).Draw(t, "base") {
	case 0:
		base = floorTo(s.clock.Unix(), secDay) - rapid.Int64Range(0, 3).Draw(t, "days_ago")*secDay
	case 1:
		base = floorTo(s.t0.Unix(), secDay) + rapid.Int64Range(-1, 1).Draw(t, "day")*secDay
	default:
		// Around an event of the series: ranges that start or end at,
		// just before or just after its minute, hour or day.
		if len(s.m.events) == 0 {
			break
		}
		e := s.m.events[rapid.IntRange(0, len(s.m.events)-1).Draw(t, "event")]
		unit := map[meter.Window]int64{meter.NoWindow: secMinute, meter.Hour: secHour, meter.Day: secDay}[g]
		start := floorTo(e.ts, unit) + rapid.Int64Range(-2, 1).Draw(t, "units_from_event")*unit
		length := rapid.Int64Range(1, 3).Draw(t, "units")
		if g == meter.NoWindow {
			length = rapid.SampledFrom([]int64{1, 2, 59, 60, 61, 24 * 60, 24*60 + 1}).Draw(t, "minutes")
		}
		if rapid.Bool().Draw(t, "end_at_event") {
			start -= (length - 1) * unit
		}
		return start, start + length*unit, e
	}
	var length int64
	switch g {
	case meter.NoWindow:
		start = base + rapid.SampledFrom([]int64{0, 1, 12, 23}).Draw(t, "hour")*secHour +
			rapid.SampledFrom([]int64{0, 1, 30, 59}).Draw(t, "minute")*secMinute
		length = rapid.SampledFrom([]int64{1, 30, 59, 60, 61, 119, 23 * 60, 24 * 60, 24*60 + 1, 25 * 60, 3 * 24 * 60, 40 * 24 * 60,
			rapid.Int64Range(1, 5000).Draw(t, "minutes")}).Draw(t, "length_min") * secMinute
	case meter.Hour:
		start = base + rapid.SampledFrom([]int64{0, 1, 12, 23}).Draw(t, "hour")*secHour
		length = rapid.SampledFrom([]int64{1, 2, 23, 24, 25, 48, 72, 40 * 24}).Draw(t, "length_h") * secHour
	case meter.Day:
		start = base
		length = rapid.SampledFrom([]int64{1, 2, 3, 40}).Draw(t, "length_d") * secDay
	}
	if rapid.IntRange(0, 3).Draw(t, "backwards") == 0 {
		start -= length - map[meter.Window]int64{meter.NoWindow: secMinute, meter.Hour: secHour, meter.Day: secDay}[g]
	}
	return start, start + length, nil
}

// CrossQuery compares Customers (paged), Totals and TopCustomers of a
// meter over a random range with the model.
func (s *machine) CrossQuery(t *rapid.T) {
	mi := s.pickMeter(t)
	g := rapid.SampledFrom([]meter.Window{meter.NoWindow, meter.Hour, meter.Day}).Draw(t, "grouping")
	start, end, e := s.drawRange(t, g)
	if e != nil {
		mi = e.meter
	}
	s.compareTotals(t, mi, start, end, g)
	if g == meter.NoWindow {
		if s.compareCustomers(t, mi, start, end, rapid.IntRange(0, 3).Draw(t, "limit")) {
			coverage.crossNonEmpty.Add(1)
		}
		s.compareTop(t, mi, start, end, rapid.SampledFrom([]int{0, 1, 2, 5}).Draw(t, "n"))
	}
	coverage.crossQueries.Add(1)
}

// actions returns the state machine's actions, weighted by repetition.
func (s *machine) actions() map[string]func(*rapid.T) {
	a := map[string]func(*rapid.T){"": s.Check}
	add := func(name string, weight int, f func(*rapid.T)) {
		for i := range weight {
			a[fmt.Sprintf("%s#%d", name, i)] = f
		}
	}
	add("CreateMeter", 1, s.CreateMeter)
	add("Deactivate", 1, s.Deactivate)
	add("Reactivate", 2, s.Reactivate)
	add("Rename", 1, s.Rename)
	add("ListMeters", 1, s.ListMeters)
	add("Record", 4, s.Record)
	add("RecordBatch", 3, s.RecordBatch)
	add("RecordUsage", 3, s.RecordUsage)
	add("RecordDuplicate", 1, s.RecordDuplicate)
	add("ResendAtEdge", 1, s.ResendAtEdge)
	add("Cancel", 3, s.Cancel)
	add("Advance", 2, s.Advance)
	add("AdvanceToEdge", 1, s.AdvanceToEdge)
	add("AdvanceFar", 1, s.AdvanceFar)
	add("Query", 4, s.Query)
	add("CrossQuery", 3, s.CrossQuery)
	add("Reopen", 1, s.Reopen)
	add("Crash", 1, s.Crash)
	add("Checkpoint", 1, s.Checkpoint)
	return a
}

// coverage counts what the model test exercised, over all checks; go test
// -v prints it.
var coverage struct {
	checks, reopens, crashes, accepted, rejected, duplicates, reaccepted, cancels, cancelErrors, expired, queries, nonEmpty atomic.Int64
	crossQueries, crossNonEmpty                                                                                             atomic.Int64
	far, frozen, stored                                                                                                     atomic.Int64 // clock jumps past the 35 days; checks with frozen days; with stored blocks of them
	edgeInside, edgeOutside                                                                                                 atomic.Int64 // ResendAtEdge
}

func TestModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := newMachine(t)
		defer s.close()
		coverage.checks.Add(1)
		t.Repeat(s.actions())
	})
	c := &coverage
	t.Logf("checks %d, reopens %d, crashes %d: events accepted %d, rejected %d, duplicates %d, identifiers accepted again after the window %d; "+
		"cancels %d, failed cancels %d (expired %d); queries %d (%d with events); cross-customer queries %d (%d with customers); "+
		"jumps of weeks %d, checks with frozen days %d (with stored blocks %d)",
		c.checks.Load(), c.reopens.Load(), c.crashes.Load(), c.accepted.Load(), c.rejected.Load(), c.duplicates.Load(), c.reaccepted.Load(),
		c.cancels.Load(), c.cancelErrors.Load(), c.expired.Load(), c.queries.Load(), c.nonEmpty.Load(),
		c.crossQueries.Load(), c.crossNonEmpty.Load(), c.far.Load(), c.frozen.Load(), c.stored.Load())
	t.Logf("resends at the dedupe window's edge: %d inside, %d outside", c.edgeInside.Load(), c.edgeOutside.Load())
}

// customerUsage is one expected row of Customers or TopCustomers.
type customerUsage struct {
	customer string
	count    int64
	value    *big.Int
}

func (u customerUsage) String() string {
	return fmt.Sprintf("%s count=%d value=%s", u.customer, u.count, u.value)
}

// customers computes Customers over [start, end) from the raw events:
// every customer with a counted event in the range, ascending, with its
// summary.
func (m *model) customers(mi int, start, end int64) []customerUsage {
	seen := map[string]bool{}
	var out []customerUsage
	for _, e := range m.events {
		if e.meter != mi || seen[e.customer] {
			continue
		}
		seen[e.customer] = true
		if w := m.summaries(mi, e.customer, start, end, meter.NoWindow)[0]; w.count > 0 {
			out = append(out, customerUsage{customer: e.customer, count: w.count, value: w.value})
		}
	}
	slices.SortFunc(out, func(a, b customerUsage) int { return strings.Compare(a.customer, b.customer) })
	return out
}

// top computes TopCustomers: the n customers with the greatest value,
// ties by ascending customer.
func (m *model) top(mi int, start, end int64, n int) []customerUsage {
	all := m.customers(mi, start, end)
	slices.SortStableFunc(all, func(a, b customerUsage) int { return b.value.Cmp(a.value) })
	return all[:min(n, len(all))]
}

// totals computes Totals: per window, the customers' summaries added up
// (for a last meter, each customer's last value), with the shape of
// Summaries.
func (m *model) totals(mi int, start, end int64, g meter.Window) []modelWindow {
	byStart := map[int64]*modelWindow{}
	seen := map[string]bool{}
	for _, e := range m.events {
		if e.meter != mi || seen[e.customer] {
			continue
		}
		seen[e.customer] = true
		for _, w := range m.summaries(mi, e.customer, start, end, g) {
			if w.count == 0 {
				continue
			}
			acc := byStart[w.start]
			if acc == nil {
				acc = &modelWindow{start: w.start, end: w.end, value: new(big.Int)}
				byStart[w.start] = acc
			}
			acc.count += w.count
			acc.value.Add(acc.value, w.value)
		}
	}
	if g == meter.NoWindow {
		if w := byStart[start]; w != nil {
			return []modelWindow{*w}
		}
		return []modelWindow{{start: start, end: end, value: new(big.Int)}}
	}
	var out []modelWindow
	for _, w := range byStart {
		out = append(out, *w)
	}
	slices.SortFunc(out, func(a, b modelWindow) int { return int(b.start - a.start) })
	return out
}

// describeMeter names meter mi and lists its events, for failure messages.
func (s *machine) describeMeter(mi int) string {
	mt := s.m.meters[mi]
	var b strings.Builder
	fmt.Fprintf(&b, "meter %s (%s, window %q)", mt.EventName, mt.Formula, mt.EventTimeWindow)
	for _, e := range s.m.events {
		if e.meter == mi {
			fmt.Fprintf(&b, "\n  event seq=%d %s ts=%s value=%d cancelled=%v", e.seq, e.customer,
				time.Unix(e.ts, 0).UTC().Format(time.RFC3339), e.value, e.cancelled)
		}
	}
	return b.String()
}

func fmtRange(start, end int64) string {
	return fmt.Sprintf("[%s, %s)", time.Unix(start, 0).UTC().Format(time.RFC3339), time.Unix(end, 0).UTC().Format(time.RFC3339))
}

// compareUsages fails unless got equals want.
func (s *machine) compareUsages(t *rapid.T, what string, mi int, got []meterdb.CustomerUsage, want []customerUsage) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = got[i].Customer == want[i].customer && got[i].Count == want[i].count && got[i].Value.Big().Cmp(want[i].value) == 0
	}
	if !ok {
		t.Fatalf("%s differs:\n  got  %v\n  want %v\n%s", what, got, want, s.describeMeter(mi))
	}
}

// compareCustomers pages through Customers with the given limit (0: the
// default) and checks the pages against the model; it reports whether
// any customer had usage.
func (s *machine) compareCustomers(t *rapid.T, mi int, start, end int64, limit int) bool {
	t.Helper()
	p := meterdb.CustomersParams{Meter: s.m.meters[mi].ID, Start: time.Unix(start, 0).UTC(), End: time.Unix(end, 0).UTC(), Limit: limit}
	pageSize := cmp.Or(limit, meterdb.DefaultCustomersLimit)
	var all []meterdb.CustomerUsage
	for pages := 0; ; pages++ {
		page, more, err := s.db.Customers(s.ctx, p)
		if err != nil {
			t.Fatalf("Customers(%+v): %v", p, err)
		}
		if len(page) > pageSize || more && len(page) < pageSize || pages > 100 {
			t.Fatalf("Customers(%+v): page of %d, more %v, page %d", p, len(page), more, pages)
		}
		all = append(all, page...)
		if !more {
			break
		}
		p.After = page[len(page)-1].Customer
	}
	s.compareUsages(t, fmt.Sprintf("Customers over %s, limit %d", fmtRange(start, end), limit), mi, all, s.m.customers(mi, start, end))
	return len(all) > 0
}

// compareTop checks TopCustomers with N = n (0: the default).
func (s *machine) compareTop(t *rapid.T, mi int, start, end int64, n int) {
	t.Helper()
	p := meterdb.TopParams{Meter: s.m.meters[mi].ID, Start: time.Unix(start, 0).UTC(), End: time.Unix(end, 0).UTC(), N: n}
	got, err := s.db.TopCustomers(s.ctx, p)
	if err != nil {
		t.Fatalf("TopCustomers(%+v): %v", p, err)
	}
	s.compareUsages(t, fmt.Sprintf("TopCustomers over %s, n %d", fmtRange(start, end), n), mi, got,
		s.m.top(mi, start, end, cmp.Or(n, meterdb.DefaultTopN)))
}

// compareTotals checks Totals with grouping g.
func (s *machine) compareTotals(t *rapid.T, mi int, start, end int64, g meter.Window) {
	t.Helper()
	p := meterdb.TotalsParams{Meter: s.m.meters[mi].ID, Start: time.Unix(start, 0).UTC(), End: time.Unix(end, 0).UTC(),
		Grouping: meterdb.Grouping(g)}
	got, err := s.db.Totals(s.ctx, p)
	if err != nil {
		t.Fatalf("Totals(%+v): %v", p, err)
	}
	want := s.m.totals(mi, start, end, g)
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = got[i].Start.Unix() == want[i].start && got[i].End.Unix() == want[i].end &&
			got[i].Count == want[i].count && got[i].Value.Big().Cmp(want[i].value) == 0 &&
			got[i].Start.Location() == time.UTC && got[i].End.Location() == time.UTC
	}
	if !ok {
		var b strings.Builder
		for _, w := range got {
			fmt.Fprintf(&b, "\n  got  %s count=%d value=%s", fmtRange(w.Start.Unix(), w.End.Unix()), w.Count, w.Value)
		}
		for _, w := range want {
			fmt.Fprintf(&b, "\n  want %v", w)
		}
		t.Fatalf("Totals over %s grouping %q differ:%s\n%s", fmtRange(start, end), g, b.String(), s.describeMeter(mi))
	}
}
