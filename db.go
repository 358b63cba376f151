package meterdb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meterdb/meterdb/aggregate"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/internal/dedupe"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/store"
)

// DB is a metering database. It is safe for concurrent use.
//
// Lock order: the lifecycle lock (read side for every operation), the
// meter registry's writer lock, then an aggregate shard or dedupe shard,
// then the journal.
type DB struct {
	opts  Options
	reg   *meter.Registry
	table *aggregate.Table
	idx   *dedupe.Index
	j     journal

	seq      atomic.Uint64 // last assigned event sequence
	idPrefix string
	idCount  atomic.Uint64

	life   sync.RWMutex // read-held by every operation; write-held by Close
	closed bool         // guarded by life

	// File-backed databases only: applyMu is read-held from a group's
	// append to its apply, and write-held by the checkpointer while it
	// takes the changed buckets, so that a checkpoint covers exactly the
	// log up to a location.
	durable bool
	applyMu sync.RWMutex
	ckpt    *checkpointer

	cancelMu  sync.Mutex       // guards cancelled
	cancelled map[uint64]int64 // receipt time of cancelled (or being cancelled) events, by sequence

	marksMu   sync.Mutex // guards marks
	marks     []mark     // receipt-time marks, oldest first, for pruning
	lastMark  atomic.Int64
	lastPrune atomic.Int64

	accepted, rejected, duplicates, cancels atomic.Int64
}

// mark says that groups at loc and later were received at or after t.
type mark struct {
	t   int64 // unix seconds
	loc uint64
}

// Open opens the database at path, creating it when missing. An empty path
// gives a database that lives in memory only and is lost on Close; it keeps
// each event of the dedupe window in memory and suits tests and
// short-lived processes.
func Open(path string, opts *Options) (*DB, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	reg, err := meter.NewRegistry(nil)
	if err != nil {
		return nil, err
	}
	db := &DB{
		opts:      o,
		reg:       reg,
		table:     aggregate.NewTable(o.Shards),
		idx:       dedupe.New(),
		j:         newMemJournal(),
		idPrefix:  "mev_" + meter.RandomBase62(16) + "_",
		cancelled: map[uint64]int64{},
	}
	if path != "" {
		if err := db.openFile(path); err != nil {
			return nil, err
		}
	}
	return db, nil
}

// enter starts an operation; it fails after Close. Every successful enter
// is paired with exit.
func (db *DB) enter() error {
	db.life.RLock()
	if db.closed {
		db.life.RUnlock()
		return ErrClosed
	}
	return nil
}

func (db *DB) exit() { db.life.RUnlock() }

// Close waits for operations in flight, makes everything accepted durable
// and releases the database. Calling it again returns nil; every other
// method returns ErrClosed after it.
func (db *DB) Close() error {
	db.life.Lock()
	defer db.life.Unlock()
	if db.closed {
		return nil
	}
	db.closed = true
	if db.durable {
		return db.closeFile()
	}
	return db.j.Close()
}

// Sync makes every acknowledged event durable. With the default durability
// every acknowledged event already is, and Sync returns at once.
func (db *DB) Sync() error {
	if err := db.enter(); err != nil {
		return err
	}
	defer db.exit()
	return db.j.Sync()
}

func (db *DB) now() time.Time { return db.opts.Now() }

// CreateMeter creates a meter. Its event name must not be used by any
// other meter, active or not.
func (db *DB) CreateMeter(ctx context.Context, p meter.Params) (meter.Meter, error) {
	if err := db.enter(); err != nil {
		return meter.Meter{}, err
	}
	defer db.exit()
	return db.reg.Create(p, db.now(), db.j.SaveMeter)
}

// Meter returns the meter with the given id; the error unwraps to
// meter.ErrNotFound when there is none.
func (db *DB) Meter(ctx context.Context, id string) (meter.Meter, error) {
	if err := db.enter(); err != nil {
		return meter.Meter{}, err
	}
	defer db.exit()
	return db.reg.Get(id)
}

// MeterByEventName returns the meter that events named name go to; the
// error unwraps to meter.ErrNotFound when there is none.
func (db *DB) MeterByEventName(ctx context.Context, name string) (meter.Meter, error) {
	if err := db.enter(); err != nil {
		return meter.Meter{}, err
	}
	defer db.exit()
	m, ok := db.reg.Lookup(name)
	if !ok {
		return meter.Meter{}, &meter.Error{Code: meter.CodeResourceMissing, Param: "event_name", Err: meter.ErrNotFound,
			Message: fmt.Sprintf("No meter has event_name %q.", name)}
	}
	return *m, nil
}

// UpdateMeter changes a meter's display name, the only mutable field.
func (db *DB) UpdateMeter(ctx context.Context, id, displayName string) (meter.Meter, error) {
	if err := db.enter(); err != nil {
		return meter.Meter{}, err
	}
	defer db.exit()
	return db.reg.SetDisplayName(id, displayName, db.now(), db.j.SaveMeter)
}

