package meterdb

import (
	"errors"
	"fmt"
	"runtime"

	"sync/atomic"
	"time"

	"github.com/meterdb/meterdb/aggregate"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/store"
)

// fileJournal is the journal of a file-backed DB. Pruning is deferred to
// the next checkpoint.
type fileJournal struct {
	*store.DB
	pruneLoc atomic.Uint64 // log records below it are no longer needed for dedupe
}

// MemoryBytes is zero: the file journal keeps nothing in memory beyond
// the records waiting for their commit.
func (j *fileJournal) MemoryBytes() int64 { return 0 }

func (j *fileJournal) Prune(loc uint64, now int64) {
	if loc > j.pruneLoc.Load() {
		j.pruneLoc.Store(loc)
	}
}

// checkpointer writes the aggregates of a file-backed DB in the background.
type checkpointer struct {
	stop    chan struct{}
	stopped chan struct{}
	failed  atomic.Bool // after a failed checkpoint no other is written
}

// openFile loads the store at path into db: meters, the checkpointed
// aggregates, then the log after the checkpoint; and rebuilds the dedupe
// index and the cancellation set from the log records of the retention
// window.
func (db *DB) openFile(path string) error {
	o := db.opts
	sdb, err := store.Open(path, &store.Options{
		Durability: o.Durability.storeDurability(), MaxBatchSize: o.MaxBatchSize, MaxBatchDelay: o.MaxBatchDelay,
		FlushInterval: o.FlushInterval, LockTimeout: o.LockTimeout, NoFsync: o.NoFsync, Logger: o.Logger,
		ReadOnly: o.ReadOnly,
	})
	if err != nil {
		return fmt.Errorf("meterdb: %w", err)
	}
	if err := db.load(sdb); err != nil {
		sdb.Close()
		return fmt.Errorf("meterdb: loading %s: %w", path, err)
	}
	db.j = &fileJournal{DB: sdb}
	db.durable = true
	if o.ReadOnly {
		db.j = readOnlyJournal{db.j}
		return nil // and no checkpointer
	}
	db.ckpt = &checkpointer{stop: make(chan struct{}), stopped: make(chan struct{})}
	go db.checkpointLoop()
	return nil
}

func (db *DB) load(sdb *store.DB) (err error) {
	start := time.Now()
	ms, err := sdb.Meters()
	if err != nil {
		return err
	}
	if db.reg, err = meter.NewRegistry(ms); err != nil {
		return fmt.Errorf("%w: %v", store.ErrCorrupt, err)
	}
	modes := map[uint64]aggregate.Mode{}
	for _, m := range ms {
		modes[m.Seq] = aggregate.ModeOf(string(m.Formula), string(m.EventTimeWindow))
	}
	restored := 0
	err = sdb.LoadAggregates(func(r *store.AggRecord) error {
		mode, ok := modes[r.Meter]
		if !ok {
			return fmt.Errorf("%w: aggregate record of unknown meter %d", store.ErrCorrupt, r.Meter)
		}
		restored++
		return db.table.Restore(aggregate.Key{Meter: r.Meter, Customer: r.Customer}, mode, r.Start, r.Day, r.State)
	})
	if err != nil {
		return err
	}
	if !db.opts.ReadOnly {
		db.table.TrackDirty()
	}
	ckMark, err := sdb.LastMark()
	if err != nil {
		return err
	}
	lastSeq := ckMark.LastSeq
	cutoff := db.now().Unix() - db.retention() - 60
	replayed, indexed := 0, 0
	loader := db.idx.Loader()
	lastMark := func(received int64, loc uint64) {
		if n := len(db.marks); n == 0 || db.marks[n-1].t < received {
			db.marks = append(db.marks, mark{t: received, loc: loc})
		}
	}
	full := func(loc uint64, g *store.Group) error {
		apply := loc > ckMark.Loc
		for i := range g.Events {
			e := &g.Events[i]
			mode, ok := modes[e.Meter]
			if !ok {
				return fmt.Errorf("%w: log record %d names unknown meter %d", store.ErrCorrupt, loc, e.Meter)
			}
			lastSeq = max(lastSeq, e.Seq)
			if apply {
				db.table.Apply(aggregate.Key{Meter: e.Meter, Customer: e.Customer}, mode,
					aggregate.Entry{Seq: e.Seq, Timestamp: e.Timestamp, Value: e.Value})
				replayed++
			}
			if e.Received >= cutoff {
				loader.Add([]byte(e.Identifier), loc)
				indexed++
			}
			lastMark(e.Received, loc)
		}
		for _, c := range g.Cancels {
			mode, ok := modes[c.Meter]
			if !ok {
				return fmt.Errorf("%w: log record %d names unknown meter %d", store.ErrCorrupt, loc, c.Meter)
			}
			if apply && !db.table.Cancel(aggregate.Key{Meter: c.Meter, Customer: c.Customer}, mode,
				aggregate.Entry{Seq: c.Seq, Timestamp: c.Timestamp, Value: c.Value}) {
				return fmt.Errorf("%w: log record %d cancels event %d, which is not recorded", store.ErrCorrupt, loc, c.Seq)
			}
			if c.Received >= cutoff {
				db.cancelled[c.Seq] = c.Received
			}
			lastMark(c.Received, loc)
		}
		return nil
	}
	ident := func(loc uint64, received int64, id []byte) {
		if received >= cutoff {
			loader.Add(id, loc)
			indexed++
		}
		lastMark(received, loc)
	}
	if err := sdb.Replay(ckMark.Loc, full, ident); err != nil {
		return err
	}
	loader.Finish(runtime.GOMAXPROCS(0))
	db.seq.Store(lastSeq)
	db.opts.Logger.Info("meterdb opened", "meters", len(ms), "aggregate_records", restored,
		"replayed_events", replayed, "indexed_identifiers", indexed, "took", time.Since(start))
	return nil
}

