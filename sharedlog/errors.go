package sharedlog

import "errors"

var (
	// ErrUnavailable is wrapped by errors a later retry can overcome: the
	// log cannot be reached, or has no leader.
	ErrUnavailable = errors.New("sharedlog: log unavailable")
	// ErrTruncated reports that records a reader needs were dropped from
	// the log: the reader must start from a snapshot.
	ErrTruncated = errors.New("sharedlog: records no longer held")
	// ErrNoSnapshot reports that no snapshot is stored.
	ErrNoSnapshot = errors.New("sharedlog: no snapshot")
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("sharedlog: closed")
)
