package meter_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meterdb/meterdb/meter"
)

var t0 = time.Date(2026, 3, 10, 10, 30, 0, 0, time.UTC)

func wantError(t *testing.T, err error, sentinel error, code, param string) {
	t.Helper()
	var me *meter.Error
	if !errors.As(err, &me) || !errors.Is(err, sentinel) || me.Code != code || me.Param != param {
		t.Fatalf("got %#v (%v); want code %s param %q unwrapping to %v", me, err, code, param, sentinel)
	}
	if me.Error() == "" || strings.HasPrefix(me.Error(), "{") {
		t.Fatalf("message %q is not a sentence", me.Error())
	}
}

func TestParamsValidate(t *testing.T) {
	ok := meter.Params{DisplayName: "d", EventName: "e", Formula: meter.Sum}
	p := func(f func(*meter.Params)) meter.Params { q := ok; f(&q); return q }
	s := strings.Repeat
	for _, tt := range []struct {
		name        string
		p           meter.Params
		code, param string // "" for valid
	}{
		{"minimal", ok, "", ""},
		{"every formula and window", p(func(q *meter.Params) { q.Formula, q.EventTimeWindow = meter.Last, meter.Day }), "", ""},
		{"count", p(func(q *meter.Params) { q.Formula, q.EventTimeWindow = meter.Count, meter.Hour }), "", ""},
		{"longest strings", p(func(q *meter.Params) {
			q.DisplayName, q.EventName, q.CustomerKey, q.ValueKey = s("d", 250), s("e", 100), s("c", 100), s("v", 100)
		}), "", ""},
		{"custom keys", p(func(q *meter.Params) { q.CustomerKey, q.ValueKey = "user", "tokens" }), "", ""},
		{"value key equal to the default customer key, custom customer key", p(func(q *meter.Params) { q.CustomerKey, q.ValueKey = "user", "stripe_customer_id" }), "", ""},
		{"customer key equal to the default value key, custom value key", p(func(q *meter.Params) { q.CustomerKey, q.ValueKey = "value", "tokens" }), "", ""},

		{"no display name", p(func(q *meter.Params) { q.DisplayName = "" }), meter.CodeParameterMissing, "display_name"},
		{"display name too long", p(func(q *meter.Params) { q.DisplayName = s("d", 251) }), meter.CodeStringTooLong, "display_name"},
		{"no event name", p(func(q *meter.Params) { q.EventName = "" }), meter.CodeParameterMissing, "event_name"},
		{"event name too long", p(func(q *meter.Params) { q.EventName = s("e", 101) }), meter.CodeStringTooLong, "event_name"},
		{"no formula", p(func(q *meter.Params) { q.Formula = "" }), meter.CodeParameterMissing, "default_aggregation[formula]"},
		{"unknown formula", p(func(q *meter.Params) { q.Formula = "max" }), meter.CodeParameterInvalid, "default_aggregation[formula]"},
		{"formula in capitals", p(func(q *meter.Params) { q.Formula = "SUM" }), meter.CodeParameterInvalid, "default_aggregation[formula]"},
		{"customer key too long", p(func(q *meter.Params) { q.CustomerKey = s("c", 101) }), meter.CodeStringTooLong, "customer_mapping[event_payload_key]"},
		{"value key too long", p(func(q *meter.Params) { q.ValueKey = s("v", 101) }), meter.CodeStringTooLong, "value_settings[event_payload_key]"},
		{"unknown window", p(func(q *meter.Params) { q.EventTimeWindow = "week" }), meter.CodeParameterInvalid, "event_time_window"},
		{"equal keys", p(func(q *meter.Params) { q.CustomerKey, q.ValueKey = "k", "k" }), meter.CodeParameterInvalid, "value_settings[event_payload_key]"},
		{"value key equal to the default customer key", p(func(q *meter.Params) { q.ValueKey = "stripe_customer_id" }), meter.CodeParameterInvalid, "value_settings[event_payload_key]"},
		{"customer key equal to the default value key", p(func(q *meter.Params) { q.CustomerKey = "value" }), meter.CodeParameterInvalid, "value_settings[event_payload_key]"},
		{"both keys the default customer key", p(func(q *meter.Params) { q.CustomerKey, q.ValueKey = "stripe_customer_id", "stripe_customer_id" }), meter.CodeParameterInvalid, "value_settings[event_payload_key]"},
		{"first error wins", p(func(q *meter.Params) { q.DisplayName, q.Formula = "", "max" }), meter.CodeParameterMissing, "display_name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if tt.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantError(t, err, meter.ErrInvalid, tt.code, tt.param)
		})
	}
}

