package pipeline

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/meterdb/meterdb/store"
)

// checkpointer writes the aggregates of a file-backed database in the
// background.
type checkpointer struct {
	stop    chan struct{}
	stopped chan struct{}
	// mu serializes checkpoints, and the freeze that follows each
	// (freeze.go): a chunk freezes only once the checkpoint that took its
	// changes is written.
	mu sync.Mutex
	// retry holds the records of a checkpoint that failed for lack of
	// space: the table no longer marks them dirty, so the next checkpoint
	// writes them first (its own, newer records of the same buckets win).
	// Only the checkpointer goroutine and Close, after it stopped, use it.
	retry []store.AggRecord
}

func (e *Engine) checkpointLoop(st *state) {
	defer close(st.ckpt.stopped)
	t := time.NewTicker(e.cfg.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-st.ckpt.stop:
			return
		case <-t.C:
			if err := e.checkpoint(st); err != nil {
				e.cfg.Logger.Error("meterdb checkpoint failed; the log keeps everything until the next one", "err", err)
			}
		}
	}
}

// checkpoint writes the aggregates changed since the last checkpoint. It
// stops writers (the apply lock) only while it takes the changed buckets.
// A checkpoint that fails for lack of space is retried with the next one;
// one that fails otherwise makes the engine reopen the file.
func (e *Engine) checkpoint(st *state) error {
	st.ckpt.mu.Lock()
	defer st.ckpt.mu.Unlock()
	st.applyMu.Lock()
	m := store.Mark{Loc: st.file.LastLoc(), LastSeq: st.seq.Load()}
	dirty := st.table.TakeDirty()
	st.applyMu.Unlock()
	recs := append(st.ckpt.retry, make([]store.AggRecord, len(dirty))...)
	for i, d := range dirty {
		recs[len(st.ckpt.retry)+i] = store.AggRecord{Meter: d.Key.Meter, Customer: d.Key.Customer, Start: d.Start, Day: d.Day, State: d.State}
	}
	err := st.file.Checkpoint(m, recs, st.file.pruneLoc.Load(), e.applyNow(st))
	if err != nil {
		st.ckpt.retry = recs
		if errors.Is(err, store.ErrFailed) {
			e.reopen()
		}
		return err
	}
	st.ckpt.retry = nil
	e.freeze(st, e.applyNow(st))
	if err := storeFrozen(st, st.file.DB); err != nil {
		if errors.Is(err, store.ErrFailed) {
			e.reopen()
		}
		return fmt.Errorf("storing frozen blocks: %w", err)
	}
	return nil
}
