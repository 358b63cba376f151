package meterdb

import "errors"

var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("meterdb: closed")
	// ErrReadOnly is returned by every write to a database opened with
	// Options.ReadOnly.
	ErrReadOnly = errors.New("meterdb: database opened read-only; writes are refused")
	// ErrInvalidQuery is what every *QueryError unwraps to.
	ErrInvalidQuery = errors.New("meterdb: invalid summary query")
)

// QueryError reports a summary query parameter that breaks a rule.
type QueryError struct {
	Code    string // Stripe error code: parameter_missing or parameter_invalid
	Param   string // e.g. "start_time"
	Message string
}

func (e *QueryError) Error() string { return e.Message }
func (e *QueryError) Unwrap() error { return ErrInvalidQuery }
