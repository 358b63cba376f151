package pipeline

import (
	"errors"
	"io"
)

// ErrInMemory is returned by operations that need a database file, such as
// Backup, on a database that lives in memory.
var ErrInMemory = errors.New("meterdb: the database lives in memory and has no file")

// Backup writes a consistent copy of the database file to w (see
// store.DB.Backup) while writes go on. It holds the engine's read side for
// the copy's duration, so a reopen after a write failure waits for it.
func (e *Engine) Backup(w io.Writer) (int64, error) {
	st, err := e.enter()
	if err != nil {
		return 0, err
	}
	defer e.life.RUnlock()
	if st.file == nil {
		return 0, ErrInMemory
	}
	n, err := st.file.Backup(w)
	return n, e.failed(st, err)
}
