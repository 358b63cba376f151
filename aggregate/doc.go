// Package aggregate holds the in-memory aggregates of every series: one
// (meter, customer) pair, bucketed by UTC minute, hour and day.
//
// A Table is split into a power-of-two number of shards, chosen by a hash of
// the series key, each padded to its own cache lines and guarded by its own
// mutex; no I/O happens under a shard lock. A series keeps its hour buckets
// and its day buckets in google/btree trees; every hour bucket keeps its
// minute cells in a small sorted slice, which is what makes summaries exact
// for any minute-aligned range: whole days come from day buckets, whole
// hours from hour buckets and the partial hours at either edge from minute
// cells.
//
// Meters with the last formula, and pre-aggregated meters (an event time
// window), also keep the raw entries (sequence, timestamp, value: 24 bytes)
// of each hour or day, so that cancelling an event can recompute exactly
// the value it leaves behind.
//
// Every method of Table is safe for concurrent use.
package aggregate
