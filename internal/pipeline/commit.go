package pipeline

// The write path: validate -> reserve identifiers -> sequence -> log ->
// apply -> acknowledge. Its invariants:
//
//  1. A rejected event leaves no trace: no log record, no dedupe entry, no
//     bucket change. That includes an event whose log write failed: its
//     identifier is released, so a retry with the same identifier is
//     recorded, not refused as a duplicate.
//  2. An event is applied to the aggregates only after the log accepted it
//     (with DurabilitySync, after the fsync that covers it), and its
//     identifier becomes findable only after it is applied.
//  3. An identifier is held by at most one event of the dedupe window:
//     reservation makes concurrent events with one identifier collide
//     before either is logged.
//  4. Sequence numbers grow with receipt; the log's locations are dense
//     and assigned in commit order.
//  5. A checkpoint covers exactly the log up to a location: writers hold
//     the apply lock (read side) from log append to apply, and the
//     checkpointer takes its write side while it collects changed buckets.
//  6. A write that the store cannot make returns an error wrapping
//     store.ErrUnavailable. When the store cannot tell what reached the
//     disk (an I/O error, a failed fsync), the Engine reopens the file and
//     rebuilds its state from what is durable before it serves writes
//     again; it never retries such a write blindly.

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/meterdb/meterdb/aggregate"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/internal/dedupe"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/store"
)

// Batch is one pass through the write pipeline: events in payload form
// or in typed form (one of the two slices is set).
type Batch struct {
	Events []event.Event
	Usages []event.Usage
	// KV, when set, is called once the outcome of every input is known
	// (errs[i] nil for an accepted one, whose Identifier and Timestamp are
	// filled in) and before anything is logged; the records it returns are
	// committed in the same transaction as the batch's events, so that a
	// response stored for a retry is durable exactly when what it answers
	// is. It is not called when no input was accepted. An error from it
	// fails the batch before anything is logged.
	KV func(errs []error) ([]store.KVWrite, error)
}

func (b *Batch) len() int {
	if b.Usages != nil {
		return len(b.Usages)
	}
	return len(b.Events)
}

// Record runs b through the pipeline and returns one error per input (nil
// for the accepted ones). The second result reports a failure of the whole
// batch: nothing of it was recorded, except when ctx ended the wait for
// the commit, in which case the events may still be recorded.
//
// The stages, each named where it happens below:
//
//	validate -> reserve identifiers -> sequence -> log -> apply -> acknowledge
func (e *Engine) Record(ctx context.Context, b *Batch) ([]error, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, err := e.enter()
	if err != nil {
		return nil, err
	}
	handedOff := false
	defer func() {
		if !handedOff {
			e.life.RUnlock()
		}
	}()
	if err := st.writable(); err != nil {
		return nil, err
	}
	now := e.cfg.Now()
	nowSec := now.Unix()
	n := b.len()
	e.stats.batch.Observe(int64(n))
	errs := make([]error, n)

	// Validate, and give every valid event its identifier.
	sc := getScratch(n)
	defer putScratch(sc)
	e.validate(st, b, now, sc, errs)
	cands, ids := sc.cands, sc.ids
	if e.repl != nil {
		handedOff = true
		e.life.RUnlock()
		return e.recordShared(ctx, st, b, now, sc, errs)
	}
	if len(cands) == 0 {
		e.countRejected(st, b, errs)
		return errs, nil
	}

	// Reserve the identifiers, each dedupe shard locked once.
	res := &sc.res
	if err := st.reserve(res, ids, nowSec, e.cfg.DedupeWindow); err != nil {
		return nil, err
	}

	// Sequence.
	g := st.sequence(sc, errs, nowSec)
	if len(g.Events) == 0 {
		e.countRejected(st, b, errs)
		return errs, nil
	}
	items := sc.items
	for k, c := range cands {
		if res.Reserved[k] {
			b.fill(c.i, ids[k], c.v.Timestamp)
		}
	}
	var kvs []store.KVWrite
	if b.KV != nil {
		if kvs, err = b.KV(errs); err != nil {
			st.idx.ReleaseBatch(res)
			return nil, err
		}
	}

	// Log. Writers hold the apply lock's read side until they applied.
	st.applyMu.RLock()
	c, err := st.log.Append(g, kvs)
	if err != nil {
		st.applyMu.RUnlock()
		st.idx.ReleaseBatch(res)
		return nil, e.failed(st, fmt.Errorf("meterdb: recording events: %w", err))
	}
	select {
	case <-c.done():
	case <-ctx.Done():
		// The commit goes on; finish in the background, where the
		// lifecycle lock stays held until it is over.
		handedOff = true
		resCopy := *res
		resCopy.Detach()
		itemsCopy := append([]aggregate.Item(nil), items...)
		go func() {
			defer e.life.RUnlock()
			<-c.done()
			e.finishRecord(st, c, &resCopy, itemsCopy, nowSec)
		}()
		return nil, ctxErr(ctx)
	}
	if err := e.finishRecord(st, c, res, items, nowSec); err != nil {
		return nil, err
	}
	if len(g.Events) < n {
		e.countRejected(st, b, errs)
	}
	return errs, nil
}

