package meterdb

// CrashForTest ends db the way a killed process would, as far as the file
// is concerned: acknowledged writes stay (they are committed), but no
// final checkpoint is written, so the next Open replays the log. Buffered
// writes still queued are committed too. The DB is unusable afterwards.
func CrashForTest(db *DB) error {
	db.life.Lock()
	defer db.life.Unlock()
	if db.closed {
		return nil
	}
	db.closed = true
	if !db.durable {
		return db.j.Close()
	}
	close(db.ckpt.stop)
	<-db.ckpt.stopped
	return db.j.Close()
}

// CheckpointForTest writes a checkpoint now, as the background
// checkpointer would. It does nothing for an in-memory DB.
func CheckpointForTest(db *DB) error {
	if err := db.enter(); err != nil {
		return err
	}
	defer db.exit()
	if !db.durable {
		return nil
	}
	return db.checkpoint()
}
