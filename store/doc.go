// Package store persists a meterdb database in one bbolt file.
//
// The file holds the meters, the log of accepted events and cancellations,
// checkpoints of the in-memory aggregates, and adapter records (HTTP
// idempotency records, meter event sessions). FORMAT.md beside this file
// documents every bucket, key and value.
//
// # Writes
//
// Append and PutKV hand their record to one committer goroutine, which
// writes everything queued in one bbolt transaction (group commit): up to
// Options.MaxBatchSize events, waiting at most Options.MaxBatchDelay for a
// group to fill. Log keys are sequential locations, so a commit appends to
// the end of the log's B+tree. With DurabilitySync (the default) Append
// returns after the fsync that covers its record; with DurabilityBuffered
// it returns at once and the committer syncs within Options.FlushInterval,
// which bounds what a crash can lose.
//
// A commit that fails for lack of space (ENOSPC or EDQUOT while writing
// pages) is transient: its writers get an error wrapping ErrUnavailable
// and the next commit tries again (a buffered store keeps the batch it
// acknowledged and retries it, refusing new writes meanwhile). Any other
// failure, a failed fsync above all, leaves the store unsure of what
// reached the disk: the store stays failed (ErrFailed, wrapped with
// ErrUnavailable), and its owner reopens the file.
//
// # Reads and recovery
//
// Every stored record carries a CRC-32C checked on every read (see
// checksum.go and FORMAT.md): damage is an error wrapping ErrCorrupt that
// names the record, never a different value. Open checks the format
// version (upgrading a file of an older format), and the caller then
// loads the meters, the frozen blocks (LoadFrozen),
// the latest checkpoint from the frozen_through time on
// (LoadAggregatesFrom) and the log after it (Replay). Checkpoint writes
// dirty aggregate records, records the location they cover and deletes
// the log groups that neither replay nor the retention window needs;
// PutFrozen writes blocks of frozen days, once each, and raises
// frozen_through. Replay also checks that the log has no gap. CheckRecords
// walks every record for verification; Backup copies the file while it
// serves writes.
//
// A *DB is safe for concurrent use.
package store
