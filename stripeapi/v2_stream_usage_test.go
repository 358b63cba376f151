package stripeapi

import (
	"context"
	"testing"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/stripeapi/internal/jsonw"
)

// TestStreamUsages checks which stream requests take the typed path: those
// whose every event has an active meter, its customer and a valid value
// (none for a count meter); any other request takes the map path, whose
// validation names each problem. It decides the same with the meters read
// ahead by streamMeters as with its own reads.
func TestStreamUsages(t *testing.T) {
	ctx := context.Background()
	db, err := meterdb.Open("", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, p := range []meter.Params{
		{DisplayName: "s", EventName: "sum", Formula: meter.Sum, CustomerKey: "cust", ValueKey: "n"},
		{DisplayName: "c", EventName: "count", Formula: meter.Count},
		{DisplayName: "o", EventName: "old", Formula: meter.Sum},
	} {
		m, err := db.CreateMeter(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if p.EventName == "old" {
			if _, err := db.DeactivateMeter(ctx, m.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	hh, err := NewHandler(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := hh.(*handler)
	sum := event.Event{Name: "sum", Identifier: "a", Payload: map[string]string{"cust": "cus_1", "n": "-42"}}
	count := event.Event{Name: "count", Payload: map[string]string{"stripe_customer_id": "cus_2"}}
	for _, tc := range []struct {
		name  string
		evs   []event.Event
		typed bool
	}{
		{"valid", []event.Event{sum, count, sum}, true},
		{"unknown meter", []event.Event{sum, {Name: "nope", Payload: sum.Payload}}, false},
		{"inactive meter", []event.Event{{Name: "old", Payload: map[string]string{"stripe_customer_id": "c", "value": "1"}}}, false},
		{"no customer", []event.Event{{Name: "sum", Payload: map[string]string{"n": "1"}}}, false},
		{"no value", []event.Event{{Name: "sum", Payload: map[string]string{"cust": "c"}}}, false},
		{"empty value", []event.Event{{Name: "sum", Payload: map[string]string{"cust": "c", "n": ""}}}, false},
		{"decimal value", []event.Event{{Name: "sum", Payload: map[string]string{"cust": "c", "n": "1.5"}}}, false},
		{"too many digits", []event.Event{{Name: "sum", Payload: map[string]string{"cust": "c", "n": "1234567890123456"}}}, false},
	} {
		for _, ahead := range []bool{false, true} {
			sb := jsonw.GetBatch()
			sb.Events = append(sb.Events, tc.evs...)
			var meters map[string]meter.Meter
			if ahead {
				if meters = h.streamMeters(ctx, sb); meters == nil {
					t.Fatalf("%s: the meters could not be read", tc.name)
				}
			}
			us := h.streamUsages(ctx, sb, meters)
			if (us != nil) != tc.typed {
				t.Errorf("%s (meters read ahead: %v): typed %v, want %v", tc.name, ahead, us != nil, tc.typed)
			}
			if tc.typed {
				want := []event.Usage{{Name: "sum", Customer: "cus_1", Value: -42, Identifier: "a"}, {Name: "count", Customer: "cus_2"},
					{Name: "sum", Customer: "cus_1", Value: -42, Identifier: "a"}}
				for i := range want {
					if us[i] != want[i] {
						t.Errorf("%s (meters read ahead: %v): usage %d is %+v, want %+v", tc.name, ahead, i, us[i], want[i])
					}
				}
			}
			sb.Release()
		}
	}
}