// DeactivateMeter stops a meter from accepting events; its data stays
// queryable. Deactivating an inactive meter returns it unchanged.
func (db *DB) DeactivateMeter(ctx context.Context, id string) (meter.Meter, error) {
	return db.setStatus(id, meter.Inactive)
}

// ReactivateMeter lets an inactive meter accept events again and clears
// its DeactivatedAt. Reactivating an active meter returns it unchanged.
func (db *DB) ReactivateMeter(ctx context.Context, id string) (meter.Meter, error) {
	return db.setStatus(id, meter.Active)
}

func (db *DB) setStatus(id string, st meter.Status) (meter.Meter, error) {
	if err := db.enter(); err != nil {
		return meter.Meter{}, err
	}
	defer db.exit()
	return db.reg.SetStatus(id, st, db.now(), db.j.SaveMeter)
}

// ListMeters returns a page of meters, newest first; see meter.ListParams.
func (db *DB) ListMeters(ctx context.Context, p meter.ListParams) (page []meter.Meter, hasMore bool, err error) {
	if err := db.enter(); err != nil {
		return nil, false, err
	}
	defer db.exit()
	return db.reg.List(p)
}

// Record validates one event, records it and returns it with its
// Identifier and Timestamp filled in. A rejected event leaves no trace; its
// error is an *event.Error carrying the Stripe code. Record returns after
// the event is applied to the aggregates (and, for a file-backed database,
// as durable as Options say).
func (db *DB) Record(ctx context.Context, ev event.Event) (event.Event, error) {
	evs := [1]event.Event{ev}
	errs, err := db.RecordBatch(ctx, evs[:])
	if err != nil {
		return event.Event{}, err
	}
	if errs[0] != nil {
		return event.Event{}, errs[0]
	}
	return evs[0], nil
}

// RecordBatch validates every event and records the valid ones together,
// as one group. It returns one error per event, nil for the accepted ones,
// and fills in the Identifier and Timestamp of accepted events in evs that
// lacked them. The second result reports a failure of the whole batch (a
// closed database, an I/O error), in which case nothing was recorded.
// Payload maps are read, not retained.
func (db *DB) RecordBatch(ctx context.Context, evs []event.Event) ([]error, error) {
	if err := db.enter(); err != nil {
		return nil, err
	}
	defer db.exit()
	now := db.now()
	nowSec := now.Unix()
	errs := make([]error, len(evs))

	// Validate, and give every valid event its identifier.
	sc := getScratch(len(evs))
	defer putScratch(sc)
	cands, ids := sc.cands, sc.ids
	for i := range evs {
		ev := &evs[i]
		m, _ := db.reg.Lookup(ev.Name)
		v, err := event.Validate(ev, m, now)
		if err != nil {
			errs[i] = err
			continue
		}
		id := ev.Identifier
		if id == "" {
			id = db.newIdentifier()
		}
		cands = append(cands, candidate{i: i, m: m, v: v})
		ids = append(ids, id)
	}
	sc.cands, sc.ids = cands, ids // for putScratch to clear
	if len(cands) == 0 {
		db.countRejected(errs)
		return errs, nil
	}

	// Reserve the identifiers, each dedupe shard locked once.
	dup := duplicateCheck{db: db, now: nowSec}
	var res dedupe.Reservation
	err := db.idx.ReserveBatch(&res, ids, func(i int, loc uint64) (bool, error) {
		dup.id = ids[i]
		return dup.confirm(loc)
	})
	if err != nil {
		return nil, err
	}
	reserved := res.Reserved
	g := &store.Group{Events: make([]store.Event, 0, len(cands))}
	items := sc.items
	for k, c := range cands {
		if !reserved[k] {
			errs[c.i] = &event.Error{Code: event.CodeDuplicate, Param: "identifier", Err: event.ErrDuplicate,
				Message: fmt.Sprintf("A meter event with identifier %q has already been submitted.", ids[k])}
			continue
		}
		g.Events = append(g.Events, store.Event{
			Meter: c.m.Seq, Customer: c.v.Customer, Identifier: ids[k],
			Value: c.v.Value, Timestamp: c.v.Timestamp, Received: nowSec,
		})
		items = append(items, aggregate.Item{
			Key:  aggregate.Key{Meter: c.m.Seq, Customer: c.v.Customer},
			Mode: aggregate.ModeOf(string(c.m.Formula), string(c.m.EventTimeWindow)),
		})
	}
	sc.items = items
	if len(g.Events) == 0 {
		db.countRejected(errs)
		return errs, nil
	}
	last := db.seq.Add(uint64(len(g.Events)))
	for i := range g.Events {
		e := &g.Events[i]
		e.Seq = last - uint64(len(g.Events)) + 1 + uint64(i)
		items[i].Entry = aggregate.Entry{Seq: e.Seq, Timestamp: e.Timestamp, Value: e.Value}
	}

	// Commit, apply, then make the identifiers findable.
	if db.durable {
		db.applyMu.RLock()
	}
	loc, err := db.j.Append(g)
	if err != nil {
		if db.durable {
			db.applyMu.RUnlock()
		}
		db.idx.ReleaseBatch(&res)
		return nil, fmt.Errorf("meterdb: recording events: %w", err)
	}
	db.table.ApplyBatch(items)
	if db.durable {
		db.applyMu.RUnlock()
	}
	db.idx.CommitBatch(&res, loc)
	for k, c := range cands {
		if reserved[k] {
			ev := &evs[c.i]
			ev.Identifier = ids[k]
			if ev.Timestamp.IsZero() {
				ev.Timestamp = time.Unix(c.v.Timestamp, 0).UTC()
			}
		}
	}
	db.accepted.Add(int64(len(g.Events)))
	if len(g.Events) < len(evs) {
		db.countRejected(errs)
	}
	db.maintain(nowSec, loc)
	return errs, nil
}

