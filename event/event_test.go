package event_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

var now = time.Date(2026, 3, 10, 10, 30, 0, 500_000_000, time.UTC)

func testMeter(f meter.Formula, customerKey, valueKey string) *meter.Meter {
	return &meter.Meter{ID: "mtr_test", EventName: "e", Formula: f, CustomerKey: customerKey, ValueKey: valueKey, Status: meter.Active}
}

func TestValidate(t *testing.T) {
	sum := testMeter(meter.Sum, "stripe_customer_id", "value")
	last := testMeter(meter.Last, "user", "tokens")
	count := testMeter(meter.Count, "stripe_customer_id", "value")
	off := testMeter(meter.Sum, "stripe_customer_id", "value")
	off.Status = meter.Inactive
	long := strings.Repeat("x", 101)
	max := strings.Repeat("x", 100)
	ev := func(kv ...string) event.Event {
		e := event.Event{Name: "e", Payload: map[string]string{}}
		for i := 0; i < len(kv); i += 2 {
			e.Payload[kv[i]] = kv[i+1]
		}
		return e
	}
	with := func(e event.Event, f func(*event.Event)) event.Event { f(&e); return e }
	manyKeys := func(n int) event.Event {
		e := ev("stripe_customer_id", "c", "value", "1")
		for i := len(e.Payload); i < n; i++ {
			e.Payload[fmt.Sprint("k", i)] = "x"
		}
		return e
	}
	for _, tt := range []struct {
		name     string
		m        *meter.Meter
		ev       event.Event
		sentinel error // nil: valid
		code     string
		param    string
		want     event.Validated
	}{
		{"valid sum", sum, ev("stripe_customer_id", "c", "value", "-42", "other", "x"), nil, "", "", event.Validated{Customer: "c", Value: -42, Timestamp: now.Unix()}},
		{"valid last, custom keys", last, ev("user", "u", "tokens", "+7"), nil, "", "", event.Validated{Customer: "u", Value: 7, Timestamp: now.Unix()}},
		{"count ignores the value", count, ev("stripe_customer_id", "c", "value", "bogus"), nil, "", "", event.Validated{Customer: "c", Value: 1, Timestamp: now.Unix()}},
		{"count needs no value", count, ev("stripe_customer_id", "c"), nil, "", "", event.Validated{Customer: "c", Value: 1, Timestamp: now.Unix()}},
		{"timestamp kept to the second", sum, with(ev("stripe_customer_id", "c", "value", "1"), func(e *event.Event) { e.Timestamp = now.Add(-time.Hour) }),
			nil, "", "", event.Validated{Customer: "c", Value: 1, Timestamp: now.Add(-time.Hour).Unix()}},
		{"oldest timestamp", sum, with(ev("stripe_customer_id", "c", "value", "1"), func(e *event.Event) { e.Timestamp = now.Add(-event.MaxPast) }),
			nil, "", "", event.Validated{Customer: "c", Value: 1, Timestamp: now.Add(-event.MaxPast).Unix()}},
		{"latest timestamp", sum, with(ev("stripe_customer_id", "c", "value", "1"), func(e *event.Event) { e.Timestamp = now.Add(event.MaxFuture) }),
			nil, "", "", event.Validated{Customer: "c", Value: 1, Timestamp: now.Add(event.MaxFuture).Unix()}},
		{"longest strings", sum, with(ev("stripe_customer_id", max, "value", "1", max, max), func(e *event.Event) { e.Name, e.Identifier = max, max }),
			nil, "", "", event.Validated{Customer: max, Value: 1, Timestamp: now.Unix()}},
		{"most payload keys", sum, manyKeys(event.MaxPayloadKeys), nil, "", "", event.Validated{Customer: "c", Value: 1, Timestamp: now.Unix()}},

		{"no meter", nil, ev("stripe_customer_id", "c", "value", "1"), event.ErrNoMeter, event.CodeNoMeter, "event_name", event.Validated{}},
		{"archived meter", off, ev("stripe_customer_id", "c", "value", "1"), event.ErrArchivedMeter, event.CodeArchivedMeter, "event_name", event.Validated{}},
		{"no customer", sum, ev("value", "1"), event.ErrNoCustomer, event.CodeNoCustomer, "payload[stripe_customer_id]", event.Validated{}},
		{"empty customer", sum, ev("stripe_customer_id", "", "value", "1"), event.ErrNoCustomer, event.CodeNoCustomer, "payload[stripe_customer_id]", event.Validated{}},
		{"customer under the wrong key", last, ev("stripe_customer_id", "c", "tokens", "1"), event.ErrNoCustomer, event.CodeNoCustomer, "payload[user]", event.Validated{}},
		{"no value", sum, ev("stripe_customer_id", "c"), event.ErrNoValue, event.CodeNoValue, "payload[value]", event.Validated{}},
		{"empty value", last, ev("user", "c", "tokens", ""), event.ErrNoValue, event.CodeNoValue, "payload[tokens]", event.Validated{}},
		{"invalid value", sum, ev("stripe_customer_id", "c", "value", "1.0"), event.ErrInvalidValue, event.CodeInvalidValue, "payload[value]", event.Validated{}},
		{"invalid value, custom key", last, ev("user", "c", "tokens", "ten"), event.ErrInvalidValue, event.CodeInvalidValue, "payload[tokens]", event.Validated{}},
		{"too many digits", sum, ev("stripe_customer_id", "c", "value", "-1234567890123456"), event.ErrTooManyDigits, event.CodeTooManyDigits, "payload[value]", event.Validated{}},
		{"too far in the past", sum, with(ev("stripe_customer_id", "c", "value", "1"), func(e *event.Event) { e.Timestamp = now.Add(-event.MaxPast - time.Nanosecond) }),
			event.ErrTooFarInPast, event.CodeTooFarInPast, "timestamp", event.Validated{}},
		{"in the future", sum, with(ev("stripe_customer_id", "c", "value", "1"), func(e *event.Event) { e.Timestamp = now.Add(event.MaxFuture + time.Nanosecond) }),
			event.ErrInFuture, event.CodeInFuture, "timestamp", event.Validated{}},
		{"no event name", sum, with(ev("stripe_customer_id", "c", "value", "1"), func(e *event.Event) { e.Name = "" }), event.ErrInvalid, event.CodeParameterMissing, "event_name", event.Validated{}},
		{"no event name, no meter", nil, with(ev("stripe_customer_id", "c"), func(e *event.Event) { e.Name = "" }), event.ErrInvalid, event.CodeParameterMissing, "event_name", event.Validated{}},
		{"event name too long", sum, with(ev("stripe_customer_id", "c", "value", "1"), func(e *event.Event) { e.Name = long }), event.ErrInvalid, event.CodeStringTooLong, "event_name", event.Validated{}},
		{"identifier too long", sum, with(ev("stripe_customer_id", "c", "value", "1"), func(e *event.Event) { e.Identifier = long }), event.ErrInvalid, event.CodeStringTooLong, "identifier", event.Validated{}},
		{"no payload", sum, with(ev(), func(e *event.Event) { e.Payload = nil }), event.ErrInvalid, event.CodeParameterMissing, "payload", event.Validated{}},
		{"empty payload", sum, ev(), event.ErrInvalid, event.CodeParameterMissing, "payload", event.Validated{}},
		{"too many payload keys", sum, manyKeys(event.MaxPayloadKeys + 1), event.ErrInvalid, event.CodeParameterInvalid, "payload", event.Validated{}},
		{"payload key too long", sum, ev("stripe_customer_id", "c", "value", "1", long, "x"), event.ErrInvalid, event.CodeStringTooLong, "payload", event.Validated{}},
		{"payload value too long", sum, ev("stripe_customer_id", "c", "value", "1", "note", long), event.ErrInvalid, event.CodeStringTooLong, "payload[note]", event.Validated{}},
		{"customer too long", sum, ev("stripe_customer_id", long, "value", "1"), event.ErrInvalid, event.CodeStringTooLong, "payload[stripe_customer_id]", event.Validated{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := tt.ev
			payload := fmt.Sprint(e.Payload)
			got, err := event.Validate(&e, tt.m, now)
			if fmt.Sprint(e.Payload) != payload || e.Name != tt.ev.Name || e.Identifier != tt.ev.Identifier || !e.Timestamp.Equal(tt.ev.Timestamp) {
				t.Errorf("Validate changed the event: %+v", e)
			}
			if tt.sentinel == nil {
				if err != nil || got != tt.want {
					t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
				}
				return
			}
			var ee *event.Error
			if !errors.As(err, &ee) || !errors.Is(err, tt.sentinel) || ee.Code != tt.code || ee.Param != tt.param {
				t.Fatalf("got %#v (%v); want code %s param %q unwrapping to %v", ee, err, tt.code, tt.param, tt.sentinel)
			}
			if got != (event.Validated{}) {
				t.Errorf("rejected event gave %+v", got)
			}
			if msg := err.Error(); msg == "" || strings.HasPrefix(msg, "{") || !strings.HasSuffix(msg, ".") {
				t.Errorf("message %q is not a sentence", msg)
			}
		})
	}
}

