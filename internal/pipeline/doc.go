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
// Reads (summaries, meters, stats) do not enter the pipeline: they read
// the registry and the table of the current state under the Engine's read
// lock (Enter and Exit).
//
// # Invariants
//
// The write path keeps these, and the tests of this package and of the
// root package check them:
//
//  1. A rejected event leaves no trace: no log record, no dedupe entry, no
//     bucket change. That includes an event whose log write failed: its
//     identifier is released, so a retry with the same identifier is
//     recorded, not refused as a duplicate.
//  2. An event is applied to the aggregates only after the log accepted it
//     (with DurabilitySync, after the fsync that covers it), and its
//     identifier becomes findable only after it is applied.
//  3. An identifier is held by at most one event of the dedupe window:
//     reservation makes concurrent events with one identifier collide
//     before either is logged.
//  4. Sequence numbers grow with receipt; the log's locations are dense
//     and assigned in commit order.
//  5. A checkpoint covers exactly the log up to a location: writers hold
//     the apply lock (read side) from log append to apply, and the
//     checkpointer takes its write side while it collects changed buckets.
//  6. A write that the store cannot make returns an error wrapping
//     store.ErrUnavailable. When the store cannot tell what reached the
//     disk (an I/O error, a failed fsync), the Engine reopens the file and
//     rebuilds its state from what is durable before it serves writes
//     again; it never retries such a write blindly.
//
// # Concurrency
//
// An Engine is safe for concurrent use. Lock order: the lifecycle lock
// (read side for every operation, write side for Close and reopen), the
// registry's writer lock, the apply lock, an aggregate or dedupe shard,
// then the store.
package pipeline
