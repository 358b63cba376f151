package pipeline

import (
	"context"
	"fmt"

	"github.com/meterdb/meterdb/internal/record"
	"github.com/meterdb/meterdb/sharedlog"
)

// The replicated group commit. Writers' events records go through the
// combiner: while Config.SharedInflight records of this process are being appended,
// new writers queue, and the next append carries the events of every
// queued writer as one record. Each writer keeps its own outcome: the
// apply answers one error per event, and a writer takes the slice of its
// own events. A record is applied in one local commit, so each writer's
// batch stays atomic; records are cut only between writers' batches,
// below the log's record limit.

// defaultInflight is how many events records a replica appends at once
// when Config.SharedInflight is 0.
const defaultInflight = 2

// defaultMaxRecord is the record limit assumed for a log that states
// none (NATS's default max_payload, less room for headers).
const defaultMaxRecord = 1<<20 - 256

// recordOverhead bounds the encoded size of a record without its events,
// eventOverhead that of an event without its customer and identifier.
const (
	recordOverhead = 2 + 8 + 10 + 10 + 10 + 4
	eventOverhead  = 10 + 10 + 10 + 10 + 10
)

// combiner queues the events records of concurrent writers.
type combiner struct {
	inflight int // the limit of appends at once

	// guarded by replicator.mu
	pending []*combined // queued writers, oldest first
	appends int         // appends under way
}

// combined is one writer's part of a combined record.
type combined struct {
	rec  *record.Record
	size int // upper bound of its events' encoded size
	ctx  context.Context
	done chan combinedResult // buffered: the writer may have left
}

// combinedResult is a writer's part of the outcome.
type combinedResult struct {
	errs []error
	err  error
}

// eventsSize bounds the encoded size of rec's events.
func eventsSize(rec *record.Record) int {
	n := 0
	for i := range rec.Events {
		n += eventOverhead + len(rec.Events[i].Customer) + len(rec.Events[i].Identifier)
	}
	return n
}

// maxRecord is the log's record limit.
func (r *replicator) maxRecord() int {
	if l, ok := r.log.(sharedlog.Limited); ok {
		if n := l.MaxRecord(); n > 0 {
			return n
		}
	}
	return defaultMaxRecord
}

// doEvents appends the events record rec through the combiner and waits
// for the outcome of its own events: one error per event of rec. Its
// errors are do's.
func (e *Engine) doEvents(ctx context.Context, rec *record.Record) ([]error, error) {
	r := e.repl
	w := &combined{rec: rec, size: eventsSize(rec), ctx: ctx, done: make(chan combinedResult, 1)}
	r.mu.Lock()
	r.comb.pending = append(r.comb.pending, w)
	if r.comb.appends < r.comb.inflight {
		e.startAppendLocked()
	}
	r.mu.Unlock()
	select {
	case res := <-w.done:
		return res.errs, res.err
	case <-ctx.Done():
		return nil, waitErr(ctx)
	case <-r.closed:
		return nil, ErrClosed
	}
}

// startAppendLocked takes the queued writers that fit in one record and
// appends them in a goroutine of its own; r.mu is held and an append
// slot is free.
func (e *Engine) startAppendLocked() {
	r := e.repl
	limit := r.maxRecord() - recordOverhead
	var batch []*combined
	size, n := 0, 0
	for len(r.comb.pending) > 0 {
		w := r.comb.pending[0]
		if w.ctx.Err() != nil { // the writer left; it answered itself
			r.comb.pending = r.comb.pending[1:]
			continue
		}
		if len(batch) > 0 && size+w.size > limit {
			break // cut between writers' batches; one alone may be too large, and Append says so
		}
		r.comb.pending = r.comb.pending[1:]
		batch = append(batch, w)
		size += w.size
		n += len(w.rec.Events)
	}
	if len(r.comb.pending) == 0 {
		r.comb.pending = nil // let the backing array go
	}
	if len(batch) == 0 {
		return
	}
	r.comb.appends++
	go e.appendCombined(batch, n)
}

// appendCombined appends the events of batch (n events) as one record,
// frees its append slot, starts the next append if writers queued, waits
// for the apply and answers every writer of batch.
func (e *Engine) appendCombined(batch []*combined, n int) {
	r := e.repl
	rec := batch[0].rec
	if len(batch) > 1 {
		rec = &record.Record{Kind: record.KindEvents, Events: make([]record.Event, 0, n)}
		for _, w := range batch {
			rec.Stamp = max(rec.Stamp, w.rec.Stamp)
			rec.Events = append(rec.Events, w.rec.Events...)
		}
	}
	// The append is the writers' together: it ends with the log's own
	// timeout or Close, not with one writer's context.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-r.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	o, err := e.do(ctx, rec, func() {
		r.mu.Lock()
		r.comb.appends--
		if len(r.comb.pending) > 0 {
			e.startAppendLocked()
		}
		r.mu.Unlock()
	})
	if err != nil && ctx.Err() != nil {
		err = ErrClosed
	}
	off := 0
	for _, w := range batch {
		k := len(w.rec.Events)
		res := combinedResult{err: err}
		if err == nil {
			res.errs = o.errs[off : off+k : off+k]
		}
		off += k
		w.done <- res
	}
}

// waitErr is the error of a writer whose context ended while it waited.
func waitErr(ctx context.Context) error {
	return fmt.Errorf("meterdb: stopped waiting for the shared log's apply (the write may still be recorded): %w", ctx.Err())
}
