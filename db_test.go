package meterdb_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

var ctx = context.Background()

// t0 is the initial clock of the unit tests: a Tuesday, 10:30 UTC.
var t0 = time.Date(2026, 3, 10, 10, 30, 0, 0, time.UTC)

// newDB opens an in-memory DB on a test clock starting at t0 and closes it
// when the test ends.
func newDB(t *testing.T, opts *meterdb.Options) (*meterdb.DB, *testClock) {
	t.Helper()
	clock := newTestClock(t0)
	var o meterdb.Options
	if opts != nil {
		o = *opts
	}
	o.Now = clock.Now
	db := openDB(t, "", &o)
	t.Cleanup(func() { db.Close() })
	return db, clock
}

func mustMeter(t *testing.T, db *meterdb.DB, p meter.Params) meter.Meter {
	t.Helper()
	if p.DisplayName == "" {
		p.DisplayName = p.EventName
	}
	m, err := db.CreateMeter(ctx, p)
	if err != nil {
		t.Fatalf("CreateMeter(%+v): %v", p, err)
	}
	return m
}

// ev returns an event for the default payload keys.
func ev(name, customer, value, id string) event.Event {
	p := map[string]string{"stripe_customer_id": customer}
	if value != "" {
		p["value"] = value
	}
	return event.Event{Name: name, Payload: p, Identifier: id}
}

func mustRecord(t *testing.T, db *meterdb.DB, e event.Event) event.Event {
	t.Helper()
	out, err := db.Record(ctx, e)
	if err != nil {
		t.Fatalf("Record(%+v): %v", e, err)
	}
	return out
}

// wantEventError fails unless err is an *event.Error with code and param
// that unwraps to sentinel.
func wantEventError(t *testing.T, err error, sentinel error, code, param string) {
	t.Helper()
	var ee *event.Error
	if !errors.As(err, &ee) || !errors.Is(err, sentinel) || ee.Code != code || ee.Param != param {
		t.Fatalf("got %#v (%v), want code %s param %q unwrapping to %v", ee, err, code, param, sentinel)
	}
	if ee.Error() == "" || strings.HasPrefix(ee.Error(), "{") {
		t.Fatalf("error message %q is not a sentence", ee.Error())
	}
}

// total returns the summary of customer on m over [start, end) without
// grouping.
func total(t *testing.T, db *meterdb.DB, m meter.Meter, customer string, start, end time.Time) meterdb.Summary {
	t.Helper()
	s, err := db.Summaries(ctx, meterdb.SummaryParams{Meter: m.ID, Customer: customer, Start: start, End: end})
	if err != nil || len(s) != 1 {
		t.Fatalf("Summaries: %v, %v", s, err)
	}
	return s[0]
}

// day0 is the UTC day of t0.
var day0 = t0.Truncate(24 * time.Hour)

func dayTotal(t *testing.T, db *meterdb.DB, m meter.Meter, customer string) string {
	t.Helper()
	s := total(t, db, m, customer, day0.Add(-40*24*time.Hour), day0.Add(2*24*time.Hour))
	return fmt.Sprintf("%d/%s", s.Count, s.Value)
}

func TestOpenOptions(t *testing.T) {
	for _, o := range []*meterdb.Options{{Shards: 3}, {Shards: -4}, {DedupeWindow: -time.Second}, {HistoryCacheBytes: -1}} {
		if db, err := meterdb.Open("", o); err == nil {
			db.Close()
			t.Errorf("Open with %+v succeeded", *o)
		}
	}
	for _, o := range []*meterdb.Options{nil, {}, {Shards: 1}, {Shards: 1024, DedupeWindow: time.Minute}, {HistoryCacheBytes: 1 << 20}} {
		db, err := meterdb.Open("", o)
		if err != nil {
			t.Fatalf("Open with %+v: %v", o, err)
		}
		db.Close()
	}
}

