package event

import "errors"

// Sentinels that every *Error unwraps to, one per Stripe error code.
var (
	ErrNoMeter          = errors.New("event: no meter for event name")
	ErrArchivedMeter    = errors.New("event: meter is inactive")
	ErrNoCustomer       = errors.New("event: payload has no customer")
	ErrNoValue          = errors.New("event: payload has no value")
	ErrInvalidValue     = errors.New("event: invalid value")
	ErrTooManyDigits    = errors.New("event: value has too many digits")
	ErrTooFarInPast     = errors.New("event: timestamp too far in the past")
	ErrInFuture         = errors.New("event: timestamp in the future")
	ErrDuplicate        = errors.New("event: duplicate identifier")
	ErrInvalid          = errors.New("event: invalid parameter")
	ErrNotFound         = errors.New("event: no such event")
	ErrCancelExpired    = errors.New("event: cancellation window expired")
	ErrAlreadyCancelled = errors.New("event: already cancelled")
)

// Stripe error codes carried by *Error.
const (
	CodeNoMeter          = "no_meter"
	CodeArchivedMeter    = "archived_meter"
	CodeNoCustomer       = "payload_no_customer_defined"
	CodeNoValue          = "payload_no_value_defined"
	CodeInvalidValue     = "payload_invalid_value"
	CodeTooManyDigits    = "meter_event_value_too_many_digits"
	CodeTooFarInPast     = "timestamp_too_far_in_past"
	CodeInFuture         = "timestamp_in_future"
	CodeDuplicate        = "duplicate_meter_event"
	CodeParameterMissing = "parameter_missing"
	CodeStringTooLong    = "string_too_long"
	CodeParameterInvalid = "parameter_invalid"
	// The cancellation codes are meterdb's own; Stripe documents none.
	CodeNotFound         = "meter_event_not_found"
	CodeCancelExpired    = "meter_event_cancel_window_expired"
	CodeAlreadyCancelled = "meter_event_already_cancelled"
)

// Error is the reason one event was rejected.
type Error struct {
	Code    string // Stripe error code, e.g. "payload_invalid_value"
	Param   string // offending parameter, e.g. "payload[value]"; may be empty
	Message string // a sentence for humans
	Err     error  // the sentinel
}

func (e *Error) Error() string { return e.Message }
func (e *Error) Unwrap() error { return e.Err }
