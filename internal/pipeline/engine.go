package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meterdb/meterdb/aggregate"
	"github.com/meterdb/meterdb/internal/dedupe"
	"github.com/meterdb/meterdb/internal/idhash"
	"github.com/meterdb/meterdb/internal/record"
	"github.com/meterdb/meterdb/internal/stats"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/sharedlog"
	"github.com/meterdb/meterdb/store"
)

// ErrClosed is returned by every method called after Close.
var ErrClosed = errors.New("meterdb: closed")

// ErrReadOnly is returned by every write to an Engine opened with
// Config.Store.ReadOnly.
var ErrReadOnly = errors.New("meterdb: database opened read-only; writes are refused")

// Config is what an Engine needs; the root package fills every field.
type Config struct {
	Path               string // "" keeps everything in memory
	Shards             int
	DedupeWindow       time.Duration
	CancelWindow       time.Duration
	CheckpointInterval time.Duration
	HistoryCacheBytes  int // the cache of frozen blocks read back; zero: aggregate.DefaultBlockCache
	Now                func() time.Time
	Logger             *slog.Logger
	Store              store.Options // file-backed databases only
	// DedupeEpoch is how long the dedupe index fills one epoch before it
	// starts the next; whole epochs retire as the window moves. Zero means
	// a twelfth of the retention window. DedupeMinEpoch is the smallest
	// epoch of an index shard, in identifiers (zero: the index's default).
	// Tests make both small so that epochs roll often.
	DedupeEpoch    time.Duration
	DedupeMinEpoch int

	// Shared, when set, makes the database a replica of a shared log
	// (replica.go); Store.Durability is then buffered, as the log is the
	// truth. SnapshotInterval is how often replicas take turns writing a
	// snapshot to it.
	Shared           sharedlog.Log
	SnapshotInterval time.Duration
	// SharedInflight is how many events records a replica appends to the
	// shared log at once (replica_combine.go); 0 means 2.
	SharedInflight int

	// wrapLog, when set, wraps the memory log of an in-memory database:
	// the package's tests inject failures and delays with it.
	wrapLog func(Log) Log
	// idHashes, when set, replaces the two hashes of an identifier in an
	// in-memory database (the dedupe index's and the memory log's second
	// one): the package's tests make identifiers share hash bits with it.
	idHashes func(id string) (uint64, uint64)
}

// Engine is an open database: its state and its write pipeline.
type Engine struct {
	cfg      Config
	idPrefix string
	idCount  atomic.Uint64

	life   sync.RWMutex // read-held by every operation; write-held by Close and reopen
	closed bool         // guarded by life
	st     *state       // guarded by life: reopen replaces it

	reopening atomic.Bool

	// repl is the writers' side of the replicated mode; nil without a
	// shared log.
	repl *replicator
	// path is the file of the state: Config.Path, or a temporary file
	// (under tempDir) that an in-memory replica bootstrapped into.
	// Guarded by life.
	path, tempDir string

	stats   counters // see Stats
	reopens atomic.Int64
}

