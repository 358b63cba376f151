package store

import (
	"io"

	bolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the whole file to w while the store
// keeps serving reads and writes, and returns the number of bytes written.
// It first waits for everything queued before the call (as Sync does), so
// the copy holds every write acknowledged before Backup was called; writes
// committed while it runs are not in the copy. The copy is one bbolt read
// transaction (Tx.WriteTo): until it finishes, a commit that must grow the
// file waits for it, and pages freed meanwhile are not reused.
func (s *DB) Backup(w io.Writer) (int64, error) {
	if !s.opts.ReadOnly {
		if err := s.Sync(); err != nil {
			return 0, err
		}
	} else if err := s.check(); err != nil {
		return 0, err
	}
	var n int64
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}
