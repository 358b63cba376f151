package replica

import (
	"errors"

	"github.com/meterdb/meterdb/sharedlog"
)

var (
	// ErrClosed is returned by every method called after Close; it is
	// sharedlog.ErrClosed.
	ErrClosed = sharedlog.ErrClosed
	// ErrOptions is wrapped by the errors of Open for invalid Options.
	ErrOptions = errors.New("replica: invalid options")
	// ErrStream is wrapped by the error of Open when the stream exists
	// with a configuration the log cannot use (other subjects, or a
	// retention that deletes records once read).
	ErrStream = errors.New("replica: the stream cannot hold the log")
	// ErrRecordTooLarge is returned by Append for a record larger than
	// the servers accept in one message (their max_payload, 1 MiB by
	// default).
	ErrRecordTooLarge = errors.New("replica: record larger than the server's max_payload")
)