// state is everything an Engine rebuilds when it reopens its file.
type state struct {
	reg   *meter.Registry
	table *aggregate.Table
	idx   *dedupe.Index
	log   Log
	file  *fileLog // nil for an in-memory database
	mem   *memLog  // the memory log of an in-memory database, else nil
	down  error    // set when a reopen failed: writes are refused, reads served
	// readOnly is set for a file opened with Config.Store.ReadOnly: writes
	// are refused with ErrReadOnly and nothing is checkpointed.
	readOnly bool

	seq atomic.Uint64 // last assigned event sequence

	// File-backed databases only: applyMu is read-held from a group's
	// append to its apply, and write-held by the checkpointer while it
	// takes the changed buckets, so that a checkpoint covers exactly the
	// log up to a location.
	applyMu sync.RWMutex
	ckpt    *checkpointer
	// freezeAgain is set when the last freeze skipped chunks waiting for
	// a checkpoint (freeze.go). File-backed: guarded by ckpt.mu; in memory:
	// by pruneMu.
	freezeAgain bool
	// storedThrough is the store's frozen-through mark (storeFrozen);
	// guarded like freezeAgain.
	storedThrough int64

	// rs is the applier's state of a replicated database; nil otherwise.
	rs *replState
	// claimMu serializes ClaimKV on a database without a shared log.
	claimMu sync.Mutex

	cancelMu  sync.Mutex       // guards cancelled
	cancelled map[uint64]int64 // receipt time of cancelled (or being cancelled) events, by sequence

	marksMu   sync.Mutex // guards marks
	marks     []mark     // receipt-time marks, oldest first, for pruning
	lastMark  atomic.Int64
	lastPrune atomic.Int64
	// pruneMu serializes prune: two writers whose clocks read a minute
	// apart can both win lastPrune, and an in-memory prune freezes.
	pruneMu sync.Mutex
}

// Open opens the database cfg describes.
func Open(cfg Config) (*Engine, error) {
	e := &Engine{cfg: cfg, idPrefix: "mev_" + meter.RandomBase62(16) + "_", stats: newCounters(), path: cfg.Path}
	if cfg.Shared != nil {
		if cfg.Store.ReadOnly {
			return nil, errors.New("meterdb: a replica of a shared log cannot be opened read-only")
		}
		e.cfg.Store.Durability = store.DurabilityBuffered
		e.repl = newReplicator(cfg.Shared, cfg.SharedInflight)
		if err := e.bootstrapNew(); err != nil {
			return nil, err
		}
	}
	// A replica's applier may start a rebuild at once (the log was
	// truncated): it waits for the lifecycle lock until e.st is set.
	e.life.Lock()
	defer e.life.Unlock()
	st, err := e.openState()
	if err != nil {
		return nil, err
	}
	e.st = st
	return e, nil
}

// openState builds a state: empty for an in-memory database, loaded from
// the file otherwise.
func (e *Engine) openState() (*state, error) {
	reg, err := meter.NewRegistry(nil)
	if err != nil {
		return nil, err
	}
	st := &state{
		reg:       reg,
		table:     aggregate.NewTable(e.cfg.Shards),
		cancelled: map[uint64]int64{},
	}
	if e.path == "" {
		// The index's locations are the memory log's event indexes, and
		// the log keeps of each event the hash bits the index's slots do
		// not imply.
		key := idhash.New()
		o := dedupe.Options{MinEpoch: e.cfg.DedupeMinEpoch, Key: key, EventLocs: true}
		if h := e.cfg.idHashes; h != nil {
			o.Hash = func(id string) uint64 { h1, _ := h(id); return h1 }
		}
		st.idx = dedupe.NewWith(o)
		st.idx.SetEpoch(e.epochOf(e.cfg.Now().Unix()))
		st.mem = newMemLog(key, e.cfg.idHashes)
		st.log = st.mem
		// No file to read frozen minute cells from: the frozen days keep
		// them, packed.
		if e.cfg.wrapLog != nil {
			st.log = e.cfg.wrapLog(st.log)
		}
		if e.repl != nil {
			e.startReplica(st, 0, 0)
		}
		return st, nil
	}
	opts := e.cfg.Store
	if e.tempDir != "" {
		opts.NoFsync = true // an in-memory replica's bootstrap copy
	}
	sdb, err := store.Open(e.path, &opts)
	if err != nil {
		return nil, fmt.Errorf("meterdb: %w", err)
	}
	// The index hashes identifiers under the file's key, under which its
	// records keep their hashes: Open loads those.
	k := sdb.IdentKey()
	key, _ := idhash.Parse(k[:])
	st.idx = dedupe.NewWith(dedupe.Options{MinEpoch: e.cfg.DedupeMinEpoch, Key: key})
	st.idx.SetEpoch(e.epochOf(e.cfg.Now().Unix()))
	st.table.SetMinuteReader(func(k aggregate.Key, start int64) ([]byte, error) {
		return sdb.ReadAggregate(k.Meter, k.Customer, start)
	})
	st.table.SetBlockReader(func(k aggregate.Key, span int64) ([]byte, error) {
		return sdb.ReadFrozen(k.Meter, k.Customer, span)
	}, e.cfg.HistoryCacheBytes)
	now := e.cfg.Now().Unix()
	var pos uint64
	if e.repl != nil {
		if pos, now, err = readPosition(sdb); err != nil {
			sdb.Close()
			return nil, fmt.Errorf("meterdb: loading %s: %w", e.path, err)
		}
	}
	if err := e.load(st, sdb, now); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("meterdb: loading %s: %w", e.path, err)
	}
	if e.repl != nil && pos == 0 && (st.reg.Len() > 0 || sdb.LastLoc() > 0) {
		// Applying the shared log onto a database of its own would count
		// everything the file holds as well.
		sdb.Close()
		return nil, fmt.Errorf("meterdb: %s holds a database that is not a replica of a shared log", e.path)
	}
	st.file = &fileLog{DB: sdb}
	st.log = st.file
	if e.cfg.Store.ReadOnly {
		st.readOnly = true // and no checkpointer: nothing is written
		return st, nil
	}
	st.ckpt = &checkpointer{stop: make(chan struct{}), stopped: make(chan struct{})}
	go e.checkpointLoop(st)
	if e.repl != nil {
		e.startReplica(st, pos, now)
	}
	return st, nil
}

