// Package aggregate holds the in-memory aggregates of every series: one
// (meter, customer) pair, bucketed by UTC minute, hour and day.
//
// A Table is split into a power-of-two number of shards, chosen by a hash of
// the series key, each padded to its own cache lines and guarded by its own
// mutex; no I/O happens under a shard lock. A series is found by the same
// key hash that picks its shard, and keeps its buckets in day chunks, one
// per UTC day with data, ordered by a google/btree tree: a chunk (one
// 64-byte cache line) holds the day's bucket, a 24-bit mask of the hours
// that have a bucket and a slot per hour into an array of their buckets,
// so an event costs one search of a tree of about 36 chunks (none when it
// falls on the day of the previous one) and no allocation once its hour
// exists. ApplyBatch groups its items by shard and takes each shard lock
// once. A bucket is 32 bytes: for an hour, a bitmap of the minutes with
// entries; a count and the low half of a sum. The cells of an hour with
// entries in several minutes (24 bytes each, a count and a sum; a last
// meter's newest entry of a minute is found among its hour's raw entries)
// sit in an array of the shard's arena that the bucket numbers; what fewer buckets need (the high half of a sum beyond
// the int64 range, the newest entry for last meters, raw entries) sits in
// an extension created on demand, also numbered, which then holds the
// number of the minute cells. Buckets hold no pointer, so the collector
// has neither hours to scan nor an object per hour to mark. The minute cells
// are what make summaries exact for any minute-aligned range: whole days
// come from day buckets, whole hours from hour buckets and the partial
// hours at either edge from minute cells.
//
// Meters with the last formula, and pre-aggregated meters (an event time
// window), also keep the raw entries (sequence, timestamp, value: 24 bytes)
// of each hour or day, so that cancelling an event can recompute exactly
// the value it leaves behind.
//
// For the cross-customer queries (Customers, Top, Totals), each shard also
// keeps, per meter, the meter's series it holds sorted by customer, and
// each series a copy of its day cells in a slice with running totals, so
// that a range of whole days costs two lookups per series whatever its
// length (meter_index.go). Both are updated under the shard lock by the
// code that changes a series; a query locks one shard at a time, so it is
// consistent per shard, not across shards.
//
// Days that can no longer change (the caller says which, with Freeze)
// leave the chunk trees for a packed read-only form, per series: each
// day's cell and the cells of its hours, varint-encoded (freeze.go).
// Queries split their range at the frozen end of each series. The minute
// cells of frozen hours are packed too, or, when the table has a
// MinuteReader, read back from the caller's checkpointed hour records
// after the query released the shard lock. Frozen days are grouped in
// blocks of 32 aligned days; a table with a BlockReader hands complete
// blocks to its caller to store (TakeFrozen, Stored), keeps only their
// day cells, and reads a block back, through a small cache and after the
// shard lock is released, when a query needs the hours of its days
// (freeze_store.go).
//
// Every method of Table is safe for concurrent use.
package aggregate