func TestParseValue(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		code string
	}{
		{"0", 0, ""}, {"-0", 0, ""}, {"+0", 0, ""}, {"1", 1, ""}, {"-1", -1, ""}, {"+17", 17, ""},
		{"007", 7, ""}, {"-007", -7, ""}, {"999999999999999", 999999999999999, ""}, {"-999999999999999", -999999999999999, ""},
		{"100000000000000", 100000000000000, ""}, {"0000000000000000000000000000000000000001", 1, ""},
		{"-000000000000000999999999999999", -999999999999999, ""}, {"0000000000000000000", 0, ""},

		{"1000000000000000", 0, event.CodeTooManyDigits}, {"-1000000000000000", 0, event.CodeTooManyDigits},
		{"+9999999999999999", 0, event.CodeTooManyDigits}, {"99999999999999999999999", 0, event.CodeTooManyDigits},
		{"00001000000000000000", 0, event.CodeTooManyDigits},

		{"", 0, event.CodeInvalidValue}, {"-", 0, event.CodeInvalidValue}, {"+", 0, event.CodeInvalidValue},
		{"1.5", 0, event.CodeInvalidValue}, {"1.0", 0, event.CodeInvalidValue}, {".5", 0, event.CodeInvalidValue},
		{"1e3", 0, event.CodeInvalidValue}, {" 1", 0, event.CodeInvalidValue}, {"1 ", 0, event.CodeInvalidValue},
		{"--1", 0, event.CodeInvalidValue}, {"+-1", 0, event.CodeInvalidValue}, {"1-", 0, event.CodeInvalidValue},
		{"0x10", 0, event.CodeInvalidValue}, {"1_000", 0, event.CodeInvalidValue}, {"١", 0, event.CodeInvalidValue},
		{"abc", 0, event.CodeInvalidValue}, {"12345678901234567.5", 0, event.CodeInvalidValue}, {"00x", 0, event.CodeInvalidValue},
		{"NaN", 0, event.CodeInvalidValue}, {"∞", 0, event.CodeInvalidValue},
	} {
		v, err := event.ParseValue(tt.in)
		switch {
		case tt.code == "" && (err != nil || v != tt.want):
			t.Errorf("ParseValue(%q) = %d, %v; want %d", tt.in, v, err, tt.want)
		case tt.code != "" && (err == nil || err.Code != tt.code):
			t.Errorf("ParseValue(%q) = %d, %v; want code %s", tt.in, v, err, tt.code)
		case tt.code == event.CodeInvalidValue && !errors.Is(err, event.ErrInvalidValue),
			tt.code == event.CodeTooManyDigits && !errors.Is(err, event.ErrTooManyDigits):
			t.Errorf("ParseValue(%q): %v does not unwrap to its sentinel", tt.in, err)
		}
	}
}

