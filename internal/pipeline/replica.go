package pipeline

// The replicated mode of the write path (Config.Shared set). Writers
// validate as always, then append a record (internal/record) to the
// shared log and wait until their own replica applied it; one applier per
// state reads the shared log in order and applies every record, its own
// and other writers', through the stages of commit.go:
//
//	writer:  validate -> combine -> append to the shared log -> wait for the outcome
//	applier: read -> reserve identifiers -> sequence -> local log -> apply -> outcome
//
// Events records are combined (replica_combine.go): while
// Config.SharedInflight records of this process are being appended, the
// events of writers that arrive queue, and the next append carries all of
// them as one record.
//
// Its invariants, on top of commit.go's:
//
//  1. Every replica that applied the same prefix of the shared log holds
//     the same meters, aggregates, identifiers, cancellations and
//     key-value records: the apply of a record depends only on the state
//     and the record. Time-dependent decisions (dedupe and cancel windows,
//     key-value expiry, pruning) use the apply time, the greatest writer
//     stamp of the prefix, never the applier's clock; event sequence
//     numbers are assigned at apply, in log order; meter ids are chosen by
//     the writer and carried in the record.
//  2. A record that changes nothing (all its events duplicates, a refused
//     cancellation, a meter change refused at apply) leaves no trace in
//     the local state.
//  3. The local log records, with every change it applies, the shared log
//     position and apply time it covers, in the same commit (a key-value
//     record in namespace PositionNS): a restart reads on from that
//     position and repeats nothing. Meter changes, which the store writes
//     in their own transaction, may run ahead of the position: applying
//     a meter create whose id exists is a no-op, and renames and status
//     changes set absolute values.
//  4. The applier is the only writer of a replicated state; it holds no
//     lifecycle lock (Close stops it before it closes the state), and
//     writers hold none while they wait for it.
//  5. A combined record holds whole writers' batches, each one's events
//     contiguous and in the writer's order, and is applied in one local
//     commit: a writer's batch is applied entirely or not at all, as a
//     record of its own would be. Each writer answers from the outcomes
//     of its own events only; a failed append fails every writer of the
//     record with the error a record of its own would have had.
//     Records are cut between batches to stay within the log's record
//     limit (sharedlog.Limited); a batch above it alone fails.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/internal/record"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/sharedlog"
	"github.com/meterdb/meterdb/store"
)

// PositionNS is the key-value namespace where a replicated database keeps
// the shared log position its local state covers (key "applied": 8-byte
// position, 8-byte apply time, big-endian). It is reserved.
const PositionNS = "meterdb.replica"

// replicator is the part of the replicated mode that outlives a state:
// the writers' side.
type replicator struct {
	log    sharedlog.Log
	origin uint64        // this process's records carry it
	nonce  atomic.Uint64 // the last nonce given to a record

	mu       sync.Mutex // guards the fields below and comb's
	comb     combiner
	waiters  map[uint64]chan outcome
	notify   chan struct{} // closed when applied advances; nil while nobody waits
	applyErr error         // why the applier is stuck, nil while it is not

	applied atomic.Uint64 // position applied by the current state
	stamp   atomic.Int64  // writer stamp of the record at applied

	closeOnce sync.Once
	closed    chan struct{}
}

// outcome is what the apply of a record decided, for its writer.
type outcome struct {
	errs  []error     // events: one per event of the record
	err   error       // cancel, meter changes
	m     meter.Meter // meter changes
	value []byte      // claim: the value that holds the key
	won   bool        // claim: the claim's own value
	// lost is set instead of an outcome when the replica replaced its
	// state with a snapshot while the writer waited: the snapshot may
	// cover the record, whose outcome is then unknown.
	lost error
}

func newReplicator(l sharedlog.Log, inflight int) *replicator {
	var b [8]byte
	rand.Read(b[:])
	if inflight <= 0 {
		inflight = defaultInflight
	}
	return &replicator{log: l, origin: binary.BigEndian.Uint64(b[:]), comb: combiner{inflight: inflight},
		waiters: map[uint64]chan outcome{}, closed: make(chan struct{})}
}

// replState is the applier's state, one per state.
type replState struct {
	applied atomic.Uint64 // the position the state covers
	at      atomic.Int64  // the apply time: greatest stamp up to applied
	cancel  context.CancelFunc
	stopped chan struct{} // closed when the applier exited
	snaps   chan struct{} // closed when the snapshot loop exited; nil without one
}

