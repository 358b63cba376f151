// Package event defines usage events and their validation.
//
// An Event is what a client reports: an event name, a string payload, an
// optional identifier and an optional timestamp. Validate checks an event
// against its meter and extracts the customer and the value; every failure
// is an *Error carrying the Stripe error code and the offending parameter,
// and unwrapping to one of the sentinels in errors.go.
//
// Values are whole numbers written in decimal, negatives allowed, with at
// most 15 digits (leading zeros aside), so every value fits an int64
// exactly; the aggregates sum them in 128 bits.
package event