// candidate is a valid event of a batch, before its identifier is
// reserved.
type candidate struct {
	i int // index into the batch
	m *meter.Meter
	v event.Validated
}

// batchScratch holds RecordBatch's per-call slices between calls.
type batchScratch struct {
	cands []candidate
	ids   []string
	items []aggregate.Item
}

var scratchPool = sync.Pool{New: func() any { return new(batchScratch) }}

// getScratch returns empty scratch slices with room for n events.
func getScratch(n int) *batchScratch {
	sc := scratchPool.Get().(*batchScratch)
	if cap(sc.cands) < n {
		sc.cands, sc.ids, sc.items = make([]candidate, 0, n), make([]string, 0, n), make([]aggregate.Item, 0, n)
	}
	return sc
}

// putScratch returns sc to the pool, dropping its references to the
// batch's strings; very large slices are left to the collector.
func putScratch(sc *batchScratch) {
	if cap(sc.cands) > 1<<16 {
		return
	}
	clear(sc.ids)
	clear(sc.items)
	sc.cands, sc.ids, sc.items = sc.cands[:0], sc.ids[:0], sc.items[:0]
	scratchPool.Put(sc)
}

func (db *DB) countRejected(errs []error) {
	for _, err := range errs {
		if err == nil {
			continue
		}
		if errors.Is(err, event.ErrDuplicate) {
			db.duplicates.Add(1)
		} else {
			db.rejected.Add(1)
		}
	}
}

// duplicateCheck confirms dedupe candidates for identifier id: an event
// with that identifier stored at loc and received within the window.
// The group read last is kept for the next candidate: a batch replayed
// whole (a client's retry) finds all its identifiers in one group, which
// is then read and decoded once, not once per event.
type duplicateCheck struct {
	db  *DB
	now int64
	id  string

	loc uint64       // of g
	g   *store.Group // the group read last, or nil; groups are immutable
}

func (d *duplicateCheck) confirm(loc uint64) (bool, error) {
	if d.g == nil || d.loc != loc {
		g, err := d.db.j.Group(loc)
		if err != nil || g == nil {
			return false, err
		}
		d.loc, d.g = loc, g
	}
	for i := range d.g.Events {
		if e := &d.g.Events[i]; e.Identifier == d.id {
			return d.now-e.Received < int64(d.db.opts.DedupeWindow/time.Second), nil
		}
	}
	return false, nil
}

// findEvent returns the event with identifier id in the group at loc.
func (db *DB) findEvent(loc uint64, id string) (*store.Event, error) {
	g, err := db.j.Group(loc)
	if err != nil || g == nil {
		return nil, err
	}
	for i := range g.Events {
		if g.Events[i].Identifier == id {
			return &g.Events[i], nil
		}
	}
	return nil, nil
}

func (db *DB) newIdentifier() string {
	return db.idPrefix + strconv.FormatUint(db.idCount.Add(1), 36)
}

// retention is how long identifiers stay findable: for dedupe and for
// cancellation.
func (db *DB) retention() int64 {
	return int64(max(db.opts.DedupeWindow, CancelWindow) / time.Second)
}

// maintain records a receipt-time mark at most once a second and prunes
// what fell out of the retention window at most once a minute.
func (db *DB) maintain(now int64, loc uint64) {
	if last := db.lastMark.Load(); now > last && db.lastMark.CompareAndSwap(last, now) {
		db.marksMu.Lock()
		db.marks = append(db.marks, mark{t: now, loc: loc})
		db.marksMu.Unlock()
	}
	if last := db.lastPrune.Load(); now-last >= 60 && db.lastPrune.CompareAndSwap(last, now) {
		db.prune(now)
	}
}