func TestClosed(t *testing.T) {
	db, _ := newDB(t, nil)
	m := mustMeter(t, db, meter.Params{EventName: "e", Formula: meter.Sum})
	mustRecord(t, db, ev("e", "c", "1", ""))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	calls := map[string]func() error{
		"Sync": db.Sync,
		"CreateMeter": func() error {
			_, err := db.CreateMeter(ctx, meter.Params{DisplayName: "x", EventName: "x", Formula: meter.Sum})
			return err
		},
		"Meter":           func() error { _, err := db.Meter(ctx, m.ID); return err },
		"UpdateMeter":     func() error { _, err := db.UpdateMeter(ctx, m.ID, "y"); return err },
		"DeactivateMeter": func() error { _, err := db.DeactivateMeter(ctx, m.ID); return err },
		"ReactivateMeter": func() error { _, err := db.ReactivateMeter(ctx, m.ID); return err },
		"ListMeters":      func() error { _, _, err := db.ListMeters(ctx, meter.ListParams{}); return err },
		"Record":          func() error { _, err := db.Record(ctx, ev("e", "c", "1", "")); return err },
		"RecordBatch":     func() error { _, err := db.RecordBatch(ctx, []event.Event{ev("e", "c", "1", "")}); return err },
		"Cancel":          func() error { return db.Cancel(ctx, "e", "x") },
		"Summaries": func() error {
			_, err := db.Summaries(ctx, meterdb.SummaryParams{Meter: m.ID, Customer: "c", Start: day0, End: day0.Add(time.Hour)})
			return err
		},
		"PutKV":    func() error { return db.PutKV(ctx, "ns", "k", nil, t0.Add(time.Hour)) },
		"GetKV":    func() error { _, _, err := db.GetKV(ctx, "ns", "k"); return err },
		"DeleteKV": func() error { return db.DeleteKV(ctx, "ns", "k") },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, meterdb.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if st := db.Stats(); st.EventsAccepted != 1 || st.Meters != 1 {
		t.Errorf("Stats after Close: %+v", st)
	}
}

func TestRecordDefaults(t *testing.T) {
	db, clock := newDB(t, nil)
	mustMeter(t, db, meter.Params{EventName: "e", Formula: meter.Count})
	clock.Add(1500 * time.Millisecond)
	a := mustRecord(t, db, ev("e", "c", "", ""))
	b := mustRecord(t, db, ev("e", "c", "", ""))
	if a.Identifier == "" || b.Identifier == "" || a.Identifier == b.Identifier || len(a.Identifier) > event.MaxIdentifierLength {
		t.Errorf("generated identifiers %q and %q", a.Identifier, b.Identifier)
	}
	if want := t0.Add(time.Second); !a.Timestamp.Equal(want) || a.Timestamp.Location() != time.UTC {
		t.Errorf("default timestamp %v, want %v", a.Timestamp, want)
	}
	ts := t0.Add(-time.Hour)
	c := mustRecord(t, db, event.Event{Name: "e", Payload: map[string]string{"stripe_customer_id": "c"}, Identifier: "given", Timestamp: ts})
	if c.Identifier != "given" || !c.Timestamp.Equal(ts) {
		t.Errorf("Record changed a given identifier or timestamp: %+v", c)
	}
}

// Every validation failure at the DB level: the code, the param, the
// sentinel, and no trace left behind.
func TestRecordErrors(t *testing.T) {
	db, clock := newDB(t, nil)
	sum := mustMeter(t, db, meter.Params{EventName: "sum", Formula: meter.Sum})
	mustMeter(t, db, meter.Params{EventName: "custom", Formula: meter.Last, CustomerKey: "user", ValueKey: "tokens"})
	off := mustMeter(t, db, meter.Params{EventName: "off", Formula: meter.Sum})
	if _, err := db.DeactivateMeter(ctx, off.ID); err != nil {
		t.Fatal(err)
	}
	mustRecord(t, db, ev("sum", "c", "1", "taken"))
	clock.Add(time.Minute)
	now := clock.Now()
	with := func(e event.Event, f func(*event.Event)) event.Event { f(&e); return e }
	long := strings.Repeat("x", 101)
	tests := []struct {
		name     string
		ev       event.Event
		sentinel error
		code     string
		param    string
	}{
		{"no meter", ev("nope", "c", "1", ""), event.ErrNoMeter, event.CodeNoMeter, "event_name"},
		{"archived meter", ev("off", "c", "1", ""), event.ErrArchivedMeter, event.CodeArchivedMeter, "event_name"},
		{"no customer", event.Event{Name: "sum", Payload: map[string]string{"value": "1"}}, event.ErrNoCustomer, event.CodeNoCustomer, "payload[stripe_customer_id]"},
		{"empty customer", ev("sum", "", "1", ""), event.ErrNoCustomer, event.CodeNoCustomer, "payload[stripe_customer_id]"},
		{"customer under the default key", ev("custom", "c", "1", ""), event.ErrNoCustomer, event.CodeNoCustomer, "payload[user]"},
		{"no value", ev("sum", "c", "", ""), event.ErrNoValue, event.CodeNoValue, "payload[value]"},
		{"no value under the custom key", event.Event{Name: "custom", Payload: map[string]string{"user": "c", "value": "1"}}, event.ErrNoValue, event.CodeNoValue, "payload[tokens]"},
		{"invalid value", ev("sum", "c", "1.5", ""), event.ErrInvalidValue, event.CodeInvalidValue, "payload[value]"},
		{"too many digits", ev("sum", "c", "1000000000000000", ""), event.ErrTooManyDigits, event.CodeTooManyDigits, "payload[value]"},
		{"too far in the past", with(ev("sum", "c", "1", ""), func(e *event.Event) { e.Timestamp = now.Add(-event.MaxPast - time.Second) }), event.ErrTooFarInPast, event.CodeTooFarInPast, "timestamp"},
		{"in the future", with(ev("sum", "c", "1", ""), func(e *event.Event) { e.Timestamp = now.Add(event.MaxFuture + time.Second) }), event.ErrInFuture, event.CodeInFuture, "timestamp"},
		{"duplicate", ev("sum", "c", "1", "taken"), event.ErrDuplicate, event.CodeDuplicate, "identifier"},
		{"duplicate on another meter", event.Event{Name: "custom", Payload: map[string]string{"user": "c", "tokens": "1"}, Identifier: "taken"}, event.ErrDuplicate, event.CodeDuplicate, "identifier"},
		{"no event name", ev("", "c", "1", ""), event.ErrInvalid, event.CodeParameterMissing, "event_name"},
		{"event name too long", ev(long, "c", "1", ""), event.ErrInvalid, event.CodeStringTooLong, "event_name"},
		{"identifier too long", ev("sum", "c", "1", long), event.ErrInvalid, event.CodeStringTooLong, "identifier"},
		{"no payload", event.Event{Name: "sum"}, event.ErrInvalid, event.CodeParameterMissing, "payload"},
		{"payload value too long", ev("sum", long, "1", ""), event.ErrInvalid, event.CodeStringTooLong, "payload[stripe_customer_id]"},
		{"payload key too long", with(ev("sum", "c", "1", ""), func(e *event.Event) { e.Payload[long] = "x" }), event.ErrInvalid, event.CodeStringTooLong, "payload"},
		{"too many payload keys", with(ev("sum", "c", "1", ""), func(e *event.Event) {
			for i := len(e.Payload); i <= event.MaxPayloadKeys; i++ {
				e.Payload[fmt.Sprint("k", i)] = "x"
			}
		}), event.ErrInvalid, event.CodeParameterInvalid, "payload"},
	}
	before := db.Stats()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := db.Record(ctx, tt.ev)
			wantEventError(t, err, tt.sentinel, tt.code, tt.param)
			if out.Identifier != "" || !out.Timestamp.IsZero() {
				t.Errorf("rejected Record returned %+v", out)
			}
		})
	}
	d := db.Stats().Sub(before)
	if d.EventsAccepted != 0 || d.EventsRejected != int64(len(tests)-2) || d.EventsDuplicate != 2 || d.Series != 0 || d.MinuteCells != 0 {
		t.Errorf("stats changed by %+v", d)
	}
	if got := dayTotal(t, db, sum, "c"); got != "1/1" {
		t.Errorf("sum meter total %s after rejected events, want 1/1", got)
	}
	// Rejected events leave their identifiers free.
	for _, tt := range tests {
		if id := tt.ev.Identifier; id != "" && id != "taken" && len(id) <= 100 {
			mustRecord(t, db, ev("sum", "c", "1", id))
		}
	}
	mustRecord(t, db, ev("sum", "c", "1", "free-after-rejection"))
	if _, err := db.Record(ctx, ev("nope", "c", "1", "rejected-first")); err == nil {
		t.Fatal("event of no meter accepted")
	}
	mustRecord(t, db, ev("sum", "c", "1", "rejected-first"))
}

