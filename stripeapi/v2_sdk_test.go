package stripeapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/stripeapi"
	"github.com/stripe/stripe-go/v85"
)

// These tests drive the v2 endpoints through the real stripe-go client.

func wantV2Err(t *testing.T, err error, status int, typ, code string) *stripe.V2RawError {
	t.Helper()
	var ve *stripe.V2RawError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *stripe.V2RawError", err, err)
	}
	gotType := ""
	if ve.Type != nil {
		gotType = string(*ve.Type)
	}
	if ve.HTTPStatusCode != status || gotType != typ || ve.Code != code {
		t.Fatalf("got status %d type %q code %q (%s); want %d %q %q", ve.HTTPStatusCode, gotType, ve.Code, ve.Message, status, typ, code)
	}
	if !strings.HasPrefix(ve.RequestID, "req_") || ve.Message == "" {
		t.Errorf("request id %q, message %q", ve.RequestID, ve.Message)
	}
	return ve
}

// summaryTotal returns the total of customer on meter m over the last day.
func summaryTotal(t *testing.T, db *meterdb.DB, meterID, customer string) (int64, int64) {
	t.Helper()
	now := db.Now().UTC().Truncate(time.Hour)
	s, err := db.Summaries(context.Background(), meterdb.SummaryParams{Meter: meterID, Customer: customer,
		Start: now.Add(-36 * 24 * time.Hour), End: now.Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := s[0].Value.Int64()
	return v, s[0].Count
}

func TestSDKV2MeterEvents(t *testing.T) {
	e := newEnv(t, nil, nil)
	sc := e.client(testKey)
	ctx := context.Background()
	m := createMeter(t, sc, "api_call", "sum")
	createMeter(t, sc, "seats", "last")
	off := createMeter(t, sc, "old", "sum")
	if _, err := sc.V1BillingMeters.Deactivate(ctx, off.ID, nil); err != nil {
		t.Fatal(err)
	}

	ts := t0.Add(-time.Hour).Add(123456789 * time.Nanosecond)
	ev, err := sc.V2BillingMeterEvents.Create(ctx, &stripe.V2BillingMeterEventCreateParams{
		EventName:  stripe.String("api_call"),
		Identifier: stripe.String("idmp_1"),
		Payload:    map[string]string{"stripe_customer_id": "cus_a", "value": "25"},
		Timestamp:  &ts,
	})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Object != "v2.billing.meter_event" || ev.EventName != "api_call" || ev.Identifier != "idmp_1" || ev.Livemode ||
		!ev.Timestamp.Equal(ts.Truncate(time.Second)) || !ev.Created.Equal(t0) || ev.Payload["value"] != "25" {
		t.Fatalf("event %+v", ev)
	}
	if raw := string(ev.LastResponse.RawJSON); !strings.Contains(raw, `"timestamp": "2026-03-01T11:30:00.000Z"`) {
		t.Errorf("timestamp not RFC 3339 with milliseconds:\n%s", raw)
	}
	// Without identifier nor timestamp: derived from the Idempotency-Key
	// stripe-go sends, and now.
	ev2, err := sc.V2BillingMeterEvents.Create(ctx, &stripe.V2BillingMeterEventCreateParams{
		EventName: stripe.String("api_call"), Payload: map[string]string{"stripe_customer_id": "cus_a", "value": "-5"}})
	if err != nil || !strings.HasPrefix(ev2.Identifier, "mev_") || !ev2.Timestamp.Equal(t0) {
		t.Fatalf("%+v, %v", ev2, err)
	}
	if v, n := summaryTotal(t, e.db, m.ID, "cus_a"); v != 20 || n != 2 {
		t.Fatalf("total %d over %d events", v, n)
	}

	for _, tt := range []struct {
		name string
		p    *stripe.V2BillingMeterEventCreateParams
		code string
	}{
		{"no meter", &stripe.V2BillingMeterEventCreateParams{EventName: stripe.String("nope"),
			Payload: map[string]string{"stripe_customer_id": "c", "value": "1"}}, "no_meter"},
		{"archived", &stripe.V2BillingMeterEventCreateParams{EventName: stripe.String("old"),
			Payload: map[string]string{"stripe_customer_id": "c", "value": "1"}}, "archived_meter"},
		{"duplicate", &stripe.V2BillingMeterEventCreateParams{EventName: stripe.String("api_call"), Identifier: stripe.String("idmp_1"),
			Payload: map[string]string{"stripe_customer_id": "c", "value": "1"}}, "duplicate_meter_event"},
		{"no customer", &stripe.V2BillingMeterEventCreateParams{EventName: stripe.String("api_call"),
			Payload: map[string]string{"value": "1"}}, "payload_no_customer_defined"},
		{"no value", &stripe.V2BillingMeterEventCreateParams{EventName: stripe.String("seats"),
			Payload: map[string]string{"stripe_customer_id": "c"}}, "payload_no_value_defined"},
		{"invalid value", &stripe.V2BillingMeterEventCreateParams{EventName: stripe.String("api_call"),
			Payload: map[string]string{"stripe_customer_id": "c", "value": "1.5"}}, "payload_invalid_value"},
		{"too many digits", &stripe.V2BillingMeterEventCreateParams{EventName: stripe.String("api_call"),
			Payload: map[string]string{"stripe_customer_id": "c", "value": "1234567890123456"}}, "meter_event_value_too_many_digits"},
		{"too far in the past", &stripe.V2BillingMeterEventCreateParams{EventName: stripe.String("api_call"),
			Payload: map[string]string{"stripe_customer_id": "c", "value": "1"}, Timestamp: stripe.Time(t0.Add(-36 * 24 * time.Hour))},
			"timestamp_too_far_in_past"},
		{"in the future", &stripe.V2BillingMeterEventCreateParams{EventName: stripe.String("api_call"),
			Payload: map[string]string{"stripe_customer_id": "c", "value": "1"}, Timestamp: stripe.Time(t0.Add(6 * time.Minute))},
			"timestamp_in_future"},
		{"null event name", &stripe.V2BillingMeterEventCreateParams{Payload: map[string]string{"stripe_customer_id": "c"}}, "parameter_missing"},
		{"null payload", &stripe.V2BillingMeterEventCreateParams{EventName: stripe.String("api_call")}, "parameter_missing"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sc.V2BillingMeterEvents.Create(ctx, tt.p)
			wantV2Err(t, err, 400, "invalid_request_error", tt.code)
		})
	}
	if v, n := summaryTotal(t, e.db, m.ID, "c"); v != 0 || n != 0 {
		t.Fatalf("rejected events counted: %d over %d", v, n)
	}
}

func TestSDKV2Adjustments(t *testing.T) {
	e := newEnv(t, nil, nil)
	sc := e.client(testKey)
	ctx := context.Background()
	m := createMeter(t, sc, "api_call", "sum")
	for i, v := range []string{"10", "20"} {
		if _, err := sc.V2BillingMeterEvents.Create(ctx, &stripe.V2BillingMeterEventCreateParams{EventName: stripe.String("api_call"),
			Identifier: stripe.String(fmt.Sprint("ev", i)), Payload: map[string]string{"stripe_customer_id": "cus_a", "value": v}}); err != nil {
			t.Fatal(err)
		}
	}
	adj, err := sc.V2BillingMeterEventAdjustments.Create(ctx, &stripe.V2BillingMeterEventAdjustmentCreateParams{
		EventName: stripe.String("api_call"), Type: stripe.String("cancel"),
		Cancel: &stripe.V2BillingMeterEventAdjustmentCreateCancelParams{Identifier: stripe.String("ev1")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(adj.ID, "mtr_event_adj_") || adj.Object != "v2.billing.meter_event_adjustment" || adj.Status != "complete" ||
		adj.Type != "cancel" || adj.Cancel == nil || adj.Cancel.Identifier != "ev1" || adj.EventName != "api_call" || !adj.Created.Equal(t0) {
		t.Fatalf("adjustment %+v", adj)
	}
	if v, _ := summaryTotal(t, e.db, m.ID, "cus_a"); v != 10 {
		t.Fatalf("total %d after cancelling 20", v)
	}
	for _, tt := range []struct {
		name string
		p    *stripe.V2BillingMeterEventAdjustmentCreateParams
		code string
	}{
		{"no cancel", &stripe.V2BillingMeterEventAdjustmentCreateParams{EventName: stripe.String("api_call"), Type: stripe.String("cancel")},
			"invalid_cancel_configuration"},
		{"no identifier", &stripe.V2BillingMeterEventAdjustmentCreateParams{EventName: stripe.String("api_call"), Type: stripe.String("cancel"),
			Cancel: &stripe.V2BillingMeterEventAdjustmentCreateCancelParams{}}, "invalid_cancel_configuration"},
		{"other type", &stripe.V2BillingMeterEventAdjustmentCreateParams{EventName: stripe.String("api_call"), Type: stripe.String("time_range"),
			Cancel: &stripe.V2BillingMeterEventAdjustmentCreateCancelParams{Identifier: stripe.String("ev0")}}, "invalid_cancel_configuration"},
		{"no type", &stripe.V2BillingMeterEventAdjustmentCreateParams{EventName: stripe.String("api_call"),
			Cancel: &stripe.V2BillingMeterEventAdjustmentCreateCancelParams{Identifier: stripe.String("ev0")}}, "parameter_missing"},
		{"already cancelled", &stripe.V2BillingMeterEventAdjustmentCreateParams{EventName: stripe.String("api_call"), Type: stripe.String("cancel"),
			Cancel: &stripe.V2BillingMeterEventAdjustmentCreateCancelParams{Identifier: stripe.String("ev1")}}, "meter_event_already_cancelled"},
		{"unknown", &stripe.V2BillingMeterEventAdjustmentCreateParams{EventName: stripe.String("api_call"), Type: stripe.String("cancel"),
			Cancel: &stripe.V2BillingMeterEventAdjustmentCreateCancelParams{Identifier: stripe.String("nope")}}, "meter_event_not_found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sc.V2BillingMeterEventAdjustments.Create(ctx, tt.p)
			wantV2Err(t, err, 400, "invalid_request_error", tt.code)
		})
	}
}

// streamClient creates a meter event session with sc and returns a client
// keyed by its token, on the same server.
func (e *env) streamClient(t *testing.T, sc *stripe.Client) (*stripe.Client, *stripe.V2BillingMeterEventSession) {
	t.Helper()
	sess, err := sc.V2BillingMeterEventSessions.Create(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return e.client(sess.AuthenticationToken), sess
}

func streamEvent(name, id, customer, value string) *stripe.V2BillingMeterEventStreamCreateEventParams {
	p := &stripe.V2BillingMeterEventStreamCreateEventParams{EventName: stripe.String(name),
		Payload: map[string]string{"stripe_customer_id": customer, "value": value}}
	if id != "" {
		p.Identifier = stripe.String(id)
	}
	return p
}

func TestSDKV2SessionAndStream(t *testing.T) {
	e := newEnv(t, nil, nil)
	sc := e.client(testKey)
	ctx := context.Background()
	m := createMeter(t, sc, "api_call", "sum")

	stream, sess := e.streamClient(t, sc)
	if sess.Object != "v2.billing.meter_event_session" || !strings.HasPrefix(sess.ID, "mes_") || sess.AuthenticationToken == "" ||
		!sess.Created.Equal(t0) || !sess.ExpiresAt.Equal(t0.Add(15*time.Minute)) || sess.Livemode {
		t.Fatalf("session %+v", sess)
	}
	var evs []*stripe.V2BillingMeterEventStreamCreateEventParams
	for i := range 100 {
		evs = append(evs, streamEvent("api_call", fmt.Sprint("s", i), fmt.Sprint("cus_", i%3), "2"))
	}
	ts := t0.Add(-2 * time.Hour).Add(999 * time.Millisecond)
	evs[0].Timestamp = &ts
	evs[1].Identifier = nil // derived from the Idempotency-Key
	if err := stream.V2BillingMeterEventStreams.Create(ctx, &stripe.V2BillingMeterEventStreamCreateParams{Events: evs}); err != nil {
		t.Fatal(err)
	}
	var total int64
	for c := range 3 {
		v, _ := summaryTotal(t, e.db, m.ID, fmt.Sprint("cus_", c))
		total += v
	}
	if total != 200 {
		t.Fatalf("stream recorded %d, want 200", total)
	}

	// The API key does not open the stream, nor the token the API.
	err := sc.V2BillingMeterEventStreams.Create(ctx, &stripe.V2BillingMeterEventStreamCreateParams{Events: evs[:1]})
	wantV2Err(t, err, 401, "invalid_request_error", "")
	_, err = stream.V2BillingMeterEvents.Create(ctx, &stripe.V2BillingMeterEventCreateParams{EventName: stripe.String("api_call"),
		Payload: map[string]string{"stripe_customer_id": "c", "value": "1"}})
	wantV2Err(t, err, 401, "invalid_request_error", "")
	err = e.client("mets_bogus").V2BillingMeterEventStreams.Create(ctx, &stripe.V2BillingMeterEventStreamCreateParams{Events: evs[:1]})
	wantV2Err(t, err, 401, "invalid_request_error", "")

	// Shape errors reject the whole request.
	for _, tt := range []struct {
		name string
		evs  []*stripe.V2BillingMeterEventStreamCreateEventParams
		code string
	}{
		{"no events", nil, "parameter_missing"},
		{"empty", []*stripe.V2BillingMeterEventStreamCreateEventParams{}, "parameter_invalid"},
		{"101 events", append(append([]*stripe.V2BillingMeterEventStreamCreateEventParams{}, evs...), streamEvent("api_call", "x", "c", "1")),
			"parameter_invalid"},
		{"no event name", []*stripe.V2BillingMeterEventStreamCreateEventParams{streamEvent("api_call", "y", "c", "1"),
			{Payload: map[string]string{"stripe_customer_id": "c"}}}, "parameter_missing"},
		{"no payload", []*stripe.V2BillingMeterEventStreamCreateEventParams{{EventName: stripe.String("api_call")}}, "parameter_missing"},
		{"long identifier", []*stripe.V2BillingMeterEventStreamCreateEventParams{streamEvent("api_call", strings.Repeat("x", 101), "c", "1")},
			"string_too_long"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := stream.V2BillingMeterEventStreams.Create(ctx, &stripe.V2BillingMeterEventStreamCreateParams{Events: tt.evs})
			wantV2Err(t, err, 400, "invalid_request_error", tt.code)
		})
	}
	if v, n := summaryTotal(t, e.db, m.ID, "c"); v != 0 || n != 0 {
		t.Fatalf("rejected request counted: %d over %d", v, n)
	}

	// Expiry, by the injected clock.
	e.clk.Advance(15*time.Minute - time.Second)
	if err := stream.V2BillingMeterEventStreams.Create(ctx, &stripe.V2BillingMeterEventStreamCreateParams{Events: evs[2:3]}); err != nil {
		t.Fatalf("just before expiry: %v", err)
	}
	e.clk.Advance(time.Second)
	err = stream.V2BillingMeterEventStreams.Create(ctx, &stripe.V2BillingMeterEventStreamCreateParams{Events: evs[2:3]})
	var exp *stripe.TemporarySessionExpiredError
	if !errors.As(err, &exp) || exp.Code != "billing_meter_event_session_expired" || exp.LastResponse.StatusCode != http.StatusUnauthorized ||
		exp.Type != "temporary_session_expired" || exp.Message == "" || exp.DocURL == nil {
		t.Fatalf("after expiry: %v (%T)", err, err)
	}
	// A new session works.
	stream2, _ := e.streamClient(t, sc)
	if err := stream2.V2BillingMeterEventStreams.Create(ctx, &stripe.V2BillingMeterEventStreamCreateParams{
		Events: evs[2:3]}); err != nil {
		t.Fatal(err)
	}
}

func TestSDKV2StreamErrorReports(t *testing.T) {
	e := newEnv(t, nil, nil)
	sc := e.client(testKey)
	ctx := context.Background()
	m := createMeter(t, sc, "api_call", "sum")
	off := createMeter(t, sc, "old", "sum")
	if _, err := sc.V1BillingMeters.Deactivate(ctx, off.ID, nil); err != nil {
		t.Fatal(err)
	}
	stream, _ := e.streamClient(t, sc)

	future := t0.Add(time.Hour)
	evs := []*stripe.V2BillingMeterEventStreamCreateEventParams{
		streamEvent("api_call", "ok1", "cus_a", "5"),
		streamEvent("api_call", "bad_value", "cus_a", "five"),
		streamEvent("nope", "unknown_1", "cus_a", "1"),
		{EventName: stripe.String("api_call"), Identifier: stripe.String("no_customer"), Payload: map[string]string{"value": "1"}},
		streamEvent("old", "archived", "cus_a", "1"),
		{EventName: stripe.String("api_call"), Identifier: stripe.String("future"), Timestamp: &future,
			Payload: map[string]string{"stripe_customer_id": "cus_a", "value": "1"}},
		streamEvent("api_call", "ok1", "cus_a", "5"), // a duplicate
		streamEvent("nope", "unknown_2", "cus_a", "1"),
		streamEvent("api_call", "ok2", "cus_a", "7"),
	}
	p := &stripe.V2BillingMeterEventStreamCreateParams{Events: evs}
	p.SetIdempotencyKey("stream-key-1")
	if err := stream.V2BillingMeterEventStreams.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	if v, n := summaryTotal(t, e.db, m.ID, "cus_a"); v != 12 || n != 2 {
		t.Fatalf("valid events: %d over %d, want 12 over 2", v, n)
	}
	// A retry with the same key replays: no second report.
	if err := stream.V2BillingMeterEventStreams.Create(ctx, p); err != nil {
		t.Fatal(err)
	}

	// Through the library.
	reports, more, err := stripeapi.ListErrorReports(ctx, e.db, stripeapi.ErrorReportListParams{})
	if err != nil || more || len(reports) != 3 {
		t.Fatalf("%d reports, more %v, %v", len(reports), more, err)
	}
	byType := map[string]stripeapi.ErrorReport{}
	for _, r := range reports {
		byType[r.Type+"/"+r.Meter] = r
		if r.IdempotencyKey != "stream-key-1" || !strings.HasPrefix(r.RequestID, "req_") || !r.Created.Equal(t0) {
			t.Errorf("report %+v", r)
		}
	}
	nm := byType[stripeapi.EventNoMeterFound+"/"]
	if nm.ErrorCount != 2 || len(nm.ErrorTypes) != 1 || nm.ErrorTypes[0].Code != "no_meter" ||
		nm.ErrorTypes[0].SampleErrors[1].Identifier != "unknown_2" {
		t.Errorf("no meter report %+v", nm)
	}
	arch := byType[stripeapi.EventErrorReportTriggered+"/"+off.ID]
	if arch.ErrorCount != 1 || arch.ErrorTypes[0].Code != "archived_meter" {
		t.Errorf("archived report %+v", arch)
	}
	main := byType[stripeapi.EventErrorReportTriggered+"/"+m.ID]
	var codes []string
	for _, et := range main.ErrorTypes {
		codes = append(codes, fmt.Sprintf("%s:%d:%s", et.Code, et.ErrorCount, et.SampleErrors[0].Identifier))
	}
	if got := strings.Join(codes, " "); main.ErrorCount != 4 || got !=
		"meter_event_invalid_value:1:bad_value meter_event_no_customer_defined:1:no_customer timestamp_in_future:1:future duplicate_meter_event:1:ok1" {
		t.Errorf("report of %s: %d errors: %s", m.ID, main.ErrorCount, got)
	}
	if msg := main.ErrorTypes[1].SampleErrors[0].Message; msg != "Customer mapping key stripe_customer_id not found in payload." {
		t.Errorf("message %q", msg)
	}

	// Through stripe-go: v2 thin events.
	var got []stripe.V2CoreEvent
	for ev, err := range sc.V2CoreEvents.List(ctx, &stripe.V2CoreEventListParams{Limit: stripe.Int64(1)}).All(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
	}
	if len(got) != 3 {
		t.Fatalf("listed %d events", len(got))
	}
	var trig *stripe.V1BillingMeterErrorReportTriggeredEvent
	for _, ev := range got {
		switch ev := ev.(type) {
		case *stripe.V1BillingMeterErrorReportTriggeredEvent:
			if ev.RelatedObject.ID == m.ID {
				trig = ev
			}
		case *stripe.V1BillingMeterNoMeterFoundEvent:
			if ev.Data.Reason.ErrorCount != 2 || ev.Data.Reason.ErrorTypes[0].Code != "no_meter" {
				t.Errorf("no meter event %+v", ev.Data.Reason)
			}
		default:
			t.Errorf("event of type %T", ev)
		}
	}
	if trig == nil || trig.RelatedObject.Type != "billing.meter" || trig.RelatedObject.URL != "/v1/billing/meters/"+m.ID ||
		trig.Data.Reason.ErrorCount != 4 || len(trig.Data.Reason.ErrorTypes) != 4 ||
		trig.Data.Reason.ErrorTypes[0].SampleErrors[0].Request.Identifier != "bad_value" ||
		!trig.Data.ValidationStart.Equal(t0) || trig.Type != stripeapi.EventErrorReportTriggered || trig.Object != "v2.core.event" ||
		trig.Reason == nil || trig.Reason.Request.IdempotencyKey != "stream-key-1" {
		t.Fatalf("error report event %+v", trig)
	}
	related, err := trig.FetchRelatedObject(ctx)
	if err != nil || related.ID != m.ID {
		t.Fatalf("related object %+v, %v", related, err)
	}
	one, err := sc.V2CoreEvents.Retrieve(ctx, trig.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := one.(*stripe.V1BillingMeterErrorReportTriggeredEvent); !ok || r.ID != trig.ID {
		t.Fatalf("retrieved %+v", one)
	}
	_, err = sc.V2CoreEvents.Retrieve(ctx, "evt_nope", nil)
	wantV2Err(t, err, 404, "invalid_request_error", "not_found")

	// Filters.
	n := 0
	for ev, err := range sc.V2CoreEvents.List(ctx, &stripe.V2CoreEventListParams{ObjectID: stripe.String(off.ID)}).All(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.(*stripe.V1BillingMeterErrorReportTriggeredEvent).RelatedObject.ID != off.ID {
			t.Errorf("object_id filter let %+v through", ev)
		}
		n++
	}
	if n != 1 {
		t.Errorf("object_id filter: %d events", n)
	}
	n = 0
	for _, err := range sc.V2CoreEvents.List(ctx, &stripe.V2CoreEventListParams{Types: []*string{stripe.String(stripeapi.EventNoMeterFound)}}).All(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("types filter: %d events", n)
	}

	// Newer reports come first.
	e.clk.Advance(time.Second)
	if err := stream.V2BillingMeterEventStreams.Create(ctx, &stripe.V2BillingMeterEventStreamCreateParams{
		Events: []*stripe.V2BillingMeterEventStreamCreateEventParams{streamEvent("nope", "later", "c", "1")}}); err != nil {
		t.Fatal(err)
	}
	reports, _, err = stripeapi.ListErrorReports(ctx, e.db, stripeapi.ErrorReportListParams{Limit: 2})
	if err != nil || len(reports) != 2 || reports[0].ErrorTypes[0].SampleErrors[0].Identifier != "later" {
		t.Fatalf("newest first: %+v, %v", reports, err)
	}
	page2, _, err := stripeapi.ListErrorReports(ctx, e.db, stripeapi.ErrorReportListParams{After: reports[1].ID, Limit: 10})
	if err != nil || len(page2) != 2 {
		t.Fatalf("second page: %d, %v", len(page2), err)
	}
}
