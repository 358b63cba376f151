// Package record encodes the records a replicated meterdb database appends
// to its shared log (sharedlog.Log): events, cancellations, meter changes
// and key-value writes, each with its writer's clock stamp, a format
// version and a CRC-32C.
//
// # Data flow
//
// A writer validates its input, builds a Record, encodes it with Append
// and appends the bytes to the shared log. Every replica's applier reads
// the log in order and Decodes each record before it applies it. The
// layout is in FORMAT.md beside this file.
//
// # Ownership and concurrency
//
// The package has no state. Append appends to the caller's slice; Decode
// returns a Record that shares nothing with its input. Both are safe for
// concurrent use.
package record