// ParseValue accepts exactly what strconv.ParseInt accepts within 15
// digits: checked over every short string of sign, digit and junk bytes.
func TestParseValueExhaustive(t *testing.T) {
	alphabet := []byte("+-0123456789 .e")
	var rec func(prefix []byte)
	rec = func(prefix []byte) {
		s := string(prefix)
		v, err := event.ParseValue(s)
		want, perr := parseReference(s)
		if (err == nil) != (perr == nil) || err == nil && v != want {
			t.Fatalf("ParseValue(%q) = %d, %v; reference %d, %v", s, v, err, want, perr)
		}
		if len(prefix) == 4 {
			return
		}
		for _, c := range alphabet {
			rec(append(prefix, c))
		}
	}
	rec(nil)
}

func parseReference(s string) (int64, error) {
	digits := strings.TrimLeft(s, "+-")
	if len(s)-len(digits) > 1 || digits == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, errors.New("invalid")
	}
	if len(strings.TrimLeft(digits, "0")) > event.MaxDigits {
		return 0, errors.New("too many digits")
	}
	return strconv.ParseInt(s, 10, 64)
}

func TestCheckTimestamp(t *testing.T) {
	for _, tt := range []struct {
		ts   time.Time
		want int64
		code string
	}{
		{time.Time{}, now.Unix(), ""},
		{now, now.Unix(), ""},
		{now.Add(-event.MaxPast), now.Add(-event.MaxPast).Unix(), ""},
		{now.Add(event.MaxFuture), now.Add(event.MaxFuture).Unix(), ""},
		{now.Add(-event.MaxPast - time.Nanosecond), 0, event.CodeTooFarInPast},
		{now.Add(event.MaxFuture + time.Nanosecond), 0, event.CodeInFuture},
		{now.Add(-36 * 24 * time.Hour), 0, event.CodeTooFarInPast},
		{now.Add(-event.MaxPast).In(time.FixedZone("X", 7*3600)), now.Add(-event.MaxPast).Unix(), ""},
	} {
		got, err := event.CheckTimestamp(tt.ts, now)
		var ee *event.Error
		errors.As(err, &ee)
		switch {
		case tt.code == "" && (err != nil || got != tt.want):
			t.Errorf("CheckTimestamp(%v) = %d, %v; want %d", tt.ts, got, err, tt.want)
		case tt.code != "" && (ee == nil || ee.Code != tt.code || ee.Param != "timestamp"):
			t.Errorf("CheckTimestamp(%v) = %d, %v; want code %s", tt.ts, got, err, tt.code)
		}
	}
	if event.MaxPast != 35*24*time.Hour || event.MaxFuture != 5*time.Minute {
		t.Errorf("limits %v, %v", event.MaxPast, event.MaxFuture)
	}
}