func (db *DB) checkpointLoop() {
	defer close(db.ckpt.stopped)
	t := time.NewTicker(db.opts.CheckpointInterval)
	defer t.Stop()
	for {
		select {
		case <-db.ckpt.stop:
			return
		case <-t.C:
			if err := db.checkpoint(); err != nil {
				db.opts.Logger.Error("meterdb checkpoint failed; the log keeps everything until the next open", "err", err)
			}
		}
	}
}

// checkpoint writes the aggregates changed since the last checkpoint. It
// stops writers (the apply lock) only while it takes the changed buckets.
func (db *DB) checkpoint() error {
	if db.ckpt.failed.Load() {
		return errors.New("meterdb: an earlier checkpoint failed")
	}
	fj := db.j.(*fileJournal)
	db.applyMu.Lock()
	m := store.Mark{Loc: fj.LastLoc(), LastSeq: db.seq.Load()}
	dirty := db.table.TakeDirty()
	db.applyMu.Unlock()
	recs := make([]store.AggRecord, len(dirty))
	for i, d := range dirty {
		recs[i] = store.AggRecord{Meter: d.Key.Meter, Customer: d.Key.Customer, Start: d.Start, Day: d.Day, State: d.State}
	}
	if err := fj.Checkpoint(m, recs, fj.pruneLoc.Load(), db.now().Unix()); err != nil {
		// The taken buckets are no longer marked: a later checkpoint would
		// skip them. Stop checkpointing; the log still holds everything.
		db.ckpt.failed.Store(true)
		return err
	}
	return nil
}

// closeFile stops the checkpointer, writes a last checkpoint and closes
// the store.
func (db *DB) closeFile() error {
	if db.ckpt == nil { // read-only
		return db.j.Close()
	}
	close(db.ckpt.stop)
	<-db.ckpt.stopped
	var errs []error
	if !db.ckpt.failed.Load() {
		errs = append(errs, db.checkpoint())
	}
	errs = append(errs, db.j.Close())
	return errors.Join(errs...)
}

// readOnlyJournal is the journal of a read-only DB: every write fails with
// ErrReadOnly.
type readOnlyJournal struct{ journal }

func (readOnlyJournal) Append(*store.Group) (uint64, error)       { return 0, ErrReadOnly }
func (readOnlyJournal) SaveMeter(meter.Meter) error               { return ErrReadOnly }
func (readOnlyJournal) PutKV(string, string, []byte, int64) error { return ErrReadOnly }
func (readOnlyJournal) DeleteKV(string, string) error             { return ErrReadOnly }
