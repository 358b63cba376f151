// Package meterdb is an embedded usage-metering engine: it records usage
// events against meters, aggregates them per customer into hour and day
// buckets held in memory, and answers Stripe-style event summaries exactly
// for any minute-aligned range.
//
// # Data flow
//
// Record and RecordBatch resolve each event's meter by event name (a
// lock-free registry read), validate it (customer, value, timestamp,
// lengths), reserve its identifier in the dedupe index, append the accepted
// events to the journal as one group, apply them to the aggregate shards
// and acknowledge. A rejected event leaves no trace. Summaries read one
// shard under its lock; whole days come from day buckets, whole hours from
// hour buckets and partial hours from minute cells.
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
//   - Identifiers are unique within Options.DedupeWindow (24 hours by
//     default); empty identifiers are generated.
//   - Cancel removes one event received within the last 24 hours.
//   - A summary without grouping is always returned, with value 0 when the
//     range holds no events; grouped summaries omit empty windows and come
//     newest first.
//
// # Concurrency
//
// A *DB is safe for concurrent use. Close waits for operations in flight;
// every method called after it returns ErrClosed.
package meterdb