// Enter starts an operation and returns the current state's registry and
// table for reading; it fails after Close. Every successful Enter is
// paired with Exit.
func (e *Engine) Enter() (*meter.Registry, *aggregate.Table, error) {
	e.life.RLock()
	if e.closed {
		e.life.RUnlock()
		return nil, nil, ErrClosed
	}
	return e.st.reg, e.st.table, nil
}

// Exit ends an operation started by Enter.
func (e *Engine) Exit() { e.life.RUnlock() }

// enter is Enter for the pipeline's own operations.
func (e *Engine) enter() (*state, error) {
	e.life.RLock()
	if e.closed {
		e.life.RUnlock()
		return nil, ErrClosed
	}
	return e.st, nil
}

// Close waits for operations in flight, makes everything accepted durable
// and releases the database. Calling it again returns nil.
func (e *Engine) Close() error { return e.shutdown(true) }

// shutdown ends e, with a last checkpoint when final is set.
func (e *Engine) shutdown(final bool) error {
	e.life.Lock()
	defer e.life.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	err := e.st.close(e, final)
	if e.repl != nil {
		e.repl.closeOnce.Do(func() { close(e.repl.closed) })
	}
	if e.tempDir != "" {
		os.RemoveAll(e.tempDir)
	}
	return err
}

// close stops the checkpointer, writes a last checkpoint when final is
// set and the store still writes, and closes the log.
func (st *state) close(e *Engine, final bool) error {
	if st.down != nil {
		return nil // closed by a reopen that failed
	}
	if st.rs != nil {
		st.rs.stop()
	}
	if st.ckpt == nil {
		return st.log.Close()
	}
	close(st.ckpt.stop)
	<-st.ckpt.stopped
	var errs []error
	if final {
		errs = append(errs, e.checkpoint(st))
	}
	errs = append(errs, st.log.Close())
	return errors.Join(errs...)
}

// Sync makes every acknowledged event durable.
func (e *Engine) Sync() error {
	st, err := e.enter()
	if err != nil {
		return err
	}
	defer e.life.RUnlock()
	return e.failed(st, st.log.Sync())
}

// Now returns the engine's clock.
func (e *Engine) Now() time.Time { return e.cfg.Now() }

