package meter

import (
	"crypto/rand"
	"fmt"
	"time"
)

// Formula is how a meter aggregates the values of its events in a window.
type Formula string

const (
	// Count counts events; values are ignored.
	Count Formula = "count"
	// Sum adds the events' values.
	Sum Formula = "sum"
	// Last takes the value of the event with the greatest timestamp; among
	// events with equal timestamps, the one received last wins.
	Last Formula = "last"
)

// Valid reports whether f is one of the known formulas.
func (f Formula) Valid() bool { return f == Count || f == Sum || f == Last }

// Window is a pre-aggregation window. With a window, only the newest event
// of each customer in each window counts (by timestamp, then by receipt
// order); a newer event replaces the earlier ones.
type Window string

const (
	// NoWindow means every event counts (Stripe's default, shown as null).
	NoWindow Window = ""
	// Hour pre-aggregates per UTC hour.
	Hour Window = "hour"
	// Day pre-aggregates per UTC day.
	Day Window = "day"
)

// Valid reports whether w is NoWindow, Hour or Day.
func (w Window) Valid() bool { return w == NoWindow || w == Hour || w == Day }

// Status is a meter's state. Inactive meters reject new events but keep
// their data, which stays queryable.
type Status string

const (
	Active   Status = "active"
	Inactive Status = "inactive"
)

// Defaults and limits, as Stripe documents them.
const (
	DefaultCustomerKey   = "stripe_customer_id"
	DefaultValueKey      = "value"
	MaxDisplayNameLength = 250
	MaxEventNameLength   = 100
	MaxPayloadKeyLength  = 100
)

// Meter is one meter definition. Meters are values: the Registry hands out
// copies, and changing a copy changes nothing stored.
type Meter struct {
	ID              string    // "mtr_" followed by 24 base62 characters
	Seq             uint64    // creation order, 1 for the first meter; assigned by the Registry
	DisplayName     string    // at most 250 characters
	EventName       string    // unique among all meters, inactive ones included
	Formula         Formula   // default_aggregation.formula
	CustomerKey     string    // customer_mapping.event_payload_key; the mapping type is always "by_id"
	ValueKey        string    // value_settings.event_payload_key
	EventTimeWindow Window    // NoWindow, Hour or Day
	Status          Status    // Active or Inactive
	Created         time.Time // creation time, whole seconds, UTC
	Updated         time.Time // last change of display name or status, whole seconds, UTC
	DeactivatedAt   time.Time // zero unless Status is Inactive
}

// Params are the creation parameters of a meter. Empty CustomerKey and
// ValueKey take the defaults stripe_customer_id and value.
type Params struct {
	DisplayName     string
	EventName       string
	Formula         Formula
	CustomerKey     string
	ValueKey        string
	EventTimeWindow Window
}

// Validate checks p against Stripe's creation rules and returns an *Error
// naming the first offending parameter.
func (p Params) Validate() error {
	switch {
	case p.DisplayName == "":
		return invalid(CodeParameterMissing, "display_name", "Missing required param: display_name.")
	case len(p.DisplayName) > MaxDisplayNameLength:
		return tooLong("display_name", MaxDisplayNameLength)
	case p.EventName == "":
		return invalid(CodeParameterMissing, "event_name", "Missing required param: event_name.")
	case len(p.EventName) > MaxEventNameLength:
		return tooLong("event_name", MaxEventNameLength)
	case p.Formula == "":
		return invalid(CodeParameterMissing, "default_aggregation[formula]", "Missing required param: default_aggregation[formula].")
	case !p.Formula.Valid():
		return invalid(CodeParameterInvalid, "default_aggregation[formula]",
			fmt.Sprintf("Invalid default_aggregation[formula]: must be one of count, sum, or last; got %q.", p.Formula))
	case len(p.CustomerKey) > MaxPayloadKeyLength:
		return tooLong("customer_mapping[event_payload_key]", MaxPayloadKeyLength)
	case len(p.ValueKey) > MaxPayloadKeyLength:
		return tooLong("value_settings[event_payload_key]", MaxPayloadKeyLength)
	case !p.EventTimeWindow.Valid():
		return invalid(CodeParameterInvalid, "event_time_window",
			fmt.Sprintf("Invalid event_time_window: must be one of day or hour; got %q.", p.EventTimeWindow))
	}
	if p.CustomerKey != "" && p.CustomerKey == p.ValueKey {
		return invalid(CodeParameterInvalid, "value_settings[event_payload_key]",
			"value_settings[event_payload_key] must differ from customer_mapping[event_payload_key].")
	}
	if p.CustomerKey == "" && p.ValueKey == DefaultCustomerKey || p.ValueKey == "" && p.CustomerKey == DefaultValueKey {
		return invalid(CodeParameterInvalid, "value_settings[event_payload_key]",
			"value_settings[event_payload_key] must differ from customer_mapping[event_payload_key].")
	}
	return nil
}

func tooLong(param string, max int) *Error {
	return invalid(CodeStringTooLong, param,
		fmt.Sprintf("Invalid %s: must be at most %d characters.", param, max))
}

// withDefaults returns p with empty payload keys set to their defaults.
func (p Params) withDefaults() Params {
	if p.CustomerKey == "" {
		p.CustomerKey = DefaultCustomerKey
	}
	if p.ValueKey == "" {
		p.ValueKey = DefaultValueKey
	}
	return p
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// NewID returns a fresh random meter id: "mtr_" and 24 base62 characters.
func NewID() string { return "mtr_" + RandomBase62(24) }

// RandomBase62 returns n random base62 characters from crypto/rand.
func RandomBase62(n int) string {
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/4+4)
	for len(out) < n {
		rand.Read(buf) // never fails: crypto/rand crashes the program instead
		for _, c := range buf {
			// 248 = 4*62: rejecting larger bytes keeps every character equally likely.
			if c < 248 && len(out) < n {
				out = append(out, base62[c%62])
			}
		}
	}
	return string(out)
}
