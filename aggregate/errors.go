package aggregate

import "errors"

var (
	// ErrUnaligned reports a query bound that is not aligned as required.
	ErrUnaligned = errors.New("aggregate: query range not aligned")
	// ErrEmptyRange reports a query range whose end is not after its start.
	ErrEmptyRange = errors.New("aggregate: empty query range")
)
