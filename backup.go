package meterdb

import (
	"errors"
	"fmt"
	"io"
)

// ErrInMemory is returned by operations that need a database file, such as
// Backup, on a database that lives in memory.
var ErrInMemory = errors.New("meterdb: the database lives in memory and has no file")

// Backup writes a consistent copy of the database file to w while the
// database keeps serving reads and writes, and returns the number of bytes
// written. The copy holds every event, cancellation, meter and key-value
// record acknowledged before Backup was called (buffered writes are
// committed first); what is acknowledged while it runs may or may not be in
// it. The copy is a database file that Open and Verify accept as it is.
// While the copy runs, a commit that must grow the file waits for it.
func (db *DB) Backup(w io.Writer) (int64, error) {
	if err := db.enter(); err != nil {
		return 0, err
	}
	defer db.exit()
	fj, ok := db.j.(*fileJournal)
	if !ok {
		return 0, ErrInMemory
	}
	n, err := fj.Backup(w)
	if err != nil {
		return n, fmt.Errorf("meterdb: backup: %w", err)
	}
	return n, nil
}