// Boundary values that must be accepted.
func TestRecordLimits(t *testing.T) {
	db, clock := newDB(t, nil)
	clock.Add(250 * time.Millisecond)
	now := clock.Now()
	m := mustMeter(t, db, meter.Params{EventName: "e", Formula: meter.Sum})
	cnt := mustMeter(t, db, meter.Params{EventName: "n", Formula: meter.Count})
	long := strings.Repeat("x", 100)
	for _, e := range []event.Event{
		{Name: "e", Payload: map[string]string{"stripe_customer_id": "c", "value": "999999999999999"}, Timestamp: now.Add(-event.MaxPast)},
		{Name: "e", Payload: map[string]string{"stripe_customer_id": "c", "value": "-999999999999999"}, Timestamp: now.Add(event.MaxFuture)},
		{Name: "e", Payload: map[string]string{"stripe_customer_id": "c", "value": "0000000000000000000001", long: long}, Identifier: long},
		{Name: "n", Payload: map[string]string{"stripe_customer_id": "c"}},
		{Name: "n", Payload: map[string]string{"stripe_customer_id": "c", "value": "not a number"}},
	} {
		mustRecord(t, db, e)
	}
	e := ev("e", "c", "1", "")
	for i := len(e.Payload); i < event.MaxPayloadKeys; i++ {
		e.Payload[fmt.Sprint("k", i)] = "x"
	}
	mustRecord(t, db, e)
	if got := dayTotal(t, db, m, "c"); got != "4/2" {
		t.Errorf("sum total %s, want 4/2", got)
	}
	if got := dayTotal(t, db, cnt, "c"); got != "2/2" {
		t.Errorf("count total %s, want 2/2", got)
	}
}

func TestRecordBatch(t *testing.T) {
	db, _ := newDB(t, nil)
	m := mustMeter(t, db, meter.Params{EventName: "e", Formula: meter.Sum})
	mustRecord(t, db, ev("e", "c", "100", "old"))
	evs := []event.Event{
		ev("e", "c", "1", "a"),
		ev("e", "c", "2", "a"),   // duplicate of the first, in the same batch
		ev("e", "c", "x", "b"),   // invalid; does not take "b"
		ev("e", "c", "4", "b"),   // accepted
		ev("e", "c", "8", "old"), // duplicate of an earlier batch
		ev("e", "c", "16", ""),   // generated identifier
		ev("nope", "c", "32", "c"),
	}
	errs, err := db.RecordBatch(ctx, evs)
	if err != nil || len(errs) != len(evs) {
		t.Fatalf("RecordBatch: %v, %v", errs, err)
	}
	want := []string{"", event.CodeDuplicate, event.CodeInvalidValue, "", event.CodeDuplicate, "", event.CodeNoMeter}
	for i, code := range want {
		var ee *event.Error
		errors.As(errs[i], &ee)
		if code == "" && errs[i] != nil || code != "" && (ee == nil || ee.Code != code) {
			t.Errorf("event %d: %v, want code %q", i, errs[i], code)
		}
	}
	if evs[5].Identifier == "" || evs[5].Timestamp.IsZero() || evs[0].Timestamp.IsZero() {
		t.Errorf("accepted events not filled in: %+v", evs)
	}
	if evs[1].Identifier != "a" || !evs[1].Timestamp.IsZero() || !evs[2].Timestamp.IsZero() {
		t.Errorf("rejected events changed: %+v", evs)
	}
	if got := dayTotal(t, db, m, "c"); got != "4/121" {
		t.Errorf("total %s, want 4/121", got)
	}
	// A batch of rejected events only.
	errs, err = db.RecordBatch(ctx, []event.Event{ev("nope", "c", "1", ""), ev("e", "c", "1", "a")})
	if err != nil || errs[0] == nil || !errors.Is(errs[1], event.ErrDuplicate) {
		t.Errorf("all-rejected batch: %v, %v", errs, err)
	}
	if errs, err := db.RecordBatch(ctx, nil); err != nil || len(errs) != 0 {
		t.Errorf("empty batch: %v, %v", errs, err)
	}
	st := db.Stats()
	if st.EventsAccepted != 4 || st.EventsDuplicate != 3 || st.EventsRejected != 3 {
		t.Errorf("stats %+v", st)
	}
}

// An identifier is taken for exactly the dedupe window after its event was
// received, then accepted again.
func TestDedupeWindow(t *testing.T) {
	for _, window := range []time.Duration{0, time.Hour, 30 * time.Hour} {
		t.Run(fmt.Sprint(window), func(t *testing.T) {
			db, clock := newDB(t, &meterdb.Options{DedupeWindow: window})
			if window == 0 {
				window = 24 * time.Hour
			}
			m := mustMeter(t, db, meter.Params{EventName: "e", Formula: meter.Sum})
			mustRecord(t, db, ev("e", "c", "1", "id"))
			clock.Add(window - time.Second)
			if _, err := db.Record(ctx, ev("e", "c", "2", "id")); !errors.Is(err, event.ErrDuplicate) {
				t.Fatalf("one second before the window ends: %v", err)
			}
			clock.Add(time.Second)
			mustRecord(t, db, ev("e", "c", "4", "id"))
			if _, err := db.Record(ctx, ev("e", "c", "8", "id")); !errors.Is(err, event.ErrDuplicate) {
				t.Fatalf("the identifier accepted again is not taken: %v", err)
			}
			if got := dayTotal(t, db, m, "c"); got != "2/5" {
				t.Errorf("total %s, want 2/5", got)
			}
		})
	}
}