// do appends rec to the shared log and waits until the local applier
// applied it; appended, when not nil, is called once the append returned.
// An error means the record may or may not apply; one wrapping
// store.ErrUnavailable means the shared log could not be reached.
func (e *Engine) do(ctx context.Context, rec *record.Record, appended func()) (outcome, error) {
	r := e.repl
	rec.Origin = r.origin
	rec.Nonce = r.nonce.Add(1)
	ch := make(chan outcome, 1)
	r.mu.Lock()
	r.waiters[rec.Nonce] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.waiters, rec.Nonce)
		r.mu.Unlock()
	}()
	_, err := r.log.Append(ctx, record.Append(nil, rec))
	if appended != nil {
		appended()
	}
	if err != nil {
		if errors.Is(err, sharedlog.ErrUnavailable) {
			return outcome{}, fmt.Errorf("meterdb: appending to the shared log: %w: %w", store.ErrUnavailable, err)
		}
		if errors.Is(err, sharedlog.ErrClosed) {
			return outcome{}, ErrClosed
		}
		return outcome{}, fmt.Errorf("meterdb: appending to the shared log: %w", err)
	}
	select {
	case o := <-ch:
		return o, o.lost
	case <-ctx.Done():
		return outcome{}, waitErr(ctx)
	case <-r.closed:
		return outcome{}, ErrClosed
	}
}

// deliver hands the outcome of this process's record nonce to its writer,
// if it still waits.
func (r *replicator) deliver(nonce uint64, o outcome) {
	r.mu.Lock()
	ch := r.waiters[nonce]
	r.mu.Unlock()
	if ch != nil {
		select {
		case ch <- o:
		default: // delivered before, by an apply a restart repeats
		}
	}
}

// loseWaiters answers every waiting writer with an unknown outcome: the
// replica bootstrapped from a snapshot, which may cover their records.
func (r *replicator) loseWaiters() {
	err := fmt.Errorf("meterdb: the replica restarted from a snapshot while the write waited; it may be recorded (retry it with the same identifiers): %w", store.ErrUnavailable)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ch := range r.waiters {
		select {
		case ch <- outcome{lost: err}:
		default:
		}
	}
}

// advance publishes the applied position and wakes its waiters.
func (r *replicator) advance(pos uint64, stamp int64) {
	r.applied.Store(pos)
	r.stamp.Store(stamp)
	r.mu.Lock()
	r.applyErr = nil
	if r.notify != nil {
		close(r.notify)
		r.notify = nil
	}
	r.mu.Unlock()
}

// WaitApplied returns once the state applied the shared log's last
// position as of the call: after it, a read sees every write any replica
// acknowledged before the call. It returns at once for a database without
// a shared log. Errors wrap store.ErrUnavailable when the log cannot be
// reached.
func (e *Engine) WaitApplied(ctx context.Context) error {
	r := e.repl
	if r == nil {
		return nil
	}
	last, err := r.log.Last(ctx)
	if err != nil {
		if errors.Is(err, sharedlog.ErrUnavailable) {
			return fmt.Errorf("meterdb: asking the shared log for its last position: %w: %w", store.ErrUnavailable, err)
		}
		return fmt.Errorf("meterdb: asking the shared log for its last position: %w", err)
	}
	for {
		r.mu.Lock()
		if r.applied.Load() >= last {
			r.mu.Unlock()
			return nil
		}
		if r.notify == nil {
			r.notify = make(chan struct{})
		}
		ch := r.notify
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-r.closed:
			return ErrClosed
		}
	}
}

// startReplica starts the applier of st from position pos and apply time
// at, and for a file-backed state the snapshot loop.
func (e *Engine) startReplica(st *state, pos uint64, at int64) {
	ctx, cancel := context.WithCancel(context.Background())
	rs := &replState{cancel: cancel, stopped: make(chan struct{})}
	rs.applied.Store(pos)
	rs.at.Store(at)
	st.rs = rs
	e.repl.advance(pos, at)
	go e.applyLoop(ctx, st)
	if st.file != nil && !st.readOnly {
		rs.snaps = make(chan struct{})
		go e.snapshotLoop(ctx, st)
	}
}

// stop stops the applier and the snapshot loop and waits for them.
func (rs *replState) stop() {
	rs.cancel()
	<-rs.stopped
	if rs.snaps != nil {
		<-rs.snaps
	}
}

