package store

import "errors"

var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("store: closed")
	// ErrNotStore reports a file that is not a meterdb store.
	ErrNotStore = errors.New("store: not a meterdb store")
	// ErrVersion reports a store written in a format this code does not know.
	ErrVersion = errors.New("store: unknown format version")
	// ErrLocked reports a file another process has open.
	ErrLocked = errors.New("store: file is locked by another process")
	// ErrCorrupt reports a record or page that cannot be decoded.
	ErrCorrupt = errors.New("store: corrupt data")
	// ErrReadOnly is returned by every write to a store opened with
	// Options.ReadOnly.
	ErrReadOnly = errors.New("store: opened read-only")
	// ErrUnavailable is what every write error that a later retry can
	// overcome wraps: the disk is full, or the store failed and is being
	// reopened. Nothing of the failed write was recorded.
	ErrUnavailable = errors.New("store: temporarily unable to write")
	// ErrFailed marks a write failure after which this handle writes no
	// more (an I/O error or a failed fsync): the file must be reopened to
	// learn what is durable.
	ErrFailed = errors.New("store: write failed; reopen to recover")
)