func ExampleParseValue() {
	for _, s := range []string{"42", "-7", "+0005", "1.5", "1234567890123456"} {
		v, err := event.ParseValue(s)
		if err != nil {
			fmt.Printf("%s: %s\n", s, err.Code)
			continue
		}
		fmt.Printf("%s: %d\n", s, v)
	}
	// Output:
	// 42: 42
	// -7: -7
	// +0005: 5
	// 1.5: payload_invalid_value
	// 1234567890123456: meter_event_value_too_many_digits
}

func ExampleValidate() {
	m := &meter.Meter{ID: "mtr_1", EventName: "tokens", Formula: meter.Sum,
		CustomerKey: "stripe_customer_id", ValueKey: "value", Status: meter.Active}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	v, err := event.Validate(&event.Event{Name: "tokens", Payload: map[string]string{"stripe_customer_id": "cus_1", "value": "12"}}, m, now)
	fmt.Println(v.Customer, v.Value, time.Unix(v.Timestamp, 0).UTC().Format(time.RFC3339), err)
	_, err = event.Validate(&event.Event{Name: "tokens", Payload: map[string]string{"value": "12"}}, m, now)
	var ee *event.Error
	if errors.As(err, &ee) {
		fmt.Println(ee.Code, ee.Param)
	}
	// Output:
	// cus_1 12 2026-03-01T12:00:00Z <nil>
	// payload_no_customer_defined payload[stripe_customer_id]
}