// prune drops journal groups, dedupe slots and cancellation records that
// everything received before now minus the retention window needs no more.
func (db *DB) prune(now int64) {
	const margin = 60 // seconds
	cutoff := now - db.retention() - 2*margin
	db.cancelMu.Lock()
	for seq, received := range db.cancelled {
		if received < now-int64(CancelWindow/time.Second) {
			delete(db.cancelled, seq)
		}
	}
	db.cancelMu.Unlock()
	db.marksMu.Lock()
	var loc uint64
	i := 0
	for i < len(db.marks) && db.marks[i].t <= cutoff {
		i++
	}
	// A group's receipt time is taken before its location, so a group
	// before a mark's location was received before the mark's time plus
	// the group's processing delay (well under the margin). marks[i-1] is
	// the last mark at or before the cutoff: every group before its location
	// is old. marks[i], the first after the cutoff, also qualifies while it
	// lies within the margin.
	switch {
	case i < len(db.marks) && db.marks[i].t <= cutoff+margin:
		loc = db.marks[i].loc
		db.marks = append([]mark(nil), db.marks[i:]...)
	case i > 0:
		loc = db.marks[i-1].loc
		db.marks = append([]mark(nil), db.marks[i-1:]...)
	}
	db.marksMu.Unlock()
	if loc > 0 {
		db.idx.SetMinLoc(loc)
	}
	db.j.Prune(loc, now)
}

// Cancel removes the event with the given identifier from its meter's
// aggregates. The event must belong to the meter of eventName and must have
// been received within CancelWindow. Errors are *event.Error values
// unwrapping to event.ErrNotFound, event.ErrCancelExpired or
// event.ErrAlreadyCancelled (or ErrClosed, or an I/O error).
func (db *DB) Cancel(ctx context.Context, eventName, identifier string) error {
	if err := db.enter(); err != nil {
		return err
	}
	defer db.exit()
	now := db.now().Unix()
	notFound := &event.Error{Code: event.CodeNotFound, Param: "cancel[identifier]", Err: event.ErrNotFound,
		Message: fmt.Sprintf("No meter event with identifier %q was found for event_name %q.", identifier, eventName)}
	m, ok := db.reg.Lookup(eventName)
	if !ok || identifier == "" {
		return notFound
	}
	// With a dedupe window shorter than the cancel window, or across meters,
	// an identifier can name several events: cancel the newest one of this
	// meter.
	var found *store.Event
	_, _, err := db.idx.Find(identifier, func(loc uint64) (bool, error) {
		e, err := db.findEvent(loc, identifier)
		if e != nil && e.Meter == m.Seq && (found == nil || e.Seq > found.Seq) {
			found = e
		}
		return false, err // look at every candidate
	})
	if err != nil {
		return err
	}
	if found == nil {
		return notFound
	}
	if now-found.Received >= int64(CancelWindow/time.Second) {
		return &event.Error{Code: event.CodeCancelExpired, Param: "cancel[identifier]", Err: event.ErrCancelExpired,
			Message: fmt.Sprintf("The meter event %q was received more than 24 hours ago and can no longer be cancelled.", identifier)}
	}
	db.cancelMu.Lock()
	if _, done := db.cancelled[found.Seq]; done {
		db.cancelMu.Unlock()
		return &event.Error{Code: event.CodeAlreadyCancelled, Param: "cancel[identifier]", Err: event.ErrAlreadyCancelled,
			Message: fmt.Sprintf("The meter event %q has already been cancelled.", identifier)}
	}
	db.cancelled[found.Seq] = found.Received
	db.cancelMu.Unlock()

	if db.durable {
		db.applyMu.RLock()
		defer db.applyMu.RUnlock()
	}
	loc, err := db.j.Append(&store.Group{Cancels: []store.Cancel{{
		Seq: found.Seq, Received: now, Meter: found.Meter, Customer: found.Customer,
		Value: found.Value, Timestamp: found.Timestamp,
	}}})
	if err != nil {
		db.cancelMu.Lock()
		delete(db.cancelled, found.Seq)
		db.cancelMu.Unlock()
		return fmt.Errorf("meterdb: recording cancellation: %w", err)
	}
	mode := aggregate.ModeOf(string(m.Formula), string(m.EventTimeWindow))
	if !db.table.Cancel(aggregate.Key{Meter: m.Seq, Customer: found.Customer}, mode,
		aggregate.Entry{Seq: found.Seq, Timestamp: found.Timestamp, Value: found.Value}) {
		panic(fmt.Sprintf("meterdb: cancelled event %d is missing from the aggregates", found.Seq))
	}
	db.cancels.Add(1)
	db.maintain(now, loc)
	return nil
}