// Memory for identifiers stays bounded as the clock moves on: identifiers
// older than the retention (a day: cancellation needs them) are dropped,
// recent ones stay taken.
func TestDedupePruning(t *testing.T) {
	db, clock := newDB(t, &meterdb.Options{DedupeWindow: time.Hour})
	mustMeter(t, db, meter.Params{EventName: "e", Formula: meter.Count})
	const steps, perStep = 300, 100
	const live = 49 * perStep // a day and a minute of steps
	var peak int64
	for step := range steps {
		batch := make([]event.Event, perStep)
		for i := range batch {
			batch[i] = ev("e", "c", "", fmt.Sprintf("id-%d-%d", step, i))
		}
		if _, err := db.RecordBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
		peak = max(peak, db.Stats().DedupeSlots)
		clock.Add(30 * time.Minute)
	}
	st := db.Stats()
	if st.DedupeIdentities > 3*live {
		t.Errorf("%d identities remembered for about %d in the retention window", st.DedupeIdentities, live)
	}
	if peak > 8*live {
		t.Errorf("peak dedupe slots %d for about %d identifiers in the retention window", peak, live)
	}
	if _, err := db.Record(ctx, ev("e", "c", "", fmt.Sprintf("id-%d-0", steps-1))); !errors.Is(err, event.ErrDuplicate) {
		t.Errorf("recent identifier: %v", err)
	}
	mustRecord(t, db, ev("e", "c", "", "id-0-0"))
	mustRecord(t, db, ev("e", "c", "", fmt.Sprintf("id-%d-0", steps-3)))
}

func TestCancel(t *testing.T) {
	db, clock := newDB(t, nil)
	sum := mustMeter(t, db, meter.Params{EventName: "sum", Formula: meter.Sum})
	last := mustMeter(t, db, meter.Params{EventName: "last", Formula: meter.Last})
	mustMeter(t, db, meter.Params{EventName: "other", Formula: meter.Sum})
	ts := t0.Add(-time.Minute)
	for i, v := range []string{"1", "2", "4"} {
		e := ev("sum", "c", v, fmt.Sprint("s", i))
		e.Timestamp = ts
		mustRecord(t, db, e)
		e = ev("last", "c", v, fmt.Sprint("l", i))
		e.Timestamp = ts
		mustRecord(t, db, e)
	}
	if err := db.Cancel(ctx, "sum", "s1"); err != nil {
		t.Fatal(err)
	}
	if err := db.Cancel(ctx, "last", "l2"); err != nil {
		t.Fatal(err)
	}
	if got := dayTotal(t, db, sum, "c"); got != "2/5" {
		t.Errorf("sum after cancel %s, want 2/5", got)
	}
	// Equal timestamps: the last received of the remaining events wins.
	if got := dayTotal(t, db, last, "c"); got != "2/2" {
		t.Errorf("last after cancel %s, want 2/2", got)
	}
	mustRecord(t, db, ev("sum", "c", "1", "edge"))
	const param = "cancel[identifier]"
	for _, tt := range []struct {
		name, eventName, id string
		sentinel            error
		code                string
	}{
		{"unknown identifier", "sum", "nope", event.ErrNotFound, event.CodeNotFound},
		{"empty identifier", "sum", "", event.ErrNotFound, event.CodeNotFound},
		{"unknown event name", "nope", "s0", event.ErrNotFound, event.CodeNotFound},
		{"another meter's event", "other", "s0", event.ErrNotFound, event.CodeNotFound},
		{"already cancelled", "sum", "s1", event.ErrAlreadyCancelled, event.CodeAlreadyCancelled},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantEventError(t, db.Cancel(ctx, tt.eventName, tt.id), tt.sentinel, tt.code, param)
		})
	}
	// A cancelled event keeps its identifier taken.
	if _, err := db.Record(ctx, ev("sum", "c", "1", "s1")); !errors.Is(err, event.ErrDuplicate) {
		t.Errorf("identifier of a cancelled event: %v", err)
	}
	clock.Add(meterdb.CancelWindow - time.Second)
	if err := db.Cancel(ctx, "sum", "s0"); err != nil {
		t.Fatalf("one second before the cancellation window ends: %v", err)
	}
	clock.Add(time.Second)
	wantEventError(t, db.Cancel(ctx, "sum", "edge"), event.ErrCancelExpired, event.CodeCancelExpired, param)
	wantEventError(t, db.Cancel(ctx, "sum", "s1"), event.ErrCancelExpired, event.CodeCancelExpired, param)
	if got := dayTotal(t, db, sum, "c"); got != "2/5" {
		t.Errorf("sum after cancels %s, want 2/5 (s2 and edge)", got)
	}
	if st := db.Stats(); st.EventsCancelled != 3 {
		t.Errorf("EventsCancelled %d, want 3", st.EventsCancelled)
	}
}

