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