// validate checks every input of b against the registry at now, sets
// errs[i] for the invalid ones and appends the valid ones, each with its
// identifier (generated when empty), to sc.cands and sc.ids.
func (e *Engine) validate(st *state, b *Batch, now time.Time, sc *batchScratch, errs []error) {
	for i := range b.len() {
		var m *meter.Meter
		var v event.Validated
		var id string
		var err error
		if b.Usages != nil {
			u := &b.Usages[i]
			m, _ = st.reg.Lookup(u.Name)
			v, err = event.ValidateUsage(u, m, now)
			id = u.Identifier
		} else {
			ev := &b.Events[i]
			m, _ = st.reg.Lookup(ev.Name)
			v, err = event.Validate(ev, m, now)
			id = ev.Identifier
		}
		if err == nil && st.tooOld(v.Timestamp, now.Unix()) {
			err = tooOldError()
		}
		if err != nil {
			errs[i] = err
			continue
		}
		if id == "" {
			id = e.newIdentifier()
		}
		sc.cands = append(sc.cands, candidate{i: i, m: m, v: v})
		sc.ids = append(sc.ids, id)
	}
}

// reserve reserves ids in the dedupe index: an identifier is taken when it
// is pending, or when an event stored with it was received less than
// window before now (unix seconds). A candidate location is confirmed by
// FindEvent, which reads only what it must. A batch replayed whole (a
// client's retry) names one file log record again and again: from its
// second candidate on, the record is decoded once and its identifiers
// looked up in a map.
func (st *state) reserve(res *dedupe.Reservation, ids []string, now int64, window time.Duration) error {
	win := int64(window / time.Second)
	var read struct {
		loc  uint64
		byID map[string]int64 // receipt time by identifier, of the record at loc
	}
	return st.idx.ReserveBatch(res, ids, func(i int, loc uint64) (bool, error) {
		if st.file != nil && loc == read.loc {
			if read.byID == nil {
				g, err := st.file.Group(loc)
				if err != nil || g == nil {
					return false, err
				}
				read.byID = make(map[string]int64, len(g.Events))
				for _, ev := range g.Events {
					read.byID[ev.Identifier] = ev.Received
				}
			}
			received, found := read.byID[ids[i]]
			return found && now-received < win, nil
		}
		if st.mem != nil {
			// loc names one event; the index's hash is at hand.
			ev, found := st.mem.find(loc, res.Hash(i), st.mem.hash2(ids[i]))
			return found && now-ev.Received < win, nil
		}
		read.loc, read.byID = loc, nil
		ev, found, err := st.log.FindEvent(loc, ids[i])
		return found && now-ev.Received < win, err
	})
}

// sequence builds the group of the reserved candidates of sc, received at
// now, gives them the next sequence numbers and fills sc.items with their
// aggregate items; errs[i] of every candidate not reserved is set to a
// duplicate error.
func (st *state) sequence(sc *batchScratch, errs []error, now int64) *store.Group {
	res := &sc.res
	g := &sc.group // sized by getScratch
	if st.mem == nil && (st.file == nil || st.file.KeepsGroups()) {
		// The log's queue keeps the group until its commit is written.
		g = &store.Group{Events: make([]store.Event, 0, len(sc.cands))}
	}
	items := sc.items
	for k, c := range sc.cands {
		if !res.Reserved[k] {
			errs[c.i] = duplicateError(sc.ids[k])
			continue
		}
		g.Events = append(g.Events, store.Event{
			Meter: c.m.Seq, Customer: c.v.Customer, Identifier: sc.ids[k],
			Value: c.v.Value, Timestamp: c.v.Timestamp, Received: now,
		})
		items = append(items, aggregate.Item{
			Key:  aggregate.Key{Meter: c.m.Seq, Customer: c.v.Customer},
			Mode: aggregate.ModeOf(string(c.m.Formula), string(c.m.EventTimeWindow)),
		})
	}
	sc.items = items
	if len(g.Events) == 0 {
		return g
	}
	last := st.seq.Add(uint64(len(g.Events)))
	for i := range g.Events {
		ev := &g.Events[i]
		ev.Seq = last - uint64(len(g.Events)) + 1 + uint64(i)
		items[i].Entry = aggregate.Entry{Seq: ev.Seq, Timestamp: ev.Timestamp, Value: ev.Value}
	}
	return g
}