// An identifier accepted again after the dedupe window names its new
// event: Cancel cancels the newest event of the meter with that
// identifier, not the older event that carried it before (the dedupe index
// offers the oldest candidate first).
func TestCancelAfterIdentifierReuse(t *testing.T) {
	t.Run("default window", func(t *testing.T) {
		db, clock := newDB(t, nil)
		m := mustMeter(t, db, meter.Params{EventName: "e", Formula: meter.Sum})
		mustRecord(t, db, ev("e", "c", "1", "id"))
		clock.Add(24*time.Hour + 10*time.Second)
		mustRecord(t, db, ev("e", "c", "2", "id"))
		if err := db.Cancel(ctx, "e", "id"); err != nil {
			t.Errorf("cancelling the event received now: %v", err)
		}
		if got := dayTotal(t, db, m, "c"); got != "1/1" {
			t.Errorf("total %s, want 1/1 (the new event cancelled)", got)
		}
	})
	t.Run("short window", func(t *testing.T) {
		db, clock := newDB(t, &meterdb.Options{DedupeWindow: time.Hour})
		m := mustMeter(t, db, meter.Params{EventName: "e", Formula: meter.Sum})
		mustRecord(t, db, ev("e", "c", "1", "id"))
		clock.Add(2 * time.Hour)
		mustRecord(t, db, ev("e", "c", "2", "id"))
		if err := db.Cancel(ctx, "e", "id"); err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		if got := dayTotal(t, db, m, "c"); got != "1/1" {
			t.Errorf("total %s, want 1/1 (the new event cancelled, not the old one)", got)
		}
	})
	t.Run("new event on another meter", func(t *testing.T) {
		db, clock := newDB(t, &meterdb.Options{DedupeWindow: time.Hour})
		a := mustMeter(t, db, meter.Params{EventName: "a", Formula: meter.Sum})
		b := mustMeter(t, db, meter.Params{EventName: "b", Formula: meter.Sum})
		mustRecord(t, db, ev("a", "c", "1", "id"))
		clock.Add(2 * time.Hour)
		mustRecord(t, db, ev("b", "c", "2", "id"))
		if err := db.Cancel(ctx, "b", "id"); err != nil {
			t.Fatalf("Cancel: %v", err)
		}
		if got := dayTotal(t, db, a, "c") + " " + dayTotal(t, db, b, "c"); got != "1/1 0/0" {
			t.Errorf("totals %s, want 1/1 0/0", got)
		}
		// The older event on the first meter is still that meter's.
		if err := db.Cancel(ctx, "a", "id"); err != nil {
			t.Fatalf("Cancel of the first meter's event: %v", err)
		}
		if got := dayTotal(t, db, a, "c"); got != "0/0" {
			t.Errorf("total %s, want 0/0", got)
		}
	})
}

func TestSummaryErrors(t *testing.T) {
	db, _ := newDB(t, nil)
	m := mustMeter(t, db, meter.Params{EventName: "e", Formula: meter.Sum})
	h := day0.Add(10 * time.Hour)
	p := func(f func(*meterdb.SummaryParams)) meterdb.SummaryParams {
		p := meterdb.SummaryParams{Meter: m.ID, Customer: "c", Start: day0, End: day0.Add(24 * time.Hour)}
		f(&p)
		return p
	}
	for _, tt := range []struct {
		name        string
		p           meterdb.SummaryParams
		code, param string
	}{
		{"missing customer", p(func(p *meterdb.SummaryParams) { p.Customer = "" }), "parameter_missing", "customer"},
		{"missing start", p(func(p *meterdb.SummaryParams) { p.Start = time.Time{} }), "parameter_missing", "start_time"},
		{"missing end", p(func(p *meterdb.SummaryParams) { p.End = time.Time{} }), "parameter_missing", "end_time"},
		{"end equals start", p(func(p *meterdb.SummaryParams) { p.End = p.Start }), "parameter_invalid", "end_time"},
		{"end before start", p(func(p *meterdb.SummaryParams) { p.End = p.Start.Add(-time.Hour) }), "parameter_invalid", "end_time"},
		{"unknown grouping", p(func(p *meterdb.SummaryParams) { p.Grouping = "week" }), "parameter_invalid", "value_grouping_window"},
		{"start not on a minute", p(func(p *meterdb.SummaryParams) { p.Start = h.Add(30 * time.Second) }), "parameter_invalid", "start_time"},
		{"start with nanoseconds", p(func(p *meterdb.SummaryParams) { p.Start = h.Add(time.Nanosecond) }), "parameter_invalid", "start_time"},
		{"end not on a minute", p(func(p *meterdb.SummaryParams) { p.End = h.Add(90 * time.Second) }), "parameter_invalid", "end_time"},
		{"hourly, start not on an hour", p(func(p *meterdb.SummaryParams) { p.Grouping, p.Start = meterdb.GroupHour, h.Add(time.Minute) }), "parameter_invalid", "start_time"},
		{"hourly, end not on an hour", p(func(p *meterdb.SummaryParams) { p.Grouping, p.End = meterdb.GroupHour, h.Add(59*time.Minute) }), "parameter_invalid", "end_time"},
		{"daily, start not at midnight", p(func(p *meterdb.SummaryParams) { p.Grouping, p.Start = meterdb.GroupDay, day0.Add(-time.Hour) }), "parameter_invalid", "start_time"},
		{"daily, end not at midnight", p(func(p *meterdb.SummaryParams) { p.Grouping, p.End = meterdb.GroupDay, h }), "parameter_invalid", "end_time"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := db.Summaries(ctx, tt.p)
			var qe *meterdb.QueryError
			if !errors.Is(err, meterdb.ErrInvalidQuery) || !errors.As(err, &qe) || qe.Code != tt.code || qe.Param != tt.param || qe.Error() == "" {
				t.Fatalf("got %#v (%v), want code %s param %s", qe, err, tt.code, tt.param)
			}
		})
	}
	_, err := db.Summaries(ctx, p(func(p *meterdb.SummaryParams) { p.Meter = "mtr_nope" }))
	var me *meter.Error
	if !errors.Is(err, meter.ErrNotFound) || !errors.As(err, &me) || me.Code != meter.CodeResourceMissing {
		t.Fatalf("unknown meter: %v", err)
	}
	// Aligned ranges in other time zones are accepted.
	ny := time.FixedZone("X", -5*3600)
	if _, err := db.Summaries(ctx, p(func(p *meterdb.SummaryParams) {
		p.Start, p.End = p.Start.In(ny), p.End.In(ny)
		p.Grouping = meterdb.GroupDay
	})); err != nil {
		t.Fatal(err)
	}
}

