package store

import (
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/meterdb/meterdb/internal/stats"
)

// Stats is a snapshot of a store's activity and sizes. Durations are in
// nanoseconds.
type Stats struct {
	// CommitEvents counts the events and cancellations of each group
	// commit (a commit of adapter records only counts zero).
	CommitEvents stats.HistogramSnapshot
	// CommitDuration is the time of each successful commit's transaction,
	// from its start until it is synced.
	CommitDuration stats.HistogramSnapshot
	// SyncDuration is the part of each successful commit spent writing
	// pages and the meta page and syncing them (bbolt's write time: two
	// fdatasyncs per commit unless Options.NoFsync).
	SyncDuration stats.HistogramSnapshot
	// CheckpointDuration is the time of each successful Checkpoint,
	// including its wait for the queued records.
	CheckpointDuration stats.HistogramSnapshot
	Checkpoints        int64 // successful Checkpoint calls
	LastCheckpoint     int64 // the now (unix seconds) of the last successful Checkpoint; 0 before the first
	FrozenBlocks       int64 // frozen blocks written by successful PutFrozen calls
	// LogRecords and LogBytes are the log records and their encoded bytes
	// in the file: counted by Replay, then kept up to date by commits and
	// checkpoints (zero before a Replay when the file had a log).
	LogRecords, LogBytes int64
	FileBytes            int64 // size of the file; 0 when it cannot be read
	// Failed reports a write failure after which the store accepts no
	// more writes (see ErrFailed); Stalled, a buffered batch waiting for
	// disk space, during which new writes are refused.
	Failed, Stalled bool
}

// counters are a store's statistics; see Stats.
type counters struct {
	commitEvents, commitDur, syncDur, ckptDur *stats.Histogram

	checkpoints, lastCheckpoint atomic.Int64
	frozenBlocks                atomic.Int64
	logRecords, logBytes        atomic.Int64
}

func newCounters() counters {
	return counters{
		commitEvents: stats.NewHistogram(stats.SizeBounds), commitDur: stats.NewHistogram(stats.DurationBounds),
		syncDur: stats.NewHistogram(stats.DurationBounds), ckptDur: stats.NewHistogram(stats.DurationBounds),
	}
}

// observeSync records the write time of tx once it has committed.
func (c *counters) observeSync(tx *bolt.Tx) {
	tx.OnCommit(func() {
		st := tx.Stats()
		c.syncDur.ObserveDuration(st.GetWriteTime())
	})
}

// committed records a commit of batch that started at start.
func (c *counters) committed(batch []*item, start time.Time, err error) {
	if err != nil {
		return
	}
	c.commitDur.ObserveDuration(time.Since(start))
	var events, records, bytes int64
	for _, it := range batch {
		events += int64(it.nev)
		if it.data != nil {
			records++
			bytes += int64(len(it.data) + crcLen) // as sealed
		}
	}
	c.commitEvents.Observe(events)
	c.logRecords.Add(records)
	c.logBytes.Add(bytes)
}

// checkpointed records a checkpoint that started at start and deleted
// pruned log records of prunedBytes bytes.
func (c *counters) checkpointed(start time.Time, now, pruned, prunedBytes int64) {
	c.ckptDur.ObserveDuration(time.Since(start))
	c.checkpoints.Add(1)
	c.lastCheckpoint.Store(now)
	c.logRecords.Add(-pruned)
	c.logBytes.Add(-prunedBytes)
}

// Stats returns the store's counters and sizes. It works after Close too
// (FileBytes then reports the file as Close left it).
func (s *DB) Stats() Stats {
	c := &s.counters
	st := Stats{
		CommitEvents: c.commitEvents.Snapshot(), CommitDuration: c.commitDur.Snapshot(),
		SyncDuration: c.syncDur.Snapshot(), CheckpointDuration: c.ckptDur.Snapshot(),
		Checkpoints: c.checkpoints.Load(), LastCheckpoint: c.lastCheckpoint.Load(), FrozenBlocks: c.frozenBlocks.Load(),
		LogRecords: c.logRecords.Load(), LogBytes: c.logBytes.Load(),
	}
	st.FileBytes, _ = s.Size()
	s.mu.Lock()
	st.Failed, st.Stalled = s.failed != nil, s.stalled != nil
	s.mu.Unlock()
	return st
}

// Err returns nil while the store accepts writes: ErrClosed once Close
// started, ErrReadOnly for a store opened read-only, the failure that made
// it unavailable for good (wrapping ErrFailed), or, while a buffered batch
// waits for disk space, that error. It does no I/O.
func (s *DB) Err() error {
	if err := s.check(); err != nil {
		return err
	}
	if s.opts.ReadOnly {
		return ErrReadOnly
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stalled
}