// duplicateError is the error of an event whose identifier is taken.
func duplicateError(id string) error {
	return &event.Error{Code: event.CodeDuplicate, Param: "identifier", Err: event.ErrDuplicate,
		Message: fmt.Sprintf("A meter event with identifier %q has already been submitted.", id)}
}

// finishRecord applies a committed group and makes its identifiers
// findable, or releases them when the commit failed. It releases the
// apply lock's read side.
func (e *Engine) finishRecord(st *state, c commit, res *dedupe.Reservation, items []aggregate.Item, now int64) error {
	loc, err := c.result()
	if err != nil {
		st.applyMu.RUnlock()
		st.idx.ReleaseBatch(res)
		return e.failed(st, fmt.Errorf("meterdb: recording events: %w", err))
	}
	// Apply, then acknowledge.
	st.table.ApplyBatch(items)
	st.applyMu.RUnlock()
	if st.mem != nil {
		// One location per event: the memory log's event index.
		st.idx.CommitEach(res, c.first)
	} else {
		st.idx.CommitBatch(res, loc)
	}
	e.countAccepted(items)
	e.maintain(st, now, loc)
	return nil
}

// fill sets the identifier and timestamp of accepted input i.
func (b *Batch) fill(i int, id string, ts int64) {
	if b.Usages != nil {
		u := &b.Usages[i]
		u.Identifier = id
		if u.Timestamp.IsZero() {
			u.Timestamp = time.Unix(ts, 0).UTC()
		}
		return
	}
	ev := &b.Events[i]
	ev.Identifier = id
	if ev.Timestamp.IsZero() {
		ev.Timestamp = time.Unix(ts, 0).UTC()
	}
}

// candidate is a valid event of a batch, before its identifier is
// reserved.
type candidate struct {
	i int // index into the batch
	m *meter.Meter
	v event.Validated
}

// batchScratch holds Record's per-call slices between calls.
type batchScratch struct {
	cands []candidate
	ids   []string
	items []aggregate.Item
	res   dedupe.Reservation
	group store.Group // the batch's log record, for a log that does not keep it (the memory log, a file log with DurabilitySync)
}

var scratchPool = sync.Pool{New: func() any { return new(batchScratch) }}