// failed passes err on, and starts a reopen when err says the store can no
// longer tell what it wrote.
func (e *Engine) failed(st *state, err error) error {
	if err != nil && errors.Is(err, store.ErrFailed) {
		e.reopen()
	}
	return err
}

// writable reports why st takes no writes, if it does not.
func (st *state) writable() error {
	if st.down != nil {
		return st.down
	}
	if st.readOnly {
		return ErrReadOnly
	}
	return nil
}

// reopen rebuilds the state from the file in the background, once at a
// time: after a write failure that leaves the store unsure of what it
// wrote, what is on disk is the truth. Operations wait while it runs;
// writes get errors wrapping store.ErrUnavailable until it succeeds.
func (e *Engine) reopen() { e.rebuild(false) }

// rebuild is reopen, and with bootstrap set it replaces the file with the
// shared log's newest snapshot first: the log no longer holds the
// records the state needs.
func (e *Engine) rebuild(bootstrap bool) {
	if e.cfg.Path == "" && !bootstrap || !e.reopening.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer e.reopening.Store(false)
		for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
			e.life.Lock()
			if e.closed {
				e.life.Unlock()
				return
			}
			old := e.st
			old.close(e, false)
			var err error
			if bootstrap {
				var found bool
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				found, err = e.fetchSnapshot(ctx)
				cancel()
				if err == nil && !found {
					err = fmt.Errorf("the shared log was truncated and holds no snapshot: %w", sharedlog.ErrNoSnapshot)
				}
			}
			var st *state
			if err == nil {
				st, err = e.openState()
			}
			if err == nil {
				e.st = st
				if bootstrap {
					e.repl.loseWaiters()
				} else {
					e.reopens.Add(1)
				}
				e.life.Unlock()
				if bootstrap {
					e.cfg.Logger.Info("meterdb replica restarted from the shared log's snapshot")
				} else {
					e.cfg.Logger.Info("meterdb reopened its file after a write failure")
				}
				return
			}
			why := "reopening after a write failure"
			if bootstrap {
				why = "restarting the replica from a snapshot"
			}
			old.down = fmt.Errorf("%w: %s: %w", store.ErrUnavailable, why, err)
			e.life.Unlock()
			e.cfg.Logger.Error("meterdb "+why+" failed; writes are refused until it succeeds", "err", err)
			time.Sleep(wait)
		}
	}()
}

// Meters.

// CreateMeter creates a meter.
func (e *Engine) CreateMeter(ctx context.Context, p meter.Params) (meter.Meter, error) {
	if e.repl != nil {
		if err := p.Validate(); err != nil {
			return meter.Meter{}, err
		}
		return e.meterShared(ctx, &record.Record{Kind: record.KindMeterCreate, Meter: record.Meter{
			ID: meter.NewID(), DisplayName: p.DisplayName, EventName: p.EventName, Formula: string(p.Formula),
			CustomerKey: p.CustomerKey, ValueKey: p.ValueKey, EventTimeWindow: string(p.EventTimeWindow),
		}})
	}
	return e.meterOp(func(st *state, save func(meter.Meter) error) (meter.Meter, error) {
		return st.reg.Create(p, e.cfg.Now(), save)
	})
}

// SetDisplayName changes a meter's display name.
func (e *Engine) SetDisplayName(ctx context.Context, id, name string) (meter.Meter, error) {
	if e.repl != nil {
		return e.meterShared(ctx, &record.Record{Kind: record.KindMeterName, Meter: record.Meter{ID: id, DisplayName: name}})
	}
	return e.meterOp(func(st *state, save func(meter.Meter) error) (meter.Meter, error) {
		return st.reg.SetDisplayName(id, name, e.cfg.Now(), save)
	})
}

