package meter

import "errors"

// Sentinels that every *Error unwraps to. Match them with errors.Is.
var (
	// ErrInvalid reports a parameter that breaks a creation or update rule.
	ErrInvalid = errors.New("meter: invalid parameter")
	// ErrNotFound reports an unknown meter id.
	ErrNotFound = errors.New("meter: not found")
	// ErrEventNameTaken reports an event name already used by another meter,
	// active or not.
	ErrEventNameTaken = errors.New("meter: event name already in use")
)

// Error codes carried by *Error, in Stripe's vocabulary.
const (
	CodeParameterMissing   = "parameter_missing"
	CodeParameterInvalid   = "parameter_invalid"
	CodeStringTooLong      = "string_too_long"
	CodeResourceMissing    = "resource_missing"
	CodeEventNameTaken     = "meter_event_name_taken"
	CodeParameterExclusive = "parameters_exclusive"
)

// Error is a validation or lookup failure for one parameter. It unwraps to
// one of the package sentinels.
type Error struct {
	Code    string // Stripe error code, e.g. "parameter_missing"
	Param   string // the offending parameter in Stripe's form notation, e.g. "default_aggregation[formula]"
	Message string // a sentence for humans
	Err     error  // the sentinel
}

func (e *Error) Error() string { return e.Message }
func (e *Error) Unwrap() error { return e.Err }

func invalid(code, param, msg string) *Error {
	return &Error{Code: code, Param: param, Message: msg, Err: ErrInvalid}
}