// applyLoop reads the shared log and applies it to st until st closes.
// A local failure is retried from the position st covers; a log that no
// longer holds that position makes the engine bootstrap from a snapshot.
func (e *Engine) applyLoop(ctx context.Context, st *state) {
	defer close(st.rs.stopped)
	wait := 10 * time.Millisecond
	for {
		err := e.repl.log.Read(ctx, st.rs.applied.Load(), func(pos uint64, rec []byte) error {
			return e.applyRecord(st, pos, rec)
		})
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, sharedlog.ErrTruncated):
			e.cfg.Logger.Warn("meterdb replica: the shared log no longer holds what this replica needs; bootstrapping from a snapshot", "err", err)
			e.rebuild(true)
			return
		case errors.Is(err, store.ErrFailed):
			e.reopen()
			return
		}
		e.repl.mu.Lock()
		e.repl.applyErr = err
		e.repl.mu.Unlock()
		e.cfg.Logger.Error("meterdb replica: applying the shared log failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// positionKV is the key-value write recording that the local state covers
// the shared log up to pos, at apply time at.
func positionKV(pos uint64, at int64) store.KVWrite {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 16), pos)
	v = binary.BigEndian.AppendUint64(v, uint64(at))
	return store.KVWrite{NS: PositionNS, Key: "applied", Value: v, Expires: math.MaxInt64}
}

// readPosition returns the position and apply time a store covers.
func readPosition(sdb *store.DB) (uint64, int64, error) {
	v, ok, err := sdb.GetKV(PositionNS, "applied", math.MinInt64)
	if err != nil || !ok {
		return 0, 0, err
	}
	if len(v) != 16 {
		return 0, 0, fmt.Errorf("%w: replica position record of %d bytes", store.ErrCorrupt, len(v))
	}
	return binary.BigEndian.Uint64(v), int64(binary.BigEndian.Uint64(v[8:])), nil
}

// applyRecord applies the shared log's record at pos to st. An error
// means nothing of the record was applied.
func (e *Engine) applyRecord(st *state, pos uint64, data []byte) error {
	r, err := record.Decode(data)
	if err != nil {
		return fmt.Errorf("meterdb: shared log record %d: %w", pos, err)
	}
	at := max(st.rs.at.Load(), r.Stamp)
	var pkv []store.KVWrite
	if st.file != nil {
		pkv = []store.KVWrite{positionKV(pos, at)}
	}
	var o outcome
	switch r.Kind {
	case record.KindEvents:
		o.errs, err = e.applyEvents(st, r, at, pkv)
	case record.KindCancel:
		o.err, err = e.applyCancel(st, r, at, pkv)
	case record.KindMeterCreate, record.KindMeterName, record.KindMeterStatus:
		o.m, o.err, err = e.applyMeter(st, r, at)
		if err == nil && o.err == nil && pkv != nil {
			err = st.log.WriteKV(pkv)
		}
	case record.KindKV:
		ws := make([]store.KVWrite, 0, len(r.KV)+1)
		for _, w := range r.KV {
			ws = append(ws, store.KVWrite{NS: w.NS, Key: w.Key, Value: w.Value, Expires: w.Expires, Delete: w.Delete})
		}
		err = st.log.WriteKV(append(ws, pkv...))
	case record.KindClaim:
		w := r.KV[0]
		var ok bool
		o.value, ok, err = st.log.GetKV(w.NS, w.Key, at)
		if err == nil && !ok {
			o.value, o.won = w.Value, true
			err = st.log.WriteKV(append([]store.KVWrite{{NS: w.NS, Key: w.Key, Value: w.Value, Expires: w.Expires}}, pkv...))
		}
	}
	if err != nil {
		return e.failed(st, err)
	}
	st.rs.at.Store(at)
	st.rs.applied.Store(pos)
	e.repl.advance(pos, r.Stamp)
	if r.Origin == e.repl.origin {
		e.repl.deliver(r.Nonce, o)
	}
	return nil
}

