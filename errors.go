package meterdb

import (
	"errors"

	"github.com/meterdb/meterdb/internal/pipeline"
	"github.com/meterdb/meterdb/store"
)

var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = pipeline.ErrClosed
	// ErrUnavailable is what every write error that a retry can overcome
	// wraps: the disk is full, or the database is reopening its file after
	// an I/O error. Nothing of the failed write was recorded (its
	// identifiers stay free), so the same request can be sent again. With
	// Options.Log it also reports a shared log that cannot be reached; a
	// write whose append failed so may still be in the log, so retry it
	// with the same identifiers. Over HTTP it is a 503 with
	// Stripe-Should-Retry: true.
	ErrUnavailable = store.ErrUnavailable
	// ErrInMemory is returned by operations that need a database file,
	// such as Backup, on a database that lives in memory.
	ErrInMemory = pipeline.ErrInMemory
	// ErrReadOnly is returned by every write to a database opened with
	// Options.ReadOnly.
	ErrReadOnly = pipeline.ErrReadOnly
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
