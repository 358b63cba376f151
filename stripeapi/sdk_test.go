package stripeapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meterdb/meterdb/stripeapi"
	"github.com/stripe/stripe-go/v85"
)

// These tests drive the handler through the real stripe-go client.

func createMeter(t *testing.T, sc *stripe.Client, event, formula string) *stripe.BillingMeter {
	t.Helper()
	m, err := sc.V1BillingMeters.Create(context.Background(), &stripe.BillingMeterCreateParams{
		DisplayName:        stripe.String("Meter " + event),
		EventName:          stripe.String(event),
		DefaultAggregation: &stripe.BillingMeterCreateDefaultAggregationParams{Formula: stripe.String(formula)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func record(t *testing.T, sc *stripe.Client, event, customer, value string, ts time.Time) *stripe.BillingMeterEvent {
	t.Helper()
	p := &stripe.BillingMeterEventCreateParams{
		EventName: stripe.String(event),
		Payload:   map[string]string{"stripe_customer_id": customer, "value": value},
	}
	if !ts.IsZero() {
		p.Timestamp = stripe.Int64(ts.Unix())
	}
	ev, err := sc.V1BillingMeterEvents.Create(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestSDKMeterLifecycle(t *testing.T) {
	e := newEnv(t, nil, nil)
	sc := e.client(testKey)
	ctx := context.Background()

	m := createMeter(t, sc, "api_call", "sum")
	if !strings.HasPrefix(m.ID, "mtr_") || m.Object != "billing.meter" || m.Livemode || m.Status != "active" ||
		m.DisplayName != "Meter api_call" || m.EventName != "api_call" || m.Created != t0.Unix() || m.Updated != t0.Unix() ||
		m.CustomerMapping.EventPayloadKey != "stripe_customer_id" || m.CustomerMapping.Type != "by_id" ||
		m.ValueSettings.EventPayloadKey != "value" || m.DefaultAggregation.Formula != "sum" ||
		m.EventTimeWindow != "" || m.StatusTransitions.DeactivatedAt != 0 {
		t.Fatalf("created meter %+v", m)
	}
	if raw := string(m.LastResponse.RawJSON); !strings.Contains(raw, `"event_time_window": null`) ||
		!strings.Contains(raw, `"deactivated_at": null`) {
		t.Errorf("null fields not written as null:\n%s", raw)
	}

	m2, err := sc.V1BillingMeters.Create(ctx, &stripe.BillingMeterCreateParams{
		DisplayName:        stripe.String("Seats"),
		EventName:          stripe.String("seats"),
		DefaultAggregation: &stripe.BillingMeterCreateDefaultAggregationParams{Formula: stripe.String("last")},
		CustomerMapping: &stripe.BillingMeterCreateCustomerMappingParams{
			EventPayloadKey: stripe.String("account"), Type: stripe.String("by_id")},
		ValueSettings:   &stripe.BillingMeterCreateValueSettingsParams{EventPayloadKey: stripe.String("n")},
		EventTimeWindow: stripe.String("hour"),
		Expand:          []*string{stripe.String("customer_mapping")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if m2.CustomerMapping.EventPayloadKey != "account" || m2.ValueSettings.EventPayloadKey != "n" ||
		m2.EventTimeWindow != "hour" || m2.DefaultAggregation.Formula != "last" {
		t.Fatalf("created meter %+v", m2)
	}

	got, err := sc.V1BillingMeters.Retrieve(ctx, m.ID, nil)
	if err != nil || got.ID != m.ID || got.EventName != "api_call" {
		t.Fatalf("retrieve: %+v, %v", got, err)
	}

	e.clk.Advance(time.Minute)
	up, err := sc.V1BillingMeters.Update(ctx, m.ID, &stripe.BillingMeterUpdateParams{DisplayName: stripe.String("Calls")})
	if err != nil || up.DisplayName != "Calls" || up.Updated != t0.Unix()+60 {
		t.Fatalf("update: %+v, %v", up, err)
	}
	same, err := sc.V1BillingMeters.Update(ctx, m.ID, &stripe.BillingMeterUpdateParams{})
	if err != nil || same.DisplayName != "Calls" || same.Updated != up.Updated {
		t.Fatalf("empty update: %+v, %v", same, err)
	}

	e.clk.Advance(time.Minute)
	off, err := sc.V1BillingMeters.Deactivate(ctx, m.ID, nil)
	if err != nil || off.Status != "inactive" || off.StatusTransitions.DeactivatedAt != t0.Unix()+120 {
		t.Fatalf("deactivate: %+v, %v", off, err)
	}
	e.clk.Advance(time.Minute)
	again, err := sc.V1BillingMeters.Deactivate(ctx, m.ID, nil)
	if err != nil || again.Status != "inactive" || again.StatusTransitions.DeactivatedAt != t0.Unix()+120 {
		t.Fatalf("deactivate twice: %+v, %v", again, err)
	}
	on, err := sc.V1BillingMeters.Reactivate(ctx, m.ID, nil)
	if err != nil || on.Status != "active" || on.StatusTransitions.DeactivatedAt != 0 || on.Updated != t0.Unix()+180 {
		t.Fatalf("reactivate: %+v, %v", on, err)
	}
	on2, err := sc.V1BillingMeters.Reactivate(ctx, m.ID, nil)
	if err != nil || on2.Status != "active" || on2.Updated != on.Updated {
		t.Fatalf("reactivate twice: %+v, %v", on2, err)
	}

	// livemode follows the key.
	live := newEnv(t, &stripeapi.Options{APIKeys: []string{"sk_live_abc", "sk_test_abc"}}, nil)
	lm := createMeter(t, live.client("sk_live_abc"), "x", "count")
	if !lm.Livemode {
		t.Error("meter created with a live key has livemode false")
	}
	tm, err := live.client("sk_test_abc").V1BillingMeters.Retrieve(ctx, lm.ID, nil)
	if err != nil || tm.Livemode {
		t.Errorf("retrieve with a test key: %+v, %v", tm, err)
	}
}

func TestSDKListMetersAutoPagination(t *testing.T) {
	e := newEnv(t, nil, nil)
	sc := e.client(testKey)
	ctx := context.Background()
	var ids []string // oldest first
	for i := range 25 {
		ids = append(ids, createMeter(t, sc, fmt.Sprintf("ev_%02d", i), "count").ID)
	}
	newestFirst := slices.Clone(ids)
	slices.Reverse(newestFirst)

	collect := func(p *stripe.BillingMeterListParams) []string {
		t.Helper()
		var got []string
		for m, err := range sc.V1BillingMeters.List(ctx, p).All(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, m.ID)
		}
		return got
	}
	if got := collect(&stripe.BillingMeterListParams{ListParams: stripe.ListParams{Limit: stripe.Int64(7)}}); !slices.Equal(got, newestFirst) {
		t.Fatalf("auto-pagination gave %d meters:\n%v\nwant\n%v", len(got), got, newestFirst)
	}
	// Default page size (10).
	if got := collect(nil); !slices.Equal(got, newestFirst) {
		t.Fatalf("auto-pagination with default limit gave %v", got)
	}
	// Backward from the oldest: stripe-go walks ending_before and reverses
	// each page, so the meters come oldest first after the cursor.
	if got := collect(&stripe.BillingMeterListParams{ListParams: stripe.ListParams{
		Limit: stripe.Int64(4), EndingBefore: stripe.String(ids[0])}}); !slices.Equal(got, ids[1:]) {
		t.Fatalf("backward pagination gave %v, want %v", got, ids[1:])
	}

	for _, id := range ids[:5] {
		if _, err := sc.V1BillingMeters.Deactivate(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
	}
	inactive := collect(&stripe.BillingMeterListParams{Status: stripe.String("inactive"), ListParams: stripe.ListParams{Limit: stripe.Int64(2)}})
	want := slices.Clone(ids[:5])
	slices.Reverse(want)
	if !slices.Equal(inactive, want) {
		t.Fatalf("inactive meters %v, want %v", inactive, want)
	}
	if active := collect(&stripe.BillingMeterListParams{Status: stripe.String("active")}); len(active) != 20 {
		t.Fatalf("%d active meters, want 20", len(active))
	}

	page := sc.V1BillingMeters.List(ctx, &stripe.BillingMeterListParams{ListParams: stripe.ListParams{Limit: stripe.Int64(3)}})
	if page.Err() != nil || len(page.Data()) != 3 || !page.Meta().HasMore || page.Meta().URL != "/v1/billing/meters" {
		t.Fatalf("one page: %v %+v", page.Err(), page.Meta())
	}
}

func TestSDKMeterEventsAndSummaries(t *testing.T) {
	e := newEnv(t, nil, nil)
	sc := e.client(testKey)
	ctx := context.Background()
	m := createMeter(t, sc, "tokens", "sum")
	day := t0.Truncate(24 * time.Hour)

	// Values 1..6 in hours 7..12 of the day, plus one event for another
	// customer and one the day before.
	var total int64
	for h := 7; h <= 12; h++ {
		v := int64(h - 6)
		total += v
		ev := record(t, sc, "tokens", "cus_a", fmt.Sprint(v), day.Add(time.Duration(h)*time.Hour+5*time.Minute))
		if ev.Object != "billing.meter_event" || ev.EventName != "tokens" || ev.Livemode || ev.Created != t0.Unix() ||
			ev.Payload["value"] != fmt.Sprint(v) || ev.Timestamp != day.Add(time.Duration(h)*time.Hour+5*time.Minute).Unix() ||
			!strings.HasPrefix(ev.Identifier, "mev_") {
			t.Fatalf("meter event %+v", ev)
		}
	}
	record(t, sc, "tokens", "cus_b", "100", time.Time{})
	record(t, sc, "tokens", "cus_a", "1000", day.Add(-time.Hour))

	withID, err := sc.V1BillingMeterEvents.Create(ctx, &stripe.BillingMeterEventCreateParams{
		EventName:  stripe.String("tokens"),
		Payload:    map[string]string{"stripe_customer_id": "cus_c", "value": "-4"},
		Identifier: stripe.String("evt-123"),
	})
	if err != nil || withID.Identifier != "evt-123" || withID.Timestamp != t0.Unix() {
		t.Fatalf("event with identifier: %+v, %v", withID, err)
	}

	list := func(p *stripe.BillingMeterEventSummaryListParams) ([]*stripe.BillingMeterEventSummary, error) {
		var out []*stripe.BillingMeterEventSummary
		for s, err := range sc.V1BillingMeterEventSummaries.List(ctx, p).All(ctx) {
			if err != nil {
				return out, err
			}
			out = append(out, s)
		}
		return out, nil
	}
	params := func(customer string, start, end time.Time, window string) *stripe.BillingMeterEventSummaryListParams {
		p := &stripe.BillingMeterEventSummaryListParams{
			ID: stripe.String(m.ID), Customer: stripe.String(customer),
			StartTime: stripe.Int64(start.Unix()), EndTime: stripe.Int64(end.Unix()),
		}
		if window != "" {
			p.ValueGroupingWindow = stripe.String(window)
		}
		return p
	}

	// One summary over the whole day.
	sums, err := list(params("cus_a", day, day.Add(24*time.Hour), ""))
	if err != nil || len(sums) != 1 {
		t.Fatalf("total: %v, %v", sums, err)
	}
	s := sums[0]
	if s.AggregatedValue != float64(total) || s.Object != "billing.meter_event_summary" || s.Meter != m.ID ||
		s.StartTime != day.Unix() || s.EndTime != day.Add(24*time.Hour).Unix() || s.Livemode ||
		!strings.HasPrefix(s.ID, "mtrusg_test_") {
		t.Fatalf("total summary %+v", s)
	}
	// A minute-aligned partial range: [09:06, 11:06) holds the events at
	// 10:05 (4) and 11:05 (5), not the one at 09:05.
	sums, err = list(params("cus_a", day.Add(9*time.Hour+6*time.Minute), day.Add(11*time.Hour+6*time.Minute), ""))
	if err != nil || len(sums) != 1 || sums[0].AggregatedValue != 4+5 {
		t.Fatalf("partial range: %+v, %v", sums, err)
	}
	// No events: one summary with 0.
	sums, err = list(params("cus_nobody", day, day.Add(time.Hour), ""))
	if err != nil || len(sums) != 1 || sums[0].AggregatedValue != 0 {
		t.Fatalf("empty range: %+v, %v", sums, err)
	}

	// Hourly, auto-paginated two at a time: six windows, newest first,
	// empty hours omitted.
	hp := params("cus_a", day, day.Add(24*time.Hour), "hour")
	hp.Limit = stripe.Int64(2)
	sums, err = list(hp)
	if err != nil || len(sums) != 6 {
		t.Fatalf("hourly: %d summaries, %v", len(sums), err)
	}
	for i, s := range sums {
		h := 12 - i
		if s.StartTime != day.Add(time.Duration(h)*time.Hour).Unix() || s.EndTime != s.StartTime+3600 ||
			s.AggregatedValue != float64(h-6) {
			t.Fatalf("hourly summary %d: %+v", i, s)
		}
	}
	// Ids are stable across queries.
	again, err := list(params("cus_a", day.Add(-24*time.Hour), day.Add(24*time.Hour), "hour"))
	if err != nil || len(again) != 7 {
		t.Fatalf("hourly over two days: %d, %v", len(again), err)
	}
	for i := range sums {
		if again[i].ID != sums[i].ID {
			t.Fatalf("summary id changed between queries: %s vs %s", again[i].ID, sums[i].ID)
		}
	}
	// Backward from the oldest window.
	bp := params("cus_a", day, day.Add(24*time.Hour), "hour")
	bp.Limit, bp.EndingBefore = stripe.Int64(4), stripe.String(sums[5].ID)
	back, err := list(bp)
	if err != nil || len(back) != 5 || back[0].ID != sums[4].ID || back[4].ID != sums[0].ID {
		t.Fatalf("backward: %d, %v", len(back), err)
	}

	// Daily.
	sums, err = list(params("cus_a", day.Add(-24*time.Hour), day.Add(24*time.Hour), "day"))
	if err != nil || len(sums) != 2 || sums[0].AggregatedValue != float64(total) || sums[1].AggregatedValue != 1000 {
		t.Fatalf("daily: %+v, %v", sums, err)
	}
	// Negative values and other customers.
	sums, err = list(params("cus_c", day, day.Add(24*time.Hour), ""))
	if err != nil || sums[0].AggregatedValue != -4 {
		t.Fatalf("cus_c: %+v, %v", sums, err)
	}
}

func TestSDKMeterEventAdjustment(t *testing.T) {
	e := newEnv(t, nil, nil)
	sc := e.client(testKey)
	ctx := context.Background()
	m := createMeter(t, sc, "calls", "count")
	for _, id := range []string{"a", "b", "c"} {
		if _, err := sc.V1BillingMeterEvents.Create(ctx, &stripe.BillingMeterEventCreateParams{
			EventName: stripe.String("calls"), Identifier: stripe.String(id),
			Payload: map[string]string{"stripe_customer_id": "cus_1"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	cancel := func(name, id string) (*stripe.BillingMeterEventAdjustment, error) {
		return sc.V1BillingMeterEventAdjustments.Create(ctx, &stripe.BillingMeterEventAdjustmentCreateParams{
			EventName: stripe.String(name), Type: stripe.String("cancel"),
			Cancel: &stripe.BillingMeterEventAdjustmentCreateCancelParams{Identifier: stripe.String(id)},
		})
	}
	adj, err := cancel("calls", "b")
	if err != nil || adj.Object != "billing.meter_event_adjustment" || adj.Status != "complete" || adj.Type != "cancel" ||
		adj.EventName != "calls" || adj.Cancel.Identifier != "b" || adj.Livemode {
		t.Fatalf("adjustment %+v, %v", adj, err)
	}
	count := func() float64 {
		t.Helper()
		l := sc.V1BillingMeterEventSummaries.List(ctx, &stripe.BillingMeterEventSummaryListParams{
			ID: stripe.String(m.ID), Customer: stripe.String("cus_1"),
			StartTime: stripe.Int64(t0.Truncate(time.Hour).Unix()), EndTime: stripe.Int64(t0.Truncate(time.Hour).Add(time.Hour).Unix()),
		})
		if l.Err() != nil {
			t.Fatal(l.Err())
		}
		return l.Data()[0].AggregatedValue
	}
	if got := count(); got != 2 {
		t.Fatalf("count after cancel = %v, want 2", got)
	}
	_, err = cancel("calls", "b")
	wantStripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest, "meter_event_already_cancelled", "cancel[identifier]")
	_, err = cancel("calls", "zzz")
	wantStripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest, "meter_event_not_found", "cancel[identifier]")
	_, err = cancel("other", "a")
	wantStripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest, "meter_event_not_found", "cancel[identifier]")
	_, err = sc.V1BillingMeterEventAdjustments.Create(ctx, &stripe.BillingMeterEventAdjustmentCreateParams{
		EventName: stripe.String("calls"), Type: stripe.String("cancel")})
	wantStripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest, stripe.ErrorCodeParameterMissing, "cancel")

	e.clk.Advance(24*time.Hour + time.Second)
	_, err = cancel("calls", "a")
	wantStripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest, "meter_event_cancel_window_expired", "cancel[identifier]")
	if got := count(); got != 2 {
		t.Fatalf("count after failed cancels = %v, want 2", got)
	}
}

// TestSDKErrors checks one request per error class: the typed
// *stripe.Error, its HTTP status, type, code and param.
func TestSDKErrors(t *testing.T) {
	e := newEnv(t, nil, nil)
	sc := e.client(testKey)
	ctx := context.Background()
	m := createMeter(t, sc, "calls", "sum")
	createMeter(t, sc, "old", "sum")
	if _, err := sc.V1BillingMeters.Deactivate(ctx, mustMeterID(t, sc, "old"), nil); err != nil {
		t.Fatal(err)
	}
	ev := func(name string, payload map[string]string, mod func(*stripe.BillingMeterEventCreateParams)) error {
		p := &stripe.BillingMeterEventCreateParams{EventName: stripe.String(name), Payload: payload}
		if mod != nil {
			mod(p)
		}
		_, err := sc.V1BillingMeterEvents.Create(ctx, p)
		return err
	}
	ok := map[string]string{"stripe_customer_id": "cus_1", "value": "1"}
	summaries := func(mod func(*stripe.BillingMeterEventSummaryListParams)) error {
		p := &stripe.BillingMeterEventSummaryListParams{
			ID: stripe.String(m.ID), Customer: stripe.String("cus_1"),
			StartTime: stripe.Int64(t0.Truncate(time.Hour).Unix()), EndTime: stripe.Int64(t0.Truncate(time.Hour).Add(time.Hour).Unix()),
		}
		mod(p)
		return sc.V1BillingMeterEventSummaries.List(ctx, p).Err()
	}
	inv := stripe.ErrorTypeInvalidRequest
	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   stripe.ErrorCode
		param  string
	}{
		{"missing", func() error {
			_, err := sc.V1BillingMeters.Create(ctx, &stripe.BillingMeterCreateParams{DisplayName: stripe.String("x"),
				DefaultAggregation: &stripe.BillingMeterCreateDefaultAggregationParams{Formula: stripe.String("sum")}})
			return err
		}(), 400, stripe.ErrorCodeParameterMissing, "event_name"},
		{"missing nested", func() error {
			_, err := sc.V1BillingMeters.Create(ctx, &stripe.BillingMeterCreateParams{DisplayName: stripe.String("x"),
				EventName: stripe.String("y"), DefaultAggregation: &stripe.BillingMeterCreateDefaultAggregationParams{}})
			return err
		}(), 400, stripe.ErrorCodeParameterMissing, "default_aggregation"},
		{"invalid enum", func() error {
			_, err := sc.V1BillingMeters.Create(ctx, &stripe.BillingMeterCreateParams{DisplayName: stripe.String("x"),
				EventName:          stripe.String("y"),
				DefaultAggregation: &stripe.BillingMeterCreateDefaultAggregationParams{Formula: stripe.String("max")}})
			return err
		}(), 400, "parameter_invalid", "default_aggregation[formula]"},
		{"empty string", func() error {
			_, err := sc.V1BillingMeters.Update(ctx, m.ID, &stripe.BillingMeterUpdateParams{DisplayName: stripe.String("")})
			return err
		}(), 400, stripe.ErrorCodeParameterInvalidEmpty, "display_name"},
		{"too long", func() error {
			_, err := sc.V1BillingMeters.Update(ctx, m.ID, &stripe.BillingMeterUpdateParams{DisplayName: stripe.String(strings.Repeat("x", 251))})
			return err
		}(), 400, "string_too_long", "display_name"},
		{"unknown", func() error {
			p := &stripe.BillingMeterCreateParams{}
			p.AddExtra("colour", "blue")
			_, err := sc.V1BillingMeters.Create(ctx, p)
			return err
		}(), 400, stripe.ErrorCodeParameterUnknown, "colour"},
		{"unknown nested", func() error {
			p := &stripe.BillingMeterCreateParams{}
			p.AddExtra("default_aggregation[window]", "day")
			_, err := sc.V1BillingMeters.Create(ctx, p)
			return err
		}(), 400, stripe.ErrorCodeParameterUnknown, "default_aggregation[window]"},
		{"metadata is unknown", func() error {
			p := &stripe.BillingMeterUpdateParams{}
			p.AddExtra("metadata[k]", "v")
			_, err := sc.V1BillingMeters.Update(ctx, m.ID, p)
			return err
		}(), 400, stripe.ErrorCodeParameterUnknown, "metadata"},
		{"bad integer", ev("calls", ok, func(p *stripe.BillingMeterEventCreateParams) { p.AddExtra("timestamp", "soon") }),
			400, stripe.ErrorCodeParameterInvalidInteger, "timestamp"},
		{"resource missing", func() error {
			_, err := sc.V1BillingMeters.Retrieve(ctx, "mtr_nope", nil)
			return err
		}(), 404, stripe.ErrorCodeResourceMissing, "id"},
		{"resource missing on deactivate", func() error {
			_, err := sc.V1BillingMeters.Deactivate(ctx, "mtr_nope", nil)
			return err
		}(), 404, stripe.ErrorCodeResourceMissing, "id"},
		{"resource missing on summaries", summaries(func(p *stripe.BillingMeterEventSummaryListParams) { p.ID = stripe.String("mtr_nope") }),
			404, stripe.ErrorCodeResourceMissing, "id"},
		{"list cursor missing", sc.V1BillingMeters.List(ctx, &stripe.BillingMeterListParams{
			ListParams: stripe.ListParams{StartingAfter: stripe.String("mtr_nope")}}).Err(),
			400, stripe.ErrorCodeResourceMissing, "starting_after"},
		{"list limit", sc.V1BillingMeters.List(ctx, &stripe.BillingMeterListParams{
			ListParams: stripe.ListParams{Limit: stripe.Int64(101)}}).Err(),
			400, "parameter_invalid", "limit"},
		{"exclusive", sc.V1BillingMeters.List(ctx, &stripe.BillingMeterListParams{ListParams: stripe.ListParams{
			StartingAfter: stripe.String(m.ID), EndingBefore: stripe.String(m.ID)}}).Err(),
			400, stripe.ErrorCodeParametersExclusive, "ending_before"},
		{"event name taken", func() error {
			_, err := sc.V1BillingMeters.Create(ctx, &stripe.BillingMeterCreateParams{DisplayName: stripe.String("again"),
				EventName:          stripe.String("old"),
				DefaultAggregation: &stripe.BillingMeterCreateDefaultAggregationParams{Formula: stripe.String("sum")}})
			return err
		}(), 400, "meter_event_name_taken", "event_name"},
		{"no meter", ev("nope", ok, nil), 400, "no_meter", "event_name"},
		{"archived meter", ev("old", ok, nil), 400, "archived_meter", "event_name"},
		{"no customer", ev("calls", map[string]string{"value": "1"}, nil), 400, "payload_no_customer_defined", "payload[stripe_customer_id]"},
		{"no value", ev("calls", map[string]string{"stripe_customer_id": "c"}, nil), 400, "payload_no_value_defined", "payload[value]"},
		{"invalid value", ev("calls", map[string]string{"stripe_customer_id": "c", "value": "1.5"}, nil), 400, "payload_invalid_value", "payload[value]"},
		{"long customer before value", ev("calls", map[string]string{"stripe_customer_id": strings.Repeat("c", 101), "value": "1"}, nil),
			400, "string_too_long", "payload[stripe_customer_id]"},
		{"long key before another", ev("calls", map[string]string{strings.Repeat("a", 101): "x", "stripe_customer_id": "c", "value": "1"}, nil),
			400, "string_too_long", "payload"},
		{"too many digits", ev("calls", map[string]string{"stripe_customer_id": "c", "value": "1234567890123456"}, nil),
			400, "meter_event_value_too_many_digits", "payload[value]"},
		{"too far in past", ev("calls", ok, func(p *stripe.BillingMeterEventCreateParams) {
			p.Timestamp = stripe.Int64(t0.Add(-36 * 24 * time.Hour).Unix())
		}), 400, "timestamp_too_far_in_past", "timestamp"},
		{"in future", ev("calls", ok, func(p *stripe.BillingMeterEventCreateParams) {
			p.Timestamp = stripe.Int64(t0.Add(6 * time.Minute).Unix())
		}), 400, "timestamp_in_future", "timestamp"},
		{"duplicate", func() error {
			if err := ev("calls", ok, func(p *stripe.BillingMeterEventCreateParams) { p.Identifier = stripe.String("dup") }); err != nil {
				return err
			}
			return ev("calls", ok, func(p *stripe.BillingMeterEventCreateParams) { p.Identifier = stripe.String("dup") })
		}(), 400, "duplicate_meter_event", "identifier"},
		{"summary misaligned", summaries(func(p *stripe.BillingMeterEventSummaryListParams) { *p.StartTime += 30 }),
			400, "parameter_invalid", "start_time"},
		{"summary hour misaligned", summaries(func(p *stripe.BillingMeterEventSummaryListParams) {
			*p.StartTime += 60
			p.ValueGroupingWindow = stripe.String("hour")
		}), 400, "parameter_invalid", "start_time"},
		{"summary empty range", summaries(func(p *stripe.BillingMeterEventSummaryListParams) { *p.EndTime = *p.StartTime }),
			400, "parameter_invalid", "end_time"},
		{"summary missing customer", summaries(func(p *stripe.BillingMeterEventSummaryListParams) { p.Customer = nil }),
			400, stripe.ErrorCodeParameterMissing, "customer"},
		{"summary bad window", summaries(func(p *stripe.BillingMeterEventSummaryListParams) { p.ValueGroupingWindow = stripe.String("week") }),
			400, "parameter_invalid", "value_grouping_window"},
		{"summary bad cursor", summaries(func(p *stripe.BillingMeterEventSummaryListParams) { p.StartingAfter = stripe.String("mtrusg_zzz") }),
			400, stripe.ErrorCodeResourceMissing, "starting_after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			se := wantStripeErr(t, tc.err, tc.status, inv, tc.code, tc.param)
			var ire *stripe.InvalidRequestError
			if !errors.As(se.Err, &ire) {
				t.Errorf("Err is %T, want *stripe.InvalidRequestError", se.Err)
			}
		})
	}
	if st := e.db.Stats(); st.EventsAccepted != 1 {
		t.Errorf("%d events accepted, want 1 (the first of the duplicates)", st.EventsAccepted)
	}

	t.Run("unauthorized", func(t *testing.T) {
		_, err := e.client("sk_live_nope").V1BillingMeters.Retrieve(ctx, m.ID, nil)
		se := wantStripeErr(t, err, 401, inv, "", "")
		if se.Msg != "Invalid API Key provided: sk_live_****" {
			t.Errorf("message %q", se.Msg)
		}
	})
	t.Run("doc_url", func(t *testing.T) {
		_, err := sc.V1BillingMeters.Retrieve(ctx, "mtr_nope", nil)
		var se *stripe.Error
		errors.As(err, &se)
		if se.DocURL != "https://stripe.com/docs/error-codes/resource-missing" || se.Msg != "No such billing.meter: 'mtr_nope'" {
			t.Errorf("doc_url %q, message %q", se.DocURL, se.Msg)
		}
	})
}

func mustMeterID(t *testing.T, sc *stripe.Client, event string) string {
	t.Helper()
	for m, err := range sc.V1BillingMeters.List(context.Background(), nil).All(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		if m.EventName == event {
			return m.ID
		}
	}
	t.Fatalf("no meter for %q", event)
	return ""
}

func TestSDKRateLimit(t *testing.T) {
	e := newEnv(t, &stripeapi.Options{RateLimit: 1, RateBurst: 2}, nil)
	sc := e.client(testKey)
	ctx := context.Background()
	for i := range 2 {
		if _, err := sc.V1BillingMeters.Retrieve(ctx, "mtr_x", nil); errors.Is(err, nil) || statusOf(err) != 404 {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	_, err := sc.V1BillingMeters.Retrieve(ctx, "mtr_x", nil)
	wantStripeErr(t, err, 429, stripe.ErrorTypeInvalidRequest, stripe.ErrorCodeRateLimit, "")
	// Another key has its own bucket.
	if _, err := e.client("sk_test_other").V1BillingMeters.Retrieve(ctx, "mtr_x", nil); statusOf(err) != 404 {
		t.Fatalf("other key: %v", err)
	}
	e.clk.Advance(time.Second)
	if _, err := sc.V1BillingMeters.Retrieve(ctx, "mtr_x", nil); statusOf(err) != 404 {
		t.Fatalf("after a second: %v", err)
	}
}

func statusOf(err error) int {
	var se *stripe.Error
	if errors.As(err, &se) {
		return se.HTTPStatusCode
	}
	return 0
}

// TestSDKIdempotency sends the same parameters with the same explicit key,
// then other parameters with it, then the key after its record expired.
func TestSDKIdempotency(t *testing.T) {
	e := newEnv(t, nil, nil)
	sc := e.client(testKey)
	ctx := context.Background()
	createMeter(t, sc, "calls", "sum")
	params := func(value string) *stripe.BillingMeterEventCreateParams {
		p := &stripe.BillingMeterEventCreateParams{EventName: stripe.String("calls"),
			Payload: map[string]string{"stripe_customer_id": "cus_1", "value": value}}
		p.SetIdempotencyKey("key-1")
		return p
	}
	first, err := sc.V1BillingMeterEvents.Create(ctx, params("5"))
	if err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(time.Minute)
	second, err := sc.V1BillingMeterEvents.Create(ctx, params("5"))
	if err != nil {
		t.Fatal(err)
	}
	if string(first.LastResponse.RawJSON) != string(second.LastResponse.RawJSON) || second.Created != t0.Unix() {
		t.Fatalf("replay differs:\n%s\n%s", first.LastResponse.RawJSON, second.LastResponse.RawJSON)
	}
	if second.LastResponse.Header.Get("Idempotent-Replayed") != "true" || second.LastResponse.IdempotencyKey != "key-1" {
		t.Errorf("replay headers %v", second.LastResponse.Header)
	}
	if second.LastResponse.RequestID == first.LastResponse.RequestID {
		t.Error("replay reused the request id")
	}
	if n := e.db.Stats().EventsAccepted; n != 1 {
		t.Fatalf("%d events accepted, want 1", n)
	}

	_, err = sc.V1BillingMeterEvents.Create(ctx, params("6"))
	se := wantStripeErr(t, err, 400, stripe.ErrorTypeIdempotency, "", "")
	var ie *stripe.IdempotencyError
	if !errors.As(se.Err, &ie) {
		t.Errorf("Err is %T, want *stripe.IdempotencyError", se.Err)
	}
	// The same key on another endpoint is another request too.
	mp := &stripe.BillingMeterCreateParams{DisplayName: stripe.String("x"), EventName: stripe.String("y"),
		DefaultAggregation: &stripe.BillingMeterCreateDefaultAggregationParams{Formula: stripe.String("sum")}}
	mp.SetIdempotencyKey("key-1")
	_, err = sc.V1BillingMeters.Create(ctx, mp)
	wantStripeErr(t, err, 400, stripe.ErrorTypeIdempotency, "", "")

	// Errors are not stored: the key stays usable for the corrected
	// request, and a repeat of the failing one fails afresh.
	bad := params("x")
	bad.SetIdempotencyKey("key-2")
	_, err1 := sc.V1BillingMeterEvents.Create(ctx, bad)
	_, err2 := sc.V1BillingMeterEvents.Create(ctx, bad)
	s1, s2 := wantStripeErr(t, err1, 400, stripe.ErrorTypeInvalidRequest, "payload_invalid_value", "payload[value]"),
		wantStripeErr(t, err2, 400, stripe.ErrorTypeInvalidRequest, "payload_invalid_value", "payload[value]")
	if s1.LastResponse.Header.Get("Idempotent-Replayed") != "" || s2.LastResponse.Header.Get("Idempotent-Replayed") != "" {
		t.Error("an error response was replayed")
	}
	good := params("8")
	good.SetIdempotencyKey("key-2")
	if _, err := sc.V1BillingMeterEvents.Create(ctx, good); err != nil {
		t.Fatalf("key reused after an engine rejection: %v", err)
	}
	// An event for a meter that does not exist yet, retried under the same
	// key once the meter exists.
	early := &stripe.BillingMeterEventCreateParams{EventName: stripe.String("later"),
		Payload: map[string]string{"stripe_customer_id": "cus_1", "value": "1"}}
	early.SetIdempotencyKey("key-4")
	_, err = sc.V1BillingMeterEvents.Create(ctx, early)
	wantStripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest, "no_meter", "event_name")
	createMeter(t, sc, "later", "sum")
	if _, err := sc.V1BillingMeterEvents.Create(ctx, early); err != nil {
		t.Fatalf("retry after creating the meter: %v", err)
	}
	// Validation failures are not stored: the key stays usable.
	unknown := params("7")
	unknown.SetIdempotencyKey("key-3")
	unknown.AddExtra("colour", "red")
	_, err = sc.V1BillingMeterEvents.Create(ctx, unknown)
	wantStripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest, stripe.ErrorCodeParameterUnknown, "colour")
	fixed := params("7")
	fixed.SetIdempotencyKey("key-3")
	if _, err := sc.V1BillingMeterEvents.Create(ctx, fixed); err != nil {
		t.Fatalf("key reused after a validation failure: %v", err)
	}

	// Keys are scoped by API key.
	other, err := e.client("sk_test_other").V1BillingMeterEvents.Create(ctx, params("5"))
	if err != nil || other.Identifier == first.Identifier {
		t.Fatalf("another API key with the same idempotency key: %+v, %v", other, err)
	}

	// After the record's 24 hours the key is new again.
	e.clk.Advance(25 * time.Hour)
	third, err := sc.V1BillingMeterEvents.Create(ctx, params("5"))
	if err != nil || third.Created == first.Created {
		t.Fatalf("after expiry: %+v, %v", third, err)
	}
	// key-1 twice (once counted), key-2 corrected, key-3, key-4 retried,
	// the other API key, key-1 after expiry.
	if n := e.db.Stats().EventsAccepted; n != 6 {
		t.Fatalf("%d events accepted, want 6", n)
	}
}

// TestSDKRetryReplays makes the first attempt of a meter event fail on the
// wire after the handler executed it; stripe-go retries with the
// Idempotency-Key it generated, and the handler replays the response
// instead of recording the event again.
func TestSDKRetryReplays(t *testing.T) {
	var attempts atomic.Int32
	var firstBody atomic.Value
	var replayed atomic.Bool
	e := newEnv(t, nil, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v1/billing/meter_events" {
				h.ServeHTTP(w, r)
				return
			}
			if r.Header.Get("Idempotency-Key") == "" {
				t.Error("stripe-go sent no Idempotency-Key")
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if attempts.Add(1) == 1 {
				firstBody.Store(rec.Body.String())
				conn, _, err := w.(http.Hijacker).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				conn.Close() // the response is lost on the way
				return
			}
			replayed.Store(rec.Header().Get("Idempotent-Replayed") == "true")
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
		})
	})
	sc := e.client(testKey)
	createMeter(t, sc, "calls", "sum")
	retrying := newClient(e.srv.URL, testKey, 2)
	ev, err := retrying.V1BillingMeterEvents.Create(context.Background(), &stripe.BillingMeterEventCreateParams{
		EventName: stripe.String("calls"), Payload: map[string]string{"stripe_customer_id": "cus_1", "value": "3"}})
	if err != nil {
		t.Fatal(err)
	}
	if attempts.Load() != 2 || !replayed.Load() {
		t.Fatalf("%d attempts, replayed %v", attempts.Load(), replayed.Load())
	}
	if string(ev.LastResponse.RawJSON) != firstBody.Load().(string) {
		t.Fatalf("retry got\n%s\nfirst attempt produced\n%s", ev.LastResponse.RawJSON, firstBody.Load())
	}
	if n := e.db.Stats().EventsAccepted; n != 1 {
		t.Fatalf("%d events accepted, want 1", n)
	}
}

// TestSDKIdempotencyKeyInUse sends a second request with a key whose first
// request is still executing.
func TestSDKIdempotencyKeyInUse(t *testing.T) {
	e := newEnv(t, nil, nil)
	sc := e.client(testKey)
	createMeter(t, sc, "calls", "sum")
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	stripeapi.SetExecHook(e.h, func(r *http.Request) {
		if r.Header.Get("Idempotency-Key") == "slow" {
			once.Do(func() {
				close(entered)
				<-release
			})
		}
	})
	params := func() *stripe.BillingMeterEventCreateParams {
		p := &stripe.BillingMeterEventCreateParams{EventName: stripe.String("calls"),
			Payload: map[string]string{"stripe_customer_id": "cus_1", "value": "3"}}
		p.SetIdempotencyKey("slow")
		return p
	}
	done := make(chan error, 1)
	go func() {
		_, err := sc.V1BillingMeterEvents.Create(context.Background(), params())
		done <- err
	}()
	<-entered
	_, err := sc.V1BillingMeterEvents.Create(context.Background(), params())
	wantStripeErr(t, err, 409, stripe.ErrorTypeInvalidRequest, stripe.ErrorCodeIdempotencyKeyInUse, "")
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := sc.V1BillingMeterEvents.Create(context.Background(), params()); err != nil {
		t.Fatalf("after the first request completed: %v", err)
	}
	if n := e.db.Stats().EventsAccepted; n != 1 {
		t.Fatalf("%d events accepted, want 1", n)
	}
}