// applyEvents applies an events record at apply time at: reserve ->
// sequence -> local log -> apply, as Record does for a local database. It
// returns one error per event of the record: nil for the applied ones, a
// duplicate error for the others.
func (e *Engine) applyEvents(st *state, r *record.Record, at int64, pkv []store.KVWrite) ([]error, error) {
	n := len(r.Events)
	errs := make([]error, n)
	sc := getScratch(n)
	defer putScratch(sc)
	for i := range r.Events {
		ev := &r.Events[i]
		m, ok := st.reg.BySeq(ev.Meter)
		if !ok {
			return nil, fmt.Errorf("%w: shared log event names meter %d, which does not exist", store.ErrCorrupt, ev.Meter)
		}
		if st.tooOld(ev.Timestamp, at) { // the writer's clock lagged the log's by over an hour (freeze.go)
			errs[i] = tooOldError()
			e.stats.meters.Get(m.Seq).Reject(rejectCode(event.CodeTooFarInPast))
			continue
		}
		sc.cands = append(sc.cands, candidate{i: i, m: m, v: event.Validated{Customer: ev.Customer, Value: ev.Value, Timestamp: ev.Timestamp}})
		sc.ids = append(sc.ids, ev.Identifier)
	}
	res := &sc.res
	if err := st.reserve(res, sc.ids, at, e.cfg.DedupeWindow); err != nil {
		return nil, err
	}
	g := st.sequence(sc, errs, at)
	for k, c := range sc.cands {
		if !res.Reserved[k] {
			e.stats.meters.Get(c.m.Seq).Duplicate.Add(1)
		}
	}
	if len(g.Events) == 0 {
		return errs, nil
	}
	st.applyMu.RLock()
	c, err := st.log.Append(g, pkv)
	if err != nil {
		st.applyMu.RUnlock()
		st.idx.ReleaseBatch(res)
		return nil, fmt.Errorf("meterdb: applying events: %w", err)
	}
	<-c.done()
	if err := e.finishRecord(st, c, res, sc.items, at); err != nil {
		return nil, err
	}
	return errs, nil
}

// applyCancel applies a cancel record at apply time at. The first result
// is the cancellation's outcome, the second a failure to apply it.
func (e *Engine) applyCancel(st *state, r *record.Record, at int64, pkv []store.KVWrite) (error, error) {
	m, ok := st.reg.BySeq(r.Cancel.Meter)
	if !ok {
		return nil, fmt.Errorf("%w: shared log cancellation names meter %d, which does not exist", store.ErrCorrupt, r.Cancel.Meter)
	}
	found, err := e.claimCancel(st, m, r.Cancel.Identifier, at)
	if err != nil {
		var ee *event.Error
		if errors.As(err, &ee) {
			return err, nil
		}
		return nil, err
	}
	c, finish, err := e.logCancel(st, m, found, at, pkv)
	if err == nil {
		<-c.done()
		err = finish()
	}
	if err != nil {
		return nil, fmt.Errorf("meterdb: applying a cancellation: %w", err)
	}
	return nil, nil
}

// applyMeter applies a meter record at apply time at. The second result
// is a refusal (a *meter.Error: the event name is taken, no such meter),
// the third a failure to apply.
func (e *Engine) applyMeter(st *state, r *record.Record, at int64) (meter.Meter, error, error) {
	now := time.Unix(at, 0)
	var m meter.Meter
	var err error
	switch r.Kind {
	case record.KindMeterCreate:
		if m, err := st.reg.Get(r.Meter.ID); err == nil {
			return m, nil, nil // applied before a restart
		}
		p := meter.Params{
			DisplayName: r.Meter.DisplayName, EventName: r.Meter.EventName, Formula: meter.Formula(r.Meter.Formula),
			CustomerKey: r.Meter.CustomerKey, ValueKey: r.Meter.ValueKey, EventTimeWindow: meter.Window(r.Meter.EventTimeWindow),
		}
		m, err = st.reg.CreateWithID(p, r.Meter.ID, now, st.log.SaveMeter)
	case record.KindMeterName:
		m, err = st.reg.SetDisplayName(r.Meter.ID, r.Meter.DisplayName, now, st.log.SaveMeter)
	case record.KindMeterStatus:
		s := meter.Active
		if r.Meter.Inactive {
			s = meter.Inactive
		}
		m, err = st.reg.SetStatus(r.Meter.ID, s, now, st.log.SaveMeter)
	}
	var me *meter.Error
	if errors.As(err, &me) {
		return meter.Meter{}, err, nil
	}
	return m, nil, err
}

// Writers.