// SetStatus activates or deactivates a meter.
func (e *Engine) SetStatus(ctx context.Context, id string, s meter.Status) (meter.Meter, error) {
	if e.repl != nil {
		return e.meterShared(ctx, &record.Record{Kind: record.KindMeterStatus, Meter: record.Meter{ID: id, Inactive: s == meter.Inactive}})
	}
	return e.meterOp(func(st *state, save func(meter.Meter) error) (meter.Meter, error) {
		return st.reg.SetStatus(id, s, e.cfg.Now(), save)
	})
}

func (e *Engine) meterOp(op func(st *state, save func(meter.Meter) error) (meter.Meter, error)) (meter.Meter, error) {
	var m meter.Meter
	err := e.writeOp(func(st *state) (err error) {
		m, err = op(st, st.log.SaveMeter)
		return err
	})
	return m, err
}

// writeOp runs a write other than events on the current state, unless the
// state takes no writes, and starts a reopen when the write's error asks
// for one.
func (e *Engine) writeOp(op func(st *state) error) error {
	st, err := e.enter()
	if err != nil {
		return err
	}
	defer e.life.RUnlock()
	if err := st.writable(); err != nil {
		return err
	}
	return e.failed(st, op(st))
}

// Key-value records.

// PutKV stores value under (ns, key) until expires (unix seconds).
func (e *Engine) PutKV(ctx context.Context, ns, key string, value []byte, expires int64) error {
	if e.repl != nil {
		return e.kvShared(ctx, []store.KVWrite{{NS: ns, Key: key, Value: value, Expires: expires}})
	}
	return e.writeOp(func(st *state) error { return st.log.PutKV(ns, key, value, expires) })
}

// kvShared appends the key-value writes ws to the shared log and waits
// for their apply.
func (e *Engine) kvShared(ctx context.Context, ws []store.KVWrite) error {
	if _, err := e.enterWrite(); err != nil {
		return err
	}
	if len(ws) == 0 {
		return nil
	}
	_, err := e.do(ctx, kvRecord(ws, e.cfg.Now()), nil)
	return err
}

// GetKV returns a copy of the unexpired value under (ns, key).
func (e *Engine) GetKV(ns, key string) ([]byte, bool, error) {
	st, err := e.enter()
	if err != nil {
		return nil, false, err
	}
	defer e.life.RUnlock()
	return st.log.GetKV(ns, key, e.cfg.Now().Unix())
}

// DeleteKV removes the value under (ns, key).
func (e *Engine) DeleteKV(ctx context.Context, ns, key string) error {
	if e.repl != nil {
		return e.kvShared(ctx, []store.KVWrite{{NS: ns, Key: key, Delete: true}})
	}
	return e.writeOp(func(st *state) error { return st.log.DeleteKV(ns, key) })
}

// WriteKV applies ws in one commit: all of them or none.
func (e *Engine) WriteKV(ctx context.Context, ws []store.KVWrite) error {
	if e.repl != nil {
		return e.kvShared(ctx, ws)
	}
	return e.writeOp(func(st *state) error { return st.log.WriteKV(ws) })
}

// ListKV calls fn with the unexpired records of ns after the key after.
func (e *Engine) ListKV(ns, after string, fn func(key string, value []byte) bool) error {
	st, err := e.enter()
	if err != nil {
		return err
	}
	defer e.life.RUnlock()
	return st.log.ListKV(ns, after, e.cfg.Now().Unix(), fn)
}

// Stats counts what an Engine did and holds.
type Stats struct {
	Accepted, Rejected, Duplicates, Cancels int64 // the sums of ByMeter
	Reopens                                 int64
	Meters                                  int64
	Table                                   aggregate.Stats
	FrozenBefore                            int64 // the aggregate table's Horizon
	Dedupe                                  dedupe.Stats
	LogMemory                               int64

	// ByMeter has the event counters of every meter seen, by Seq (0 for
	// events naming no meter); rejections are indexed as RejectCodes.
	ByMeter []stats.MeterSnapshot
	// MeterDefs are the meters, ordered by Seq.
	MeterDefs []meter.Meter
	// Batch is the number of inputs of each Record call.
	Batch stats.HistogramSnapshot
	// InMemory reports a database without a file. Store is the file's
	// statistics; nil in memory, and while a failed reopen keeps the file
	// closed.
	InMemory bool
	Store    *store.Stats
	// WriteFailed reports that writes are refused after a write failure
	// (a reopen is under way or failed, or the store failed or waits for
	// space).
	WriteFailed bool
	// Replica is the progress of a replicated database; nil otherwise.
	Replica *ReplicaStats
}

