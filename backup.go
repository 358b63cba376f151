package meterdb

import (
	"fmt"
	"io"
)

// Backup writes a consistent copy of the database file to w while the
// database keeps serving reads and writes, and returns the number of bytes
// written. The copy holds every event, cancellation, meter and key-value
// record acknowledged before Backup was called (buffered writes are
// committed first); what is acknowledged while it runs may or may not be in
// it. The copy is a database file that Open and Verify accept as it is.
// While the copy runs, a commit that must grow the file waits for it. A
// database in memory has no file: Backup returns ErrInMemory.
func (db *DB) Backup(w io.Writer) (int64, error) {
	n, err := db.e.Backup(w)
	if err != nil {
		return n, fmt.Errorf("meterdb: backup: %w", err)
	}
	return n, nil
}