// getScratch returns empty scratch slices with room for n events.
func getScratch(n int) *batchScratch {
	sc := scratchPool.Get().(*batchScratch)
	if cap(sc.cands) < n {
		sc.cands, sc.ids, sc.items = make([]candidate, 0, n), make([]string, 0, n), make([]aggregate.Item, 0, n)
		sc.group.Events = make([]store.Event, 0, n)
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
	clear(sc.group.Events)
	sc.cands, sc.ids, sc.items, sc.group.Events = sc.cands[:0], sc.ids[:0], sc.items[:0], sc.group.Events[:0]
	sc.res.Reset()
	scratchPool.Put(sc)
}

// findEvent returns the event with identifier id in the log record at
// loc, or nil.
func (st *state) findEvent(loc uint64, id string) (*store.Event, error) {
	ev, ok, err := st.log.FindEvent(loc, id)
	if !ok || err != nil {
		return nil, err
	}
	ev.Identifier = id
	return &ev, nil
}

// Cancel removes the event with the given identifier from its meter's
// aggregates: the newest event of the meter of eventName with that
// identifier, received within the cancel window.
func (e *Engine) Cancel(ctx context.Context, eventName, identifier string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	st, err := e.enter()
	if err != nil {
		return err
	}
	handedOff := false
	defer func() {
		if !handedOff {
			e.life.RUnlock()
		}
	}()
	if err := st.writable(); err != nil {
		return err
	}
	now := e.cfg.Now().Unix()
	m, ok := st.reg.Lookup(eventName)
	if !ok || identifier == "" {
		return cancelNotFound(eventName, identifier)
	}
	if e.repl != nil {
		handedOff = true
		e.life.RUnlock()
		return e.cancelShared(ctx, m, identifier)
	}
	found, err := e.claimCancel(st, m, identifier, now)
	if err != nil {
		return err
	}

	c, finish, err := e.logCancel(st, m, found, now, nil)
	if err != nil {
		return e.failed(st, fmt.Errorf("meterdb: recording cancellation: %w", err))
	}
	select {
	case <-c.done():
		if err := finish(); err != nil {
			return e.failed(st, fmt.Errorf("meterdb: recording cancellation: %w", err))
		}
		return nil
	case <-ctx.Done():
		handedOff = true
		go func() {
			defer e.life.RUnlock()
			<-c.done()
			if err := finish(); err != nil {
				e.failed(st, err)
			}
		}()
		return ctxErr(ctx)
	}
}

// logCancel appends the cancellation of found, claimed by claimCancel, to
// the log with kvs, received at now, and holds the apply lock's read side
// from the append on. finish, called once the commit is done, removes the
// event from the aggregates or, when the commit failed, undoes the claim
// and returns the error; either way it releases the apply lock. When the
// append itself fails, the claim is undone, the lock released, and the
// error returned.
func (e *Engine) logCancel(st *state, m *meter.Meter, found *store.Event, now int64, kvs []store.KVWrite) (c commit, finish func() error, err error) {
	abort := func(err error) error {
		st.applyMu.RUnlock()
		st.cancelMu.Lock()
		delete(st.cancelled, found.Seq)
		st.cancelMu.Unlock()
		return err
	}
	st.applyMu.RLock()
	c, err = st.log.Append(&store.Group{Cancels: []store.Cancel{{
		Seq: found.Seq, Received: now, Meter: found.Meter, Customer: found.Customer,
		Value: found.Value, Timestamp: found.Timestamp,
	}}}, kvs)
	if err != nil {
		return c, nil, abort(err)
	}
	finish = func() error {
		loc, err := c.result()
		if err != nil {
			return abort(err)
		}
		mode := aggregate.ModeOf(string(m.Formula), string(m.EventTimeWindow))
		if !st.table.Cancel(aggregate.Key{Meter: m.Seq, Customer: found.Customer}, mode,
			aggregate.Entry{Seq: found.Seq, Timestamp: found.Timestamp, Value: found.Value}) {
			panic(fmt.Sprintf("meterdb: cancelled event %d is missing from the aggregates", found.Seq))
		}
		st.applyMu.RUnlock()
		e.stats.meters.Get(m.Seq).Cancelled.Add(1)
		e.maintain(st, now, loc)
		return nil
	}
	return c, finish, nil
}

// cancelNotFound is the error of a cancellation that names no event.
func cancelNotFound(eventName, identifier string) error {
	return &event.Error{Code: event.CodeNotFound, Param: "cancel[identifier]", Err: event.ErrNotFound,
		Message: fmt.Sprintf("No meter event with identifier %q was found for event_name %q.", identifier, eventName)}
}

// claimCancel finds the event of meter m with the given identifier that a
// cancellation at now (unix seconds) removes, and marks it cancelled; the
// caller logs and applies the cancellation, or deletes the mark when that
// fails. With a dedupe window shorter than the cancel window, or across
// meters, an identifier can name several events: the newest one of m is
// cancelled.
func (e *Engine) claimCancel(st *state, m *meter.Meter, identifier string, now int64) (*store.Event, error) {
	var found *store.Event
	_, _, err := st.idx.Find(identifier, func(loc uint64) (bool, error) {
		ev, err := st.findEvent(loc, identifier)
		if ev != nil && ev.Meter == m.Seq && (found == nil || ev.Seq > found.Seq) {
			found = ev
		}
		return false, err // look at every candidate
	})
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, cancelNotFound(m.EventName, identifier)
	}
	if now-found.Received >= int64(e.cfg.CancelWindow/time.Second) || st.tooOld(found.Timestamp, now) {
		return nil, &event.Error{Code: event.CodeCancelExpired, Param: "cancel[identifier]", Err: event.ErrCancelExpired,
			Message: fmt.Sprintf("The meter event %q was received more than 24 hours ago and can no longer be cancelled.", identifier)}
	}
	st.cancelMu.Lock()
	defer st.cancelMu.Unlock()
	if _, done := st.cancelled[found.Seq]; done {
		return nil, &event.Error{Code: event.CodeAlreadyCancelled, Param: "cancel[identifier]", Err: event.ErrAlreadyCancelled,
			Message: fmt.Sprintf("The meter event %q has already been cancelled.", identifier)}
	}
	st.cancelled[found.Seq] = found.Received
	return found, nil
}
