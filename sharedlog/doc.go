// Package sharedlog defines the log that several meterdb processes share
// to form one database.
//
// # Data flow
//
// A database opened with meterdb.Options.Log writes every change (meter
// changes, accepted events, cancellations, the adapter's key-value
// records) as an opaque record appended to a Log, and applies the Log's
// records in order, its own and those of every other process, to its
// local state. The records are encoded, versioned and checksummed by
// meterdb; a Log only orders, replicates and keeps them. The replica
// package implements a Log on a NATS JetStream stream; this package has
// no implementation and imports nothing outside the standard library, so
// that meterdb can use a Log without depending on any of them.
//
// # Ownership and concurrency
//
// A Log is used by one database and must be safe for concurrent use:
// Append is called from many goroutines while one goroutine Reads. The
// record passed to Append is not retained after Append returns; the
// record passed to a Read callback is valid only during the call.
package sharedlog
