package meterdb

// CrashForTest ends db the way a killed process would, as far as the file
// is concerned: acknowledged writes stay (they are committed), but no
// final checkpoint is written, so the next Open replays the log. Buffered
// writes still queued are committed too. The DB is unusable afterwards.
func CrashForTest(db *DB) error { return db.e.Crash() }

// CheckpointForTest writes a checkpoint now, as the background
// checkpointer would. It does nothing for an in-memory DB.
func CheckpointForTest(db *DB) error { return db.e.Checkpoint() }