func TestSummariesEmpty(t *testing.T) {
	db, _ := newDB(t, nil)
	m := mustMeter(t, db, meter.Params{EventName: "e", Formula: meter.Last})
	got := total(t, db, m, "c", day0, day0.Add(time.Minute))
	if got.Count != 0 || got.Value != (meterdb.Int128{}) || !got.Start.Equal(day0) || !got.End.Equal(day0.Add(time.Minute)) {
		t.Errorf("empty total %+v", got)
	}
	for _, g := range []meter.Window{meter.Hour, meter.Day} {
		s, err := db.Summaries(ctx, meterdb.SummaryParams{Meter: m.ID, Customer: "c", Start: day0, End: day0.Add(48 * time.Hour), Grouping: meterdb.Grouping(g)})
		if err != nil || len(s) != 0 {
			t.Errorf("grouping %s: %v, %v; want no windows", g, s, err)
		}
	}
	// A deactivated meter stays queryable.
	mustRecord(t, db, ev("e", "c", "-5", ""))
	if _, err := db.DeactivateMeter(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	if got := dayTotal(t, db, m, "c"); got != "1/-5" {
		t.Errorf("inactive meter total %s, want 1/-5", got)
	}
}

// Hourly and daily groupings, and totals whose edges cut hours and days.
func TestSummariesGrouping(t *testing.T) {
	db, clock := newDB(t, nil)
	clock.Set(day0.Add(3 * 24 * time.Hour))
	m := mustMeter(t, db, meter.Params{EventName: "e", Formula: meter.Sum})
	at := func(d, h, min int) time.Time {
		return day0.Add(time.Duration(d)*24*time.Hour + time.Duration(h)*time.Hour + time.Duration(min)*time.Minute)
	}
	for _, e := range []struct {
		ts time.Time
		v  string
	}{
		{at(0, 0, 0), "1"}, {at(0, 23, 59), "2"}, {at(1, 0, 0), "4"}, {at(1, 0, 59), "8"},
		{at(1, 1, 0), "16"}, {at(2, 12, 30), "32"}, {at(2, 12, 30), "64"},
	} {
		x := ev("e", "c", e.v, "")
		x.Timestamp = e.ts.Add(59 * time.Second)
		mustRecord(t, db, x)
	}
	sums := func(g meter.Window, start, end time.Time) string {
		s, err := db.Summaries(ctx, meterdb.SummaryParams{Meter: m.ID, Customer: "c", Start: start, End: end, Grouping: meterdb.Grouping(g)})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, w := range s {
			if w.End.Sub(w.Start) != map[meter.Window]time.Duration{meter.NoWindow: end.Sub(start), meter.Hour: time.Hour, meter.Day: 24 * time.Hour}[g] {
				t.Errorf("window %v to %v", w.Start, w.End)
			}
			out = append(out, fmt.Sprintf("%s=%d/%s", w.Start.Format("2T15:04"), w.Count, w.Value))
		}
		return strings.Join(out, " ")
	}
	for _, tt := range []struct {
		g          meter.Window
		start, end time.Time
		want       string
	}{
		{meter.Day, at(0, 0, 0), at(3, 0, 0), "12T00:00=2/96 11T00:00=3/28 10T00:00=2/3"},
		{meter.Day, at(1, 0, 0), at(2, 0, 0), "11T00:00=3/28"},
		{meter.Hour, at(0, 23, 0), at(1, 2, 0), "11T01:00=1/16 11T00:00=2/12 10T23:00=1/2"},
		{meter.Hour, at(1, 2, 0), at(2, 12, 0), ""},
		{meter.NoWindow, at(0, 23, 59), at(1, 0, 1), "10T23:59=2/6"},
		{meter.NoWindow, at(0, 0, 1), at(2, 12, 30), "10T00:01=4/30"},
		{meter.NoWindow, at(0, 0, 0), at(2, 12, 31), "10T00:00=7/127"},
		{meter.NoWindow, at(1, 0, 59), at(1, 1, 1), "11T00:59=2/24"},
		{meter.NoWindow, at(2, 12, 31), at(3, 0, 0), "12T12:31=0/0"},
	} {
		if got := sums(tt.g, tt.start, tt.end); got != tt.want {
			t.Errorf("%q [%v, %v): %s, want %s", tt.g, tt.start, tt.end, got, tt.want)
		}
	}
}

// Pre-aggregated meters: per customer and window only the newest event
// counts, by timestamp and then by receipt order, and cancelling it brings
// back the one before.
func TestEventTimeWindow(t *testing.T) {
	db, _ := newDB(t, nil)
	hour := mustMeter(t, db, meter.Params{EventName: "h", Formula: meter.Sum, EventTimeWindow: meter.Hour})
	day := mustMeter(t, db, meter.Params{EventName: "d", Formula: meter.Count, EventTimeWindow: meter.Day})
	rec := func(name, customer, v, id string, ts time.Time) {
		e := ev(name, customer, v, id)
		e.Timestamp = ts
		mustRecord(t, db, e)
	}
	h9 := day0.Add(9 * time.Hour)
	rec("h", "a", "5", "h1", h9.Add(50*time.Minute))
	rec("h", "a", "7", "h2", h9.Add(10*time.Minute)) // older timestamp: ignored
	rec("h", "a", "3", "h3", h9.Add(50*time.Minute)) // same timestamp, received later: wins
	rec("h", "b", "100", "h4", h9)
	rec("h", "a", "11", "h5", h9.Add(-time.Second)) // previous hour
	rec("d", "a", "", "d1", h9)
	rec("d", "a", "", "d2", h9.Add(time.Hour))
	if got := dayTotal(t, db, hour, "a"); got != "2/14" {
		t.Errorf("hour window total %s, want 2/14", got)
	}
	if got := dayTotal(t, db, day, "a"); got != "1/1" {
		t.Errorf("day window total %s, want 1/1", got)
	}
	// The winner of 09:00 sits at 09:50: a range that ends before it sees
	// nothing of that hour, not the losers at 09:10.
	if got := total(t, db, hour, "a", h9, h9.Add(30*time.Minute)); got.Count != 0 {
		t.Errorf("range holding only superseded events: %+v", got)
	}
	if err := db.Cancel(ctx, "h", "h3"); err != nil {
		t.Fatal(err)
	}
	if got := dayTotal(t, db, hour, "a"); got != "2/16" {
		t.Errorf("after cancelling the winner %s, want 2/16", got)
	}
	if err := db.Cancel(ctx, "h", "h2"); err != nil {
		t.Fatal(err)
	}
	if got := dayTotal(t, db, hour, "a"); got != "2/16" {
		t.Errorf("after cancelling a loser %s, want 2/16", got)
	}
	for _, id := range []string{"d2", "d1"} {
		if err := db.Cancel(ctx, "d", id); err != nil {
			t.Fatal(err)
		}
	}
	if got := dayTotal(t, db, day, "a"); got != "0/0" {
		t.Errorf("day window after cancelling everything %s", got)
	}
}

func TestCreateMeter(t *testing.T) {
	db, clock := newDB(t, nil)
	clock.Add(1700 * time.Millisecond)
	m := mustMeter(t, db, meter.Params{DisplayName: "API", EventName: "api", Formula: meter.Count})
	want := t0.Add(time.Second)
	if !m.Created.Equal(want) || !m.Updated.Equal(want) || m.Status != meter.Active || m.CustomerKey != meter.DefaultCustomerKey ||
		m.ValueKey != meter.DefaultValueKey || !m.DeactivatedAt.IsZero() || m.Seq != 1 {
		t.Errorf("new meter %+v", m)
	}
	if _, err := db.DeactivateMeter(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	_, err := db.CreateMeter(ctx, meter.Params{DisplayName: "again", EventName: "api", Formula: meter.Sum})
	var me *meter.Error
	if !errors.Is(err, meter.ErrEventNameTaken) || !errors.As(err, &me) || me.Param != "event_name" || me.Code != meter.CodeEventNameTaken {
		t.Errorf("event name of an inactive meter: %v", err)
	}
	_, err = db.CreateMeter(ctx, meter.Params{EventName: "x", Formula: meter.Sum})
	if !errors.Is(err, meter.ErrInvalid) || !errors.As(err, &me) || me.Param != "display_name" {
		t.Errorf("missing display name: %v", err)
	}
	if _, err := db.Meter(ctx, "mtr_nope"); !errors.Is(err, meter.ErrNotFound) {
		t.Errorf("unknown meter: %v", err)
	}
	if _, err := db.UpdateMeter(ctx, "mtr_nope", "x"); !errors.Is(err, meter.ErrNotFound) {
		t.Errorf("update of an unknown meter: %v", err)
	}
	if _, err := db.DeactivateMeter(ctx, "mtr_nope"); !errors.Is(err, meter.ErrNotFound) {
		t.Errorf("deactivation of an unknown meter: %v", err)
	}
	if st := db.Stats(); st.Meters != 1 {
		t.Errorf("Meters %d, want 1", st.Meters)
	}
}

func TestStatsSub(t *testing.T) {
	a := meterdb.Stats{EventsAccepted: 10, EventsRejected: 9, EventsDuplicate: 8, EventsCancelled: 7, Meters: 6, Series: 5,
		HourBuckets: 4, DayBuckets: 3, MinuteCells: 2, RawEntries: 1, DedupeSlots: 64, DedupeIdentities: 11, MemoryBytes: 12, Reopens: 13}
	if d := a.Sub(a); !reflect.DeepEqual(d, meterdb.Stats{}) {
		t.Errorf("a.Sub(a) = %+v", d)
	}
	if d := a.Sub(meterdb.Stats{}); !reflect.DeepEqual(d, a) {
		t.Errorf("a.Sub(zero) = %+v", d)
	}

	// Histograms subtract by bucket, meters by ID.
	h := func(sum float64, counts ...uint64) meterdb.Histogram {
		return meterdb.Histogram{Bounds: []float64{1, 2}, Counts: counts, Sum: sum}
	}
	b := meterdb.Stats{CommitDuration: h(5, 1, 2, 3), Checkpoints: 4, LogBytes: 100, ByMeter: []meterdb.MeterStats{
		{ID: "m1", Accepted: 9, Rejected: 3, RejectedByCode: map[string]int64{"no_meter": 1, "timestamp_in_future": 2}},
		{ID: "m2", Duplicate: 2}}}
	c := meterdb.Stats{CommitDuration: h(2, 1, 1, 0), Checkpoints: 1, LogBytes: 40, ByMeter: []meterdb.MeterStats{
		{ID: "m1", Accepted: 4, Rejected: 1, RejectedByCode: map[string]int64{"no_meter": 1}}}}
	want := meterdb.Stats{CommitDuration: h(3, 0, 1, 3), Checkpoints: 3, LogBytes: 60, ByMeter: []meterdb.MeterStats{
		{ID: "m1", Accepted: 5, Rejected: 2, RejectedByCode: map[string]int64{"timestamp_in_future": 2}},
		{ID: "m2", Duplicate: 2}}}
	if d := b.Sub(c); !reflect.DeepEqual(d, want) {
		t.Errorf("b.Sub(c) = %+v, want %+v", d, want)
	}
	if d := b.Sub(c); d.CommitDuration.Count() != 4 {
		t.Errorf("count %d, want 4", d.CommitDuration.Count())
	}
}

func TestKV(t *testing.T) {
	db, clock := newDB(t, nil)
	if err := db.PutKV(ctx, "idem", "k", []byte("v1"), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	v, ok, err := db.GetKV(ctx, "idem", "k")
	if err != nil || !ok || string(v) != "v1" {
		t.Fatalf("GetKV: %q %v %v", v, ok, err)
	}
	v[0] = 'X'
	if v, _, _ := db.GetKV(ctx, "idem", "k"); string(v) != "v1" {
		t.Errorf("GetKV returned shared memory: %q", v)
	}
	if _, ok, _ := db.GetKV(ctx, "other", "k"); ok {
		t.Error("namespaces are not separate")
	}
	clock.Add(time.Hour)
	if _, ok, _ := db.GetKV(ctx, "idem", "k"); ok {
		t.Error("expired record returned")
	}
	if err := db.PutKV(ctx, "idem", "k", []byte("v2"), t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteKV(ctx, "idem", "k"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := db.GetKV(ctx, "idem", "k"); ok {
		t.Error("deleted record returned")
	}
	for _, bad := range [][2]string{{"", "k"}, {strings.Repeat("n", 65), "k"}, {"ns", ""}, {"ns", strings.Repeat("k", meterdb.MaxKVKey+1)}} {
		if err := db.PutKV(ctx, bad[0], bad[1], nil, t0.Add(time.Hour)); err == nil {
			t.Errorf("PutKV(%q, %q) accepted", bad[0][:min(len(bad[0]), 8)], bad[1][:min(len(bad[1]), 8)])
		}
	}
	if err := db.PutKV(ctx, "ns", "k", make([]byte, meterdb.MaxKVValue+1), t0.Add(time.Hour)); err == nil {
		t.Error("oversized key-value record accepted")
	}
}

// Concurrent writers, cancellers and readers: under -race, and the totals
// add up afterwards.
func TestConcurrent(t *testing.T) {
	db, _ := newDB(t, &meterdb.Options{Shards: 4})
	sum := mustMeter(t, db, meter.Params{EventName: "sum", Formula: meter.Sum})
	last := mustMeter(t, db, meter.Params{EventName: "last", Formula: meter.Last, EventTimeWindow: meter.Hour})
	const workers, perWorker = 4, 300
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				c := fmt.Sprint("c", i%3)
				batch := []event.Event{ev("sum", c, "2", fmt.Sprintf("s-%d-%d", w, i)), ev("last", c, fmt.Sprint(i), fmt.Sprintf("l-%d-%d", w, i)),
					ev("sum", c, "1000", fmt.Sprintf("s-%d-%d", (w+1)%workers, i))} // races with the next worker
				batch[1].Timestamp = t0.Add(-time.Duration(i%7) * time.Minute)
				if _, err := db.RecordBatch(ctx, batch); err != nil {
					t.Error(err)
					return
				}
				if i%10 == 0 {
					if err := db.Cancel(ctx, "last", fmt.Sprintf("l-%d-%d", w, i)); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range perWorker / 3 {
				for _, m := range []meter.Meter{sum, last} {
					if _, err := db.Summaries(ctx, meterdb.SummaryParams{Meter: m.ID, Customer: "c1", Start: day0, End: day0.Add(24 * time.Hour), Grouping: meterdb.GroupHour}); err != nil {
						t.Error(err)
						return
					}
				}
				db.Stats()
				if _, _, err := db.ListMeters(ctx, meter.ListParams{}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	// Every identifier s-w-i was offered twice, by two workers; exactly one
	// of the two was accepted, with value 2 or 1000.
	var n, v int64
	for _, c := range []string{"c0", "c1", "c2"} {
		s := total(t, db, sum, c, day0, day0.Add(24*time.Hour))
		n += s.Count
		x, _ := s.Value.Int64()
		v += x
	}
	if n != workers*perWorker {
		t.Errorf("sum meter holds %d events, want %d", n, workers*perWorker)
	}
	if st := db.Stats(); st.EventsAccepted != 2*workers*perWorker || st.EventsDuplicate != workers*perWorker || st.EventsCancelled != workers*perWorker/10 {
		t.Errorf("stats %+v", st)
	}
	if v%2 != 0 || v < 2*n || v > 1000*n {
		t.Errorf("sum %d is not made of 2s and 1000s", v)
	}
}

// WriteKV stores several records and removals at once, in memory and in a
// file, where they survive a reopen.
func TestWriteKV(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	for _, p := range []string{"", path} {
		clock := newTestClock(t0)
		db := openDB(t, p, &meterdb.Options{Now: clock.Now})
		exp := t0.Add(time.Hour)
		if err := db.PutKV(ctx, "b", "old", []byte("x"), exp); err != nil {
			t.Fatal(err)
		}
		err := db.WriteKV(ctx, []meterdb.KVWrite{
			{Namespace: "a", Key: "1", Value: []byte("one"), Expires: exp},
			{Namespace: "b", Key: "a/1", Expires: exp},
			{Namespace: "b", Key: "old", Delete: true},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.WriteKV(ctx, []meterdb.KVWrite{{Namespace: "", Key: "k"}}); err == nil {
			t.Error("WriteKV with an empty namespace accepted")
		}
		check := func(db *meterdb.DB) {
			t.Helper()
			if v, ok, err := db.GetKV(ctx, "a", "1"); err != nil || !ok || string(v) != "one" {
				t.Errorf("a/1: %q %v %v", v, ok, err)
			}
			var keys []string
			if err := db.ListKV(ctx, "b", "", func(k string, _ []byte) bool { keys = append(keys, k); return true }); err != nil {
				t.Fatal(err)
			}
			if len(keys) != 1 || keys[0] != "a/1" {
				t.Errorf("namespace b holds %q, want [a/1]", keys)
			}
		}
		if err := db.Sync(); err != nil {
			t.Fatal(err)
		}
		check(db)
		if p == "" {
			db.Close()
			continue
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		db = openDB(t, p, &meterdb.Options{Now: clock.Now})
		check(db)
		db.Close()
	}
}