// recordShared is Record's replicated path after validation: it appends
// the valid events of sc as one record and answers from their apply.
func (e *Engine) recordShared(ctx context.Context, st *state, b *Batch, now time.Time, sc *batchScratch, errs []error) ([]error, error) {
	if len(sc.cands) > 0 {
		rec := &record.Record{Kind: record.KindEvents, Stamp: now.Unix(), Events: make([]record.Event, len(sc.cands))}
		for k, c := range sc.cands {
			rec.Events[k] = record.Event{Meter: c.m.Seq, Customer: c.v.Customer, Identifier: sc.ids[k], Value: c.v.Value, Timestamp: c.v.Timestamp}
		}
		// Rejections are counted here, duplicates by the applier.
		e.countRejected(st, b, errs)
		oerrs, err := e.doEvents(ctx, rec)
		if err != nil {
			return nil, err
		}
		accepted := false
		for k, c := range sc.cands {
			if oerrs[k] != nil {
				errs[c.i] = oerrs[k]
				continue
			}
			accepted = true
			b.fill(c.i, sc.ids[k], c.v.Timestamp)
		}
		// The key-value records answer the apply's outcome, so they are
		// a second record: unlike Record's local path, a failure here
		// comes after the events were recorded.
		if accepted && b.KV != nil {
			kvs, err := b.KV(errs)
			if err != nil {
				return nil, err
			}
			if len(kvs) > 0 {
				if _, err := e.do(ctx, kvRecord(kvs, now), nil); err != nil {
					return nil, err
				}
			}
		}
		return errs, nil
	}
	e.countRejected(st, b, errs)
	return errs, nil
}

// kvRecord returns the record of the key-value writes ws.
func kvRecord(ws []store.KVWrite, now time.Time) *record.Record {
	rec := &record.Record{Kind: record.KindKV, Stamp: now.Unix(), KV: make([]record.KV, len(ws))}
	for i, w := range ws {
		rec.KV[i] = record.KV{NS: w.NS, Key: w.Key, Value: w.Value, Expires: w.Expires, Delete: w.Delete}
	}
	return rec
}

// cancelShared is Cancel's replicated path.
func (e *Engine) cancelShared(ctx context.Context, m *meter.Meter, identifier string) error {
	o, err := e.do(ctx, &record.Record{Kind: record.KindCancel, Stamp: e.cfg.Now().Unix(),
		Cancel: record.Cancel{Meter: m.Seq, Identifier: identifier}}, nil)
	if err != nil {
		return err
	}
	return o.err
}

// meterShared appends a meter record and returns the meter its apply
// produced.
func (e *Engine) meterShared(ctx context.Context, rec *record.Record) (meter.Meter, error) {
	if _, err := e.enterWrite(); err != nil {
		return meter.Meter{}, err
	}
	rec.Stamp = e.cfg.Now().Unix()
	o, err := e.do(ctx, rec, nil)
	if err != nil {
		return meter.Meter{}, err
	}
	return o.m, o.err
}

// enterWrite reports why the engine takes no writes, if it does not,
// without holding the lifecycle lock.
func (e *Engine) enterWrite() (*state, error) {
	st, err := e.enter()
	if err != nil {
		return nil, err
	}
	defer e.life.RUnlock()
	return st, st.writable()
}

// ClaimKV stores value under (ns, key) until expires (unix seconds) unless
// an unexpired value is stored there: then it returns that value and
// false. In a replicated database the first claim in log order wins on
// every replica.
func (e *Engine) ClaimKV(ctx context.Context, ns, key string, value []byte, expires int64) ([]byte, bool, error) {
	if e.repl != nil {
		if _, err := e.enterWrite(); err != nil {
			return nil, false, err
		}
		now := e.cfg.Now()
		o, err := e.do(ctx, &record.Record{Kind: record.KindClaim, Stamp: now.Unix(),
			KV: []record.KV{{NS: ns, Key: key, Value: value, Expires: expires}}}, nil)
		if err != nil {
			return nil, false, err
		}
		return o.value, o.won, nil
	}
	var (
		old []byte
		won bool
	)
	err := e.writeOp(func(st *state) error {
		st.claimMu.Lock()
		defer st.claimMu.Unlock()
		v, ok, err := st.log.GetKV(ns, key, e.cfg.Now().Unix())
		if err != nil || ok {
			old = v
			return err
		}
		won = true
		return st.log.PutKV(ns, key, value, expires)
	})
	if err != nil {
		return nil, false, err
	}
	if won {
		return append([]byte(nil), value...), true, nil
	}
	return old, false, nil
}

// Snapshots.

