package meterdb

import "time"

// CrashForTest ends db the way a killed process would, as far as the file
// is concerned: acknowledged writes stay (they are committed), but no
// final checkpoint is written, so the next Open replays the log. Buffered
// writes still queued are committed too. The DB is unusable afterwards.
func CrashForTest(db *DB) error { return db.e.Crash() }

// CheckpointForTest writes a checkpoint now, as the background
// checkpointer would. It does nothing for an in-memory DB.
func CheckpointForTest(db *DB) error { return db.e.Checkpoint() }

// SetDedupeEpochsForTest makes the dedupe index start a new epoch every
// epoch of the clock and, in each of its shards, whenever minEpoch
// identifiers filled the current one (when it was sized that small), so
// that tests cross epoch boundaries often. Zero values keep the defaults.
func SetDedupeEpochsForTest(o *Options, epoch time.Duration, minEpoch int) {
	o.dedupeEpoch, o.dedupeMinEpoch = epoch, minEpoch
}
