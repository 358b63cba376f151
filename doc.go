// Package meterdb is an embedded usage-metering engine: it records usage
// events against meters, aggregates them per customer into hour and day
// buckets held in memory, and answers Stripe-style event summaries exactly
// for any minute-aligned range.
//
// # Data flow
//
// Every write goes through one pipeline (internal/pipeline), whatever its
// caller: Record, RecordBatch, RecordUsage (usage in typed form, with no
// payload map) and Cancel here, and the HTTP adapter's endpoints. It
// resolves each event's meter by event name (a lock-free registry read),
// validates it (customer, value, timestamp, lengths), reserves its
// identifier in the dedupe index, appends the accepted events to the log
// as one group (group commit), applies them to the aggregate shards and
// acknowledges. A rejected event leaves no trace. Summaries read one
// shard under its lock; whole days come from day buckets, whole hours from
// hour buckets and partial hours from minute cells. AppendSummaries does
// the same into a caller's slice, so that a caller reusing it allocates
// nothing per query. The cross-customer queries (Customers, Totals,
// TopCustomers) read a per-meter index the shards keep beside the series
// (each shard's series of a meter, sorted by customer, each with running
// day totals), one shard at a time, never the series of other meters.
// Options.ReadOnly opens a file that another reader may share, for
// exports and inspection; package export writes a meter's per-customer
// usage as CSV or NDJSON.
//
// # Semantics
//
//   - Meters follow Stripe's billing.meter: formulas count, sum and last;
//     customer and value payload keys (defaults stripe_customer_id and
//     value); optional hour or day pre-aggregation, where only the newest
//     event of a customer's window counts; event names unique among all
//     meters, inactive ones included; deactivation and reactivation are
//     idempotent.
//   - Values are whole numbers, negatives allowed, at most 15 digits. Sums
//     are kept in 128 bits and never overflow in practice.
//   - Timestamps are kept to the second and must lie within the last 35
//     days (35×24 hours) and at most 5 minutes ahead of the clock.
//   - "Last" is the value of the event with the greatest timestamp; among
//     equal timestamps, the one received last.
//   - Identifiers are unique, across all meters, within
//     Options.DedupeWindow (24 hours by default); empty identifiers are
//     generated.
//   - Cancel removes one event received within the last 24 hours.
//   - A summary without grouping is always returned, with value 0 when the
//     range holds no events; grouped summaries omit empty windows and come
//     newest first.
//
// # Persistence
//
// Open with a path keeps everything in one bbolt file (see store and
// store/FORMAT.md). Accepted events are appended to a log by group commit;
// with DurabilitySync (the default) Record returns after the fsync that
// covers its event, with DurabilityBuffered after the in-memory apply,
// and a crash then loses at most what was acknowledged within
// Options.FlushInterval plus two commits (the one in progress when it
// arrived and its own). A background checkpointer writes
// the aggregate buckets changed since the last checkpoint every
// Options.CheckpointInterval, and Close writes a last one. Open loads the
// checkpoint, replays the log after it and rebuilds the dedupe index from
// the log records of the retention window; log records that are both
// checkpointed and older than the window are deleted. An acknowledged
// event is counted exactly once after any crash: tests kill a writing
// process with SIGKILL and check.
//
// A write the disk refuses records nothing and returns an error wrapping
// ErrUnavailable, with its identifiers left free for the retry. A full
// disk is transient: the next commit tries again, and writes succeed
// again as soon as space returns. After any other write error (an I/O
// error, a failed fsync) the store cannot tell what reached the disk, so
// the database never retries blindly: it reopens its file, rebuilds its
// state from what is durable, and then serves writes again
// (Stats.Reopens counts it).
//
// # Replicas
//
// Options.Log makes a database one replica of a database that several
// processes share through a sharedlog.Log (package replica implements one
// on NATS JetStream). Every change (meter creations and changes, events,
// cancellations, key-value writes and claims) becomes a record of the log
// (internal/record/FORMAT.md). A writer validates with its own registry
// and clock, stamps its clock into the record, appends it, and waits
// until its own replica applied it: the answer (accepted or
// duplicate_meter_event per event; a cancellation's outcome; a meter or
// the event_name_taken error) is the outcome of that apply. Each replica
// applies the whole log in order, its own records and every other
// writer's, as a deterministic state machine: the first event of an
// identifier in log order wins and a duplicate changes nothing; sequence
// numbers are assigned in log order; the dedupe, cancel and key-value
// expiry decisions use the writers' stamps (the apply time is the greatest
// stamp so far), never the replica's clock; meter ids are chosen by the
// writer, and the first create of an event name in log order wins. So
// every replica that applied the same prefix of the log holds the same
// state, and answers summaries from its own memory.
//
// A replica sees its own acknowledged writes. It may lag the others by
// what it has not applied yet (Stats.Replica); Options.ConsistentReads
// makes every read and write wait until it applied the log's newest record
// as of its start, and DB.WaitApplied does so once. A log that cannot be
// reached makes writes fail with an error wrapping ErrUnavailable (the
// write may still be in the log: retry it with the same identifiers),
// while reads keep working from memory. A write waits for its own
// replica's apply until its context ends (a replica that cannot apply
// reports why in Stats.Replica.Err and Ready); writes that wait when
// Close starts return ErrClosed. A replica counts in Stats the events,
// duplicates and cancellations it applied, every writer's, and the
// rejections of its own writers only.
//
// A replica with a path keeps its state in that file, written with
// buffered durability (the log is the truth), together with the log
// position it covers, committed with each change it applied; a restart
// reads the log on from there. A replica without a file, a new file, or
// one the log no longer continues (its records were dropped), starts from
// the log's newest snapshot, which replicas with a file take turns to
// write every Options.SnapshotInterval (DB.Snapshot writes one at once); a
// replica in memory that must bootstrap keeps the snapshot in a temporary
// file, removed on Close. The log must hold records for at least the
// snapshot interval plus the time a replica may be down; what is older
// than the newest snapshot can go.
//
// Writers' clocks should agree within a minute: event timestamps are
// validated against the writer's clock, and a writer whose clock runs
// ahead moves the apply time, and with it the dedupe and cancel windows,
// forward for everyone. RecordBatchKV appends its key-value records as a
// second record after its events' apply, so a crash in between keeps the
// events without the records (the identifiers still dedupe a retry).
//
// # Memory
//
// Per (meter, customer) series: an hour bucket per hour and a day bucket
// per day with events (32 bytes and a tree slot each for count and sum
// meters while an hour's events fall in one minute), a minute cell per
// minute with events when there are several (24 bytes: a count and a
// sum; a last meter's newest entry of a minute is found among its
// hour's events); meters with
// the last formula and pre-aggregated meters also keep each event's
// sequence, timestamp and value (24 bytes) so that a cancellation can be
// undone exactly. That is the cost of the days that can still change.
// A day that ended more than 37 days ago (the 35 days in which events are
// accepted, the day in which they can be cancelled, an hour of margin)
// never changes again: it is frozen into a packed read-only form, its
// count, sum and last and those of its hours varint-encoded, about 5
// bytes per hour with events. Summaries over frozen days stay exact at any
// grouping: a minute-aligned edge inside a frozen hour reads that hour's
// minute cells from the checkpoint in the file (one read, after the shard
// lock is released); an in-memory database, which has no file, keeps them
// packed in its frozen days instead (a few bytes per minute with events).
// A file-backed database freezes a day only once a checkpoint holds it,
// and keeps in memory only the day cells of history older than the
// current block of 32 days (about 6 bytes a day per series): once all 32
// days of a series' block are frozen, the block is written to the file,
// and a summary that needs the hours of one of its days reads it back
// (one read of a couple of kilobytes after the shard lock is released,
// through a cache of Options.HistoryCacheBytes). Open reads those blocks
// and the checkpoint of the days after them, not the hour records of the
// whole history. An event or cancellation dated before the frozen days'
// end (possible only when Options.Now went back by more than an hour, or
// went back across a restart past days already stored in blocks) is
// refused as too far in the past or past its cancel window. Stats.FrozenDays, FrozenBytes, FrozenStoredBlocks
// and FrozenBefore report it. The dedupe index keeps about 4.7 bytes per identifier of the window; a file-backed database confirms the index's matches
// against the identifiers in its log. An in-memory database keeps no
// events: per event of the window, 114 bits (14.25 bytes) of the 128-bit
// fingerprint of its identifier, which confirm matches (the index slot
// that names the event implies the other 14), and what Cancel needs (40
// bytes; each customer is kept once while an event of the window names
// it).
//
// # Concurrency
//
// A *DB is safe for concurrent use. Close waits for operations in flight;
// every method called after it returns ErrClosed.
package meterdb
