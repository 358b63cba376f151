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
	// ErrReadOnly is returned by every write to a store opened read-only.
	ErrReadOnly = errors.New("store: opened read-only")
)
