package event

import (
	"fmt"
	"time"

	"github.com/meterdb/meterdb/meter"
)

// Limits on one event, as Stripe documents them.
const (
	MaxEventNameLength    = 100
	MaxIdentifierLength   = 100
	MaxPayloadValueLength = 100
	MaxPayloadKeyLength   = 100
	// MaxPayloadKeys bounds the number of payload entries of one event.
	MaxPayloadKeys = 50
	// MaxDigits is the most significant digits a value may have.
	MaxDigits = 15
	// MaxPast is how far in the past a timestamp may lie.
	MaxPast = 35 * 24 * time.Hour
	// MaxFuture is how far in the future a timestamp may lie (clock drift).
	MaxFuture = 5 * time.Minute
)

// Event is one usage report.
type Event struct {
	// Name selects the meter (its EventName).
	Name string
	// Payload holds the customer under the meter's customer key and the
	// value under its value key. Other entries are allowed and ignored.
	// meterdb does not retain the map.
	Payload map[string]string
	// Identifier is unique within the dedupe window; empty means the
	// database generates one.
	Identifier string
	// Timestamp is when the usage happened, kept to the second; zero means
	// the time of recording.
	Timestamp time.Time
}

// Usage is one usage report in typed form: what an Event's payload
// carries, without the map. Recording usage skips the payload walk and the
// map the caller would build per event.
type Usage struct {
	// Name selects the meter (its EventName).
	Name string
	// Customer is the customer the usage belongs to (what the payload
	// carries under the meter's customer key).
	Customer string
	// Value is the usage; count meters ignore it and count 1.
	Value int64
	// Identifier is unique within the dedupe window; empty means the
	// database generates one.
	Identifier string
	// Timestamp is when the usage happened, kept to the second; zero means
	// the time of recording.
	Timestamp time.Time
}

// Validated is what ingest keeps of an accepted event.
type Validated struct {
	Customer  string
	Value     int64 // 1 for count meters
	Timestamp int64 // unix seconds
}

// Validate checks ev against m at time now and returns the customer, the
// value and the timestamp to aggregate. A zero ev.Timestamp means now.
// m may be nil, which reports no_meter. The payload is read, not kept.
func Validate(ev *Event, m *meter.Meter, now time.Time) (Validated, error) {
	if err := CheckShape(ev); err != nil {
		return Validated{}, err
	}
	if err := checkMeter(ev.Name, m); err != nil {
		return Validated{}, err
	}
	var v Validated
	v.Customer = ev.Payload[m.CustomerKey]
	if v.Customer == "" {
		return Validated{}, &Error{Code: CodeNoCustomer, Param: "payload[" + m.CustomerKey + "]", Err: ErrNoCustomer,
			Message: fmt.Sprintf("Customer mapping key %s not found in payload.", m.CustomerKey)}
	}
	v.Value = 1
	if m.Formula != meter.Count {
		raw, ok := ev.Payload[m.ValueKey]
		if !ok || raw == "" {
			return Validated{}, &Error{Code: CodeNoValue, Param: "payload[" + m.ValueKey + "]", Err: ErrNoValue,
				Message: fmt.Sprintf("Value settings key %s not found in payload.", m.ValueKey)}
		}
		val, err := ParseValue(raw)
		if err != nil {
			err.Param = "payload[" + m.ValueKey + "]"
			return Validated{}, err
		}
		v.Value = val
	}
	ts, err := CheckTimestamp(ev.Timestamp, now)
	if err != nil {
		return Validated{}, err
	}
	v.Timestamp = ts
	return v, nil
}

// ValidateUsage checks u against m at time now, as Validate checks an
// Event: the same rules and error codes, with the customer and value taken
// from u instead of a payload (parameters are named after the payload keys
// they stand for). m may be nil, which reports no_meter.
func ValidateUsage(u *Usage, m *meter.Meter, now time.Time) (Validated, error) {
	switch {
	case u.Name == "":
		return Validated{}, &Error{Code: CodeParameterMissing, Param: "event_name", Err: ErrInvalid, Message: "Missing required param: event_name."}
	case len(u.Name) > MaxEventNameLength:
		return Validated{}, tooLong("event_name", MaxEventNameLength)
	case len(u.Identifier) > MaxIdentifierLength:
		return Validated{}, tooLong("identifier", MaxIdentifierLength)
	}
	if err := checkMeter(u.Name, m); err != nil {
		return Validated{}, err
	}
	switch {
	case u.Customer == "":
		return Validated{}, &Error{Code: CodeNoCustomer, Param: "payload[" + m.CustomerKey + "]", Err: ErrNoCustomer,
			Message: fmt.Sprintf("Customer mapping key %s not found in payload.", m.CustomerKey)}
	case len(u.Customer) > MaxPayloadValueLength:
		return Validated{}, tooLong("payload["+m.CustomerKey+"]", MaxPayloadValueLength)
	}
	v := Validated{Customer: u.Customer, Value: 1}
	if m.Formula != meter.Count {
		if u.Value > maxValue || u.Value < -maxValue {
			return Validated{}, &Error{Code: CodeTooManyDigits, Param: "payload[" + m.ValueKey + "]", Err: ErrTooManyDigits,
				Message: fmt.Sprintf("The value in the event payload can have at most %d digits. Received %d.", MaxDigits, u.Value)}
		}
		v.Value = u.Value
	}
	ts, err := CheckTimestamp(u.Timestamp, now)
	if err != nil {
		return Validated{}, err
	}
	v.Timestamp = ts
	return v, nil
}