func TestValid(t *testing.T) {
	for _, f := range []meter.Formula{meter.Count, meter.Sum, meter.Last} {
		if !f.Valid() {
			t.Errorf("%q not valid", f)
		}
	}
	for _, f := range []meter.Formula{"", "max", "Sum"} {
		if f.Valid() {
			t.Errorf("%q valid", f)
		}
	}
	for _, w := range []meter.Window{meter.NoWindow, meter.Hour, meter.Day} {
		if !w.Valid() {
			t.Errorf("%q not valid", w)
		}
	}
	if meter.Window("minute").Valid() {
		t.Error("minute window valid")
	}
}

func newRegistry(t *testing.T) *meter.Registry {
	t.Helper()
	r, err := meter.NewRegistry(nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func create(t *testing.T, r *meter.Registry, name string, now time.Time) meter.Meter {
	t.Helper()
	m, err := r.Create(meter.Params{DisplayName: "d " + name, EventName: name, Formula: meter.Count}, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCreate(t *testing.T) {
	r := newRegistry(t)
	var persisted []meter.Meter
	persist := func(m meter.Meter) error { persisted = append(persisted, m); return nil }
	m, err := r.Create(meter.Params{DisplayName: "API", EventName: "api", Formula: meter.Sum, EventTimeWindow: meter.Hour},
		t0.Add(700*time.Millisecond).In(time.FixedZone("X", 3600)), persist)
	if err != nil {
		t.Fatal(err)
	}
	want := meter.Meter{ID: m.ID, Seq: 1, DisplayName: "API", EventName: "api", Formula: meter.Sum,
		CustomerKey: meter.DefaultCustomerKey, ValueKey: meter.DefaultValueKey, EventTimeWindow: meter.Hour,
		Status: meter.Active, Created: t0, Updated: t0}
	if m != want {
		t.Errorf("created\n %+v\nwant\n %+v", m, want)
	}
	if len(persisted) != 1 || persisted[0] != m {
		t.Errorf("persisted %+v", persisted)
	}
	if !strings.HasPrefix(m.ID, "mtr_") || len(m.ID) != 28 || strings.Trim(m.ID[4:], "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") != "" {
		t.Errorf("id %q", m.ID)
	}
	if got, err := r.Get(m.ID); err != nil || got != m {
		t.Errorf("Get: %+v, %v", got, err)
	}
	if got, ok := r.Lookup("api"); !ok || *got != m {
		t.Errorf("Lookup: %+v, %v", got, ok)
	}
	// The event name stays taken by an inactive meter.
	if _, err := r.SetStatus(m.ID, meter.Inactive, t0, nil); err != nil {
		t.Fatal(err)
	}
	_, err = r.Create(meter.Params{DisplayName: "x", EventName: "api", Formula: meter.Count}, t0, persist)
	wantError(t, err, meter.ErrEventNameTaken, meter.CodeEventNameTaken, "event_name")
	_, err = r.Create(meter.Params{EventName: "y", Formula: meter.Count}, t0, persist)
	wantError(t, err, meter.ErrInvalid, meter.CodeParameterMissing, "display_name")
	if len(persisted) != 1 {
		t.Errorf("failed creations persisted: %+v", persisted)
	}
	// A failing persist publishes nothing.
	boom := errors.New("disk full")
	if _, err := r.Create(meter.Params{DisplayName: "z", EventName: "z", Formula: meter.Count}, t0, func(meter.Meter) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("persist error: %v", err)
	}
	if _, ok := r.Lookup("z"); ok || r.Len() != 1 {
		t.Errorf("meter published after a failed persist")
	}
	m2 := create(t, r, "z", t0)
	if m2.Seq != 2 || m2.ID == m.ID {
		t.Errorf("second meter %+v", m2)
	}
	// Copies: changing a returned meter changes nothing stored.
	m2.DisplayName = "changed"
	if got, _ := r.Get(m2.ID); got.DisplayName != "d z" {
		t.Errorf("registry shares its meters: %q", got.DisplayName)
	}
	if all := r.All(); len(all) != 2 || all[0].ID != m.ID || all[1].ID != m2.ID {
		t.Errorf("All: %+v", all)
	}
	_, err = r.Get("mtr_nope")
	wantError(t, err, meter.ErrNotFound, meter.CodeResourceMissing, "id")
}

func TestNewRegistry(t *testing.T) {
	a := meter.Meter{ID: "mtr_a", Seq: 2, EventName: "a", Status: meter.Active}
	b := meter.Meter{ID: "mtr_b", Seq: 1, EventName: "b", Status: meter.Inactive}
	r, err := meter.NewRegistry([]meter.Meter{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if all := r.All(); len(all) != 2 || all[0] != b || all[1] != a {
		t.Errorf("All not in Seq order: %+v", all)
	}
	if c := create(t, r, "c", t0); c.Seq != 3 {
		t.Errorf("next Seq %d, want 3", c.Seq)
	}
	if _, err := meter.NewRegistry([]meter.Meter{a, {ID: "mtr_a", Seq: 3, EventName: "x"}}); err == nil {
		t.Error("duplicate id accepted")
	}
	if _, err := meter.NewRegistry([]meter.Meter{a, {ID: "mtr_x", Seq: 3, EventName: "a"}}); err == nil {
		t.Error("duplicate event name accepted")
	}
}

func TestSetStatus(t *testing.T) {
	r := newRegistry(t)
	m := create(t, r, "e", t0)
	calls := 0
	persist := func(meter.Meter) error { calls++; return nil }
	t1 := t0.Add(time.Hour + 300*time.Millisecond)
	off, err := r.SetStatus(m.ID, meter.Inactive, t1, persist)
	if err != nil || off.Status != meter.Inactive || !off.DeactivatedAt.Equal(t1.Truncate(time.Second)) || !off.Updated.Equal(t1.Truncate(time.Second)) || !off.Created.Equal(t0) {
		t.Fatalf("deactivated: %+v, %v", off, err)
	}
	// Idempotent: unchanged, not persisted.
	again, err := r.SetStatus(m.ID, meter.Inactive, t1.Add(time.Hour), persist)
	if err != nil || again != off || calls != 1 {
		t.Fatalf("deactivated again: %+v, %v, %d persists", again, err, calls)
	}
	if got, _ := r.Lookup("e"); got.Status != meter.Inactive {
		t.Error("Lookup sees an active meter")
	}
	t2 := t1.Add(2 * time.Hour).Truncate(time.Second)
	on, err := r.SetStatus(m.ID, meter.Active, t2, persist)
	if err != nil || on.Status != meter.Active || !on.DeactivatedAt.IsZero() || !on.Updated.Equal(t2) {
		t.Fatalf("reactivated: %+v, %v", on, err)
	}
	if again, _ := r.SetStatus(m.ID, meter.Active, t2.Add(time.Hour), persist); again != on || calls != 2 {
		t.Fatalf("reactivated again: %+v, %d persists", again, calls)
	}
	boom := errors.New("boom")
	if _, err := r.SetStatus(m.ID, meter.Inactive, t2, func(meter.Meter) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("persist error: %v", err)
	}
	if got, _ := r.Get(m.ID); got != on {
		t.Errorf("failed change published: %+v", got)
	}
	_, err = r.SetStatus("mtr_nope", meter.Inactive, t2, nil)
	wantError(t, err, meter.ErrNotFound, meter.CodeResourceMissing, "id")
	defer func() {
		if recover() == nil {
			t.Error("SetStatus with an invalid status did not panic")
		}
	}()
	r.SetStatus(m.ID, "archived", t2, nil)
}

func TestSetDisplayName(t *testing.T) {
	r := newRegistry(t)
	m := create(t, r, "e", t0)
	if _, err := r.SetStatus(m.ID, meter.Inactive, t0, nil); err != nil {
		t.Fatal(err)
	}
	t1 := t0.Add(time.Minute)
	got, err := r.SetDisplayName(m.ID, "New", t1, nil)
	if err != nil || got.DisplayName != "New" || !got.Updated.Equal(t1) || got.Status != meter.Inactive || got.EventName != "e" {
		t.Fatalf("renamed: %+v, %v", got, err)
	}
	if l, _ := r.Lookup("e"); l.DisplayName != "New" {
		t.Errorf("Lookup sees %q", l.DisplayName)
	}
	_, err = r.SetDisplayName(m.ID, "", t1, nil)
	wantError(t, err, meter.ErrInvalid, meter.CodeParameterInvalid, "display_name")
	_, err = r.SetDisplayName(m.ID, strings.Repeat("d", 251), t1, nil)
	wantError(t, err, meter.ErrInvalid, meter.CodeStringTooLong, "display_name")
	_, err = r.SetDisplayName("mtr_nope", "x", t1, nil)
	wantError(t, err, meter.ErrNotFound, meter.CodeResourceMissing, "id")
}

func TestList(t *testing.T) {
	r := newRegistry(t)
	var ms []meter.Meter // oldest first
	for i := range 25 {
		ms = append(ms, create(t, r, fmt.Sprint("e", i), t0))
	}
	for _, i := range []int{3, 4, 10, 24} {
		if _, err := r.SetStatus(ms[i].ID, meter.Inactive, t0, nil); err != nil {
			t.Fatal(err)
		}
	}
	name := func(page []meter.Meter) string {
		var s []string
		for _, m := range page {
			s = append(s, m.EventName)
		}
		return strings.Join(s, ",")
	}
	list := func(p meter.ListParams) string {
		t.Helper()
		page, more, err := r.List(p)
		if err != nil {
			t.Fatalf("List(%+v): %v", p, err)
		}
		return fmt.Sprintf("%s more=%v", name(page), more)
	}
	for _, tt := range []struct {
		p    meter.ListParams
		want string
	}{
		{meter.ListParams{}, "e24,e23,e22,e21,e20,e19,e18,e17,e16,e15 more=true"},
		{meter.ListParams{Limit: 3}, "e24,e23,e22 more=true"},
		{meter.ListParams{Limit: 25}, "e24,e23,e22,e21,e20,e19,e18,e17,e16,e15,e14,e13,e12,e11,e10,e9,e8,e7,e6,e5,e4,e3,e2,e1,e0 more=false"},
		{meter.ListParams{Limit: 100, Status: meter.Inactive}, "e24,e10,e4,e3 more=false"},
		{meter.ListParams{Limit: 2, Status: meter.Inactive}, "e24,e10 more=true"},
		{meter.ListParams{Limit: 3, Status: meter.Active, StartingAfter: ms[12].ID}, "e11,e9,e8 more=true"},
		{meter.ListParams{Limit: 3, StartingAfter: ms[3].ID}, "e2,e1,e0 more=false"},
		{meter.ListParams{Limit: 3, StartingAfter: ms[0].ID}, " more=false"},
		{meter.ListParams{Limit: 3, EndingBefore: ms[20].ID}, "e23,e22,e21 more=true"},
		{meter.ListParams{Limit: 3, EndingBefore: ms[21].ID}, "e24,e23,e22 more=false"},
		{meter.ListParams{Limit: 10, EndingBefore: ms[22].ID}, "e24,e23 more=false"},
		{meter.ListParams{Limit: 3, EndingBefore: ms[24].ID}, " more=false"},
		{meter.ListParams{Limit: 2, Status: meter.Inactive, EndingBefore: ms[3].ID}, "e10,e4 more=true"},
		// A cursor of the other status still places the page.
		{meter.ListParams{Limit: 2, Status: meter.Inactive, StartingAfter: ms[12].ID}, "e10,e4 more=true"},
		{meter.ListParams{Limit: 2, Status: meter.Active, EndingBefore: ms[10].ID}, "e12,e11 more=true"},
	} {
		if got := list(tt.p); got != tt.want {
			t.Errorf("List(%+v) = %s, want %s", tt.p, got, tt.want)
		}
	}
	// Walking forward with starting_after and back with ending_before
	// visits every meter once.
	var fwd []meter.Meter
	p := meter.ListParams{Limit: 7}
	for {
		page, more, err := r.List(p)
		if err != nil {
			t.Fatal(err)
		}
		fwd = append(fwd, page...)
		if !more {
			break
		}
		p.StartingAfter = page[len(page)-1].ID
	}
	if len(fwd) != 25 || fwd[0].ID != ms[24].ID || fwd[24].ID != ms[0].ID {
		t.Errorf("forward walk: %s", name(fwd))
	}
	var back []meter.Meter
	p = meter.ListParams{Limit: 7, EndingBefore: ms[0].ID}
	for {
		page, more, err := r.List(p)
		if err != nil {
			t.Fatal(err)
		}
		back = append(page, back...)
		if !more {
			break
		}
		p.EndingBefore = page[0].ID
	}
	if name(back) != name(fwd[:24]) {
		t.Errorf("backward walk: %s", name(back))
	}
	for _, tt := range []struct {
		p           meter.ListParams
		sentinel    error
		code, param string
	}{
		{meter.ListParams{Limit: -1}, meter.ErrInvalid, meter.CodeParameterInvalid, "limit"},
		{meter.ListParams{Limit: 101}, meter.ErrInvalid, meter.CodeParameterInvalid, "limit"},
		{meter.ListParams{Status: "archived"}, meter.ErrInvalid, meter.CodeParameterInvalid, "status"},
		{meter.ListParams{StartingAfter: ms[1].ID, EndingBefore: ms[2].ID}, meter.ErrInvalid, meter.CodeParameterExclusive, "starting_after"},
		{meter.ListParams{StartingAfter: "mtr_nope"}, meter.ErrNotFound, meter.CodeResourceMissing, "starting_after"},
		{meter.ListParams{EndingBefore: "mtr_nope"}, meter.ErrNotFound, meter.CodeResourceMissing, "ending_before"},
	} {
		_, _, err := r.List(tt.p)
		wantError(t, err, tt.sentinel, tt.code, tt.param)
	}
	if got := list(meter.ListParams{Limit: 1}); got != "e24 more=true" {
		t.Errorf("limit 1: %s", got)
	}
	if got := list(meter.ListParams{Limit: 100}); !strings.HasSuffix(got, "e0 more=false") {
		t.Errorf("limit 100: %s", got)
	}
	empty := newRegistry(t)
	if page, more, err := empty.List(meter.ListParams{}); err != nil || more || len(page) != 0 {
		t.Errorf("empty registry: %v, %v, %v", page, more, err)
	}
}

// Readers never block on or observe a half-made change.
func TestRegistryConcurrent(t *testing.T) {
	r := newRegistry(t)
	var wg sync.WaitGroup
	const writers, perWriter = 4, 50
	for w := range writers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				m, err := r.Create(meter.Params{DisplayName: "d", EventName: fmt.Sprintf("e%d-%d", w, i), Formula: meter.Sum}, t0, nil)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := r.SetStatus(m.ID, meter.Inactive, t0, nil); err != nil {
					t.Error(err)
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := range perWriter {
				if m, ok := r.Lookup(fmt.Sprintf("e%d-%d", w, i)); ok && m.EventName != fmt.Sprintf("e%d-%d", w, i) {
					t.Errorf("Lookup returned %q", m.EventName)
				}
				page, _, err := r.List(meter.ListParams{Limit: 100})
				if err != nil {
					t.Error(err)
				}
				for j := 1; j < len(page); j++ {
					if page[j].Seq >= page[j-1].Seq {
						t.Errorf("List out of order")
					}
				}
			}
		}()
	}
	wg.Wait()
	if r.Len() != writers*perWriter {
		t.Errorf("Len %d", r.Len())
	}
	seqs := map[uint64]bool{}
	for _, m := range r.All() {
		if seqs[m.Seq] || m.Status != meter.Inactive {
			t.Errorf("meter %+v", m)
		}
		seqs[m.Seq] = true
	}
}

func TestRandomBase62(t *testing.T) {
	seen := map[string]bool{}
	counts := map[rune]int{}
	for range 2000 {
		s := meter.RandomBase62(20)
		if len(s) != 20 || seen[s] {
			t.Fatalf("RandomBase62 returned %q", s)
		}
		seen[s] = true
		for _, c := range s {
			counts[c]++
		}
	}
	// 40,000 characters over 62 symbols: about 645 each.
	if len(counts) != 62 {
		t.Fatalf("%d distinct characters", len(counts))
	}
	for c, n := range counts {
		if n < 450 || n > 850 {
			t.Errorf("character %q appears %d times", c, n)
		}
	}
}

func ExampleParams_Validate() {
	err := meter.Params{DisplayName: "Tokens", EventName: "tokens", Formula: "max"}.Validate()
	var me *meter.Error
	if errors.As(err, &me) {
		fmt.Println(me.Code, me.Param)
	}
	fmt.Println(meter.Params{DisplayName: "Tokens", EventName: "tokens", Formula: meter.Sum}.Validate())
	// Output:
	// parameter_invalid default_aggregation[formula]
	// <nil>
}

func ExampleRegistry_List() {
	r, _ := meter.NewRegistry(nil)
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, name := range []string{"a", "b", "c", "d"} {
		r.Create(meter.Params{DisplayName: name, EventName: name, Formula: meter.Count}, now, nil)
	}
	p := meter.ListParams{Limit: 3}
	for {
		page, more, _ := r.List(p)
		for _, m := range page {
			fmt.Print(m.EventName, " ")
		}
		fmt.Println("more:", more)
		if !more {
			break
		}
		p.StartingAfter = page[len(page)-1].ID
	}
	// Output:
	// d c b more: true
	// a more: false
}
