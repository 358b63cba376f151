// Package stats holds the counters behind meterdb's Stats: fixed-bucket
// histograms and per-meter event counters, updated with atomics and read as
// value snapshots.
//
// Both types are safe for concurrent use. Updating them takes no lock and
// allocates nothing (Meters allocates when it first sees a meter); reading
// them allocates the snapshot. A snapshot taken while updates run is not
// an instant: each counter is read once, atomically, so a histogram's
// count and sum may disagree by the observations in flight.
package stats
