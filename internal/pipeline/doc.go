// Package pipeline is meterdb's one write path: every event, cancellation,
// meter change and key-value record of a database goes through an Engine,
// whatever its caller (the library's Record, RecordBatch and RecordUsage,
// Cancel, the HTTP adapter's v1 and v2 endpoints and its event stream).
//
// # Data flow
//
// An Engine owns the database's state: the meter registry, the aggregate
// table, the dedupe index, the cancellation set and the Log that keeps
// what was accepted (in memory, or a store file). A write goes through the
// stages of commit.go in order:
//
//	validate -> reserve identifiers -> sequence -> log -> apply -> acknowledge
//
// With Config.Shared the Engine is one replica of a database that several
// processes share: writers validate and append records to the shared log,
// and one applier per state applies the log in order through the same
// reserve, sequence, log and apply stages (replica.go states the
// invariants of that mode).
//
// Reads (summaries, meters, stats) do not enter the pipeline: they read
// the registry and the table of the current state under the Engine's read
// lock (Enter and Exit).
//
// # Invariants
//
// commit.go states the invariants of the write path at its top; every
// stage keeps them, and this package's tests and the root package's model
// and crash tests check them.
//
// # Concurrency
//
// An Engine is safe for concurrent use. Lock order: the lifecycle lock
// (read side for every operation, write side for Close and reopen), the
// registry's writer lock, the apply lock, an aggregate or dedupe shard,
// then the store.
package pipeline