// Stats returns counters and sizes. It works after Close too.
func (e *Engine) Stats() Stats {
	// The read lock keeps a reopen from closing the store under the
	// reads below.
	e.life.RLock()
	defer e.life.RUnlock()
	st, down := e.st, e.st.down
	s := Stats{
		Reopens: e.reopens.Load(), Meters: int64(st.reg.Len()),
		Table: st.table.Stats(), FrozenBefore: st.table.Horizon(), Dedupe: st.idx.Stats(), LogMemory: st.log.MemoryBytes(),
		ByMeter: e.stats.meters.Snapshot(), MeterDefs: st.reg.All(), Batch: e.stats.batch.Snapshot(),
		WriteFailed: down != nil || e.reopening.Load(), InMemory: e.cfg.Path == "",
	}
	if e.repl != nil {
		s.Replica = e.replicaStats()
	}
	for _, m := range s.ByMeter {
		s.Accepted += m.Accepted
		s.Duplicates += m.Duplicate
		s.Cancels += m.Cancelled
		for _, n := range m.Rejected {
			s.Rejected += n
		}
	}
	if st.file != nil && down == nil {
		fs := st.file.Stats() // safe while a reopen closes the file
		s.Store = &fs
		s.WriteFailed = s.WriteFailed || fs.Failed || fs.Stalled
	}
	return s
}

func (e *Engine) newIdentifier() string {
	return e.idPrefix + strconv.FormatUint(e.idCount.Add(1), 36)
}

// retention is how long identifiers stay findable: for dedupe and for
// cancellation.
func (e *Engine) retention() int64 {
	return int64(max(e.cfg.DedupeWindow, e.cfg.CancelWindow) / time.Second)
}

// ctxErr is the error of a wait for durability that ctx cut short.
func ctxErr(ctx context.Context) error {
	return fmt.Errorf("meterdb: stopped waiting for the commit (the write may still be recorded): %w", ctx.Err())
}

// Checkpoint writes a checkpoint now, as the background checkpointer
// would. It does nothing for an in-memory database.
func (e *Engine) Checkpoint() error {
	st, err := e.enter()
	if err != nil {
		return err
	}
	defer e.life.RUnlock()
	if st.file == nil || st.down != nil || st.readOnly {
		return nil
	}
	return e.checkpoint(st)
}

// Crash ends e the way a killed process would, as far as the file is
// concerned: acknowledged writes stay (they are committed), but no final
// checkpoint is written, so the next Open replays the log. Buffered writes
// still queued are committed too. It exists for tests; e is unusable
// afterwards.
func (e *Engine) Crash() error { return e.shutdown(false) }

// bootstrapNew fills a replica's missing file from the shared log's newest
// snapshot, if there is one: a new replica starts from it rather than from
// the log's first record.
func (e *Engine) bootstrapNew() error {
	if e.path == "" {
		return nil // in memory: read the log from its start, bootstrap when it was truncated
	}
	if _, err := os.Stat(e.path); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.fetchSnapshot(ctx); err != nil {
		e.cfg.Logger.Warn("meterdb replica: no snapshot could be read; starting from the log's first record", "err", err)
	}
	return nil
}

// applyNow is the time for decisions that must agree between replicas:
// the apply time of a replicated state, the clock otherwise.
func (e *Engine) applyNow(st *state) int64 {
	if st.rs != nil {
		return st.rs.at.Load()
	}
	return e.cfg.Now().Unix()
}
