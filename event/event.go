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
	if m == nil {
		return Validated{}, &Error{Code: CodeNoMeter, Param: "event_name", Err: ErrNoMeter,
			Message: fmt.Sprintf("No active meter was found for event_name %q. A meter must exist to submit events.", ev.Name)}
	}
	if m.Status != meter.Active {
		return Validated{}, &Error{Code: CodeArchivedMeter, Param: "event_name", Err: ErrArchivedMeter,
			Message: fmt.Sprintf("The meter %s for event_name %q is inactive. The meter must be active to submit events.", m.ID, ev.Name)}
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
