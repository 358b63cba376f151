package record

import "errors"

var (
	// ErrVersion reports a record of a format version this build does not
	// read.
	ErrVersion = errors.New("record: unknown format version")
	// ErrCorrupt reports a record whose checksum fails or that does not
	// decode exactly.
	ErrCorrupt = errors.New("record: corrupt record")
)