// maxValue is the greatest value of MaxDigits digits.
const maxValue = 999_999_999_999_999

// checkMeter reports no_meter for a nil m and archived_meter for an
// inactive one.
func checkMeter(name string, m *meter.Meter) error {
	if m == nil {
		return &Error{Code: CodeNoMeter, Param: "event_name", Err: ErrNoMeter,
			Message: fmt.Sprintf("No active meter was found for event_name %q. A meter must exist to submit events.", name)}
	}
	if m.Status != meter.Active {
		return &Error{Code: CodeArchivedMeter, Param: "event_name", Err: ErrArchivedMeter,
			Message: fmt.Sprintf("The meter %s for event_name %q is inactive. The meter must be active to submit events.", m.ID, name)}
	}
	return nil
}

// CheckShape checks what does not depend on a meter: name, identifier and
// payload sizes.
func CheckShape(ev *Event) error {
	switch {
	case ev.Name == "":
		return &Error{Code: CodeParameterMissing, Param: "event_name", Err: ErrInvalid, Message: "Missing required param: event_name."}
	case len(ev.Name) > MaxEventNameLength:
		return tooLong("event_name", MaxEventNameLength)
	case len(ev.Identifier) > MaxIdentifierLength:
		return tooLong("identifier", MaxIdentifierLength)
	case len(ev.Payload) == 0:
		return &Error{Code: CodeParameterMissing, Param: "payload", Err: ErrInvalid, Message: "Missing required param: payload."}
	case len(ev.Payload) > MaxPayloadKeys:
		return &Error{Code: CodeParameterInvalid, Param: "payload", Err: ErrInvalid,
			Message: fmt.Sprintf("Invalid payload: at most %d keys are allowed.", MaxPayloadKeys)}
	}
	for k, v := range ev.Payload {
		if len(k) > MaxPayloadKeyLength {
			return &Error{Code: CodeStringTooLong, Param: "payload", Err: ErrInvalid,
				Message: fmt.Sprintf("Invalid payload: keys must be at most %d characters.", MaxPayloadKeyLength)}
		}
		if len(v) > MaxPayloadValueLength {
			return tooLong("payload["+k+"]", MaxPayloadValueLength)
		}
	}
	return nil
}

func tooLong(param string, max int) *Error {
	return &Error{Code: CodeStringTooLong, Param: param, Err: ErrInvalid,
		Message: fmt.Sprintf("Invalid %s: must be at most %d characters.", param, max)}
}

// CheckTimestamp returns ts in unix seconds (now when ts is zero) or an
// error when it lies more than MaxPast before now or MaxFuture after it.
func CheckTimestamp(ts, now time.Time) (int64, error) {
	if ts.IsZero() {
		return now.Unix(), nil
	}
	switch {
	case ts.Before(now.Add(-MaxPast)):
		return 0, &Error{Code: CodeTooFarInPast, Param: "timestamp", Err: ErrTooFarInPast,
			Message: "The timestamp must be within the past 35 days."}
	case ts.After(now.Add(MaxFuture)):
		return 0, &Error{Code: CodeInFuture, Param: "timestamp", Err: ErrInFuture,
			Message: "The timestamp must not be more than 5 minutes in the future."}
	}
	return ts.Unix(), nil
}

// ParseValue parses a whole decimal number: an optional sign followed by
// digits, at most MaxDigits of them after leading zeros. Decimals,
// exponents, spaces and empty strings are rejected.
func ParseValue(s string) (int64, *Error) {
	neg := false
	i := 0
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		neg, i = s[0] == '-', 1
	}
	if i == len(s) {
		return 0, invalidValue(s)
	}
	for i < len(s)-1 && s[i] == '0' {
		i++
	}
	if len(s)-i > MaxDigits {
		for _, c := range []byte(s[i:]) {
			if c < '0' || c > '9' {
				return 0, invalidValue(s)
			}
		}
		return 0, &Error{Code: CodeTooManyDigits, Err: ErrTooManyDigits,
			Message: fmt.Sprintf("The value in the event payload can have at most %d digits. Received %s.", MaxDigits, s)}
	}
	var v int64
	for _, c := range []byte(s[i:]) {
		if c < '0' || c > '9' {
			return 0, invalidValue(s)
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, nil
}

func invalidValue(s string) *Error {
	return &Error{Code: CodeInvalidValue, Err: ErrInvalidValue,
		Message: fmt.Sprintf("The value must be a whole number; got %q.", s)}
}