// snapshotLoop writes a snapshot of st every SnapshotInterval (with
// jitter) when the shared log's newest one is older than the interval:
// replicas take turns.
func (e *Engine) snapshotLoop(ctx context.Context, st *state) {
	defer close(st.rs.snaps)
	every := e.cfg.SnapshotInterval
	for {
		wait := every/2 + time.Duration(mrand.Int64N(int64(every)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		info, err := e.repl.log.SnapshotInfo(ctx)
		if err == nil && time.Since(info.Time) < every {
			continue
		}
		if err != nil && !errors.Is(err, sharedlog.ErrNoSnapshot) {
			e.cfg.Logger.Warn("meterdb replica: reading the newest snapshot's description failed", "err", err)
			continue
		}
		if _, err := e.putSnapshot(ctx, st); err != nil && ctx.Err() == nil {
			e.cfg.Logger.Error("meterdb replica: writing a snapshot failed", "err", err)
		}
	}
}

// Snapshot writes a snapshot of this replica's state to the shared log
// now and returns the position it covers. It needs a file-backed
// replicated database.
func (e *Engine) Snapshot(ctx context.Context) (uint64, error) {
	st, err := e.enter()
	if err != nil {
		return 0, err
	}
	defer e.life.RUnlock()
	if e.repl == nil {
		return 0, errors.New("meterdb: Snapshot needs a shared log (Options.Log)")
	}
	if st.file == nil {
		return 0, ErrInMemory
	}
	return e.putSnapshot(ctx, st)
}

// putSnapshot copies st's file (store.DB.Backup) to a temporary file
// beside it, reads the position the copy covers and stores the copy as the
// shared log's snapshot at that position.
func (e *Engine) putSnapshot(ctx context.Context, st *state) (uint64, error) {
	f, err := os.CreateTemp(filepath.Dir(e.path), filepath.Base(e.path)+".snapshot-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := st.file.Backup(f); err != nil {
		return 0, fmt.Errorf("meterdb: copying the replica for a snapshot: %w", err)
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	copyDB, err := store.Open(f.Name(), &store.Options{ReadOnly: true, LockTimeout: time.Second})
	if err != nil {
		return 0, fmt.Errorf("meterdb: reading the snapshot copy: %w", err)
	}
	pos, _, err := readPosition(copyDB)
	copyDB.Close()
	if err != nil || pos == 0 {
		return 0, err
	}
	r, err := os.Open(f.Name())
	if err != nil {
		return 0, err
	}
	defer r.Close()
	if err := e.repl.log.PutSnapshot(ctx, pos, r); err != nil {
		return 0, fmt.Errorf("meterdb: storing a snapshot: %w", err)
	}
	e.cfg.Logger.Info("meterdb replica wrote a snapshot", "pos", pos)
	return pos, nil
}

// fetchSnapshot writes the shared log's newest snapshot to the engine's
// file (a temporary one for a database without a path), replacing what
// is there. It reports false when the log has no snapshot.
func (e *Engine) fetchSnapshot(ctx context.Context) (bool, error) {
	info, rc, err := e.repl.log.Snapshot(ctx)
	if errors.Is(err, sharedlog.ErrNoSnapshot) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("meterdb: reading a snapshot: %w", err)
	}
	defer rc.Close()
	if e.path == "" {
		dir, err := os.MkdirTemp("", "meterdb-replica-")
		if err != nil {
			return false, err
		}
		e.tempDir, e.path = dir, filepath.Join(dir, "replica.db")
	}
	tmp := e.path + ".bootstrap"
	f, err := os.Create(tmp)
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp)
	n, err := io.Copy(f, rc)
	if err == nil && n != info.Size && info.Size > 0 {
		err = fmt.Errorf("snapshot of %d bytes, read %d", info.Size, n)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, e.path)
	}
	if err != nil {
		return false, fmt.Errorf("meterdb: reading a snapshot: %w", err)
	}
	e.cfg.Logger.Info("meterdb replica bootstrapped from a snapshot", "pos", info.Pos, "bytes", n)
	return true, nil
}

// ReplicaStats describes a replicated database's progress.
type ReplicaStats struct {
	Applied uint64 // the shared log position applied
	// Last is the shared log's newest position; 0 when it could not be
	// asked (LastErr says why).
	Last    uint64
	LastErr error
	// Stamp is the writer stamp of the record at Applied (unix seconds).
	Stamp int64
	// ApplyErr is why the applier is stuck, nil while it is not.
	ApplyErr error
}

// replicaStats asks the shared log for its last position, waiting at
// most a second.
func (e *Engine) replicaStats() *ReplicaStats {
	r := e.repl
	s := &ReplicaStats{Applied: r.applied.Load(), Stamp: r.stamp.Load()}
	r.mu.Lock()
	s.ApplyErr = r.applyErr
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s.Last, s.LastErr = r.log.Last(ctx)
	return s
}
