package stripeapi

import (
	"context"
	"runtime"
	"sync"
)

// maxCombinedEvents bounds the events of one combined RecordBatch call.
const maxCombinedEvents = 5000

// combiner records the events of concurrent stream requests with one
// call of its record function (DB.RecordBatch, or DB.RecordUsage for typed
// usage) per group of requests (leader/follower group
// commit): each request still waits for exactly one commit, and the
// engine sees a few large batches instead of many small ones contending
// for its dedupe and aggregate locks. At most max leaders run at once;
// each takes what is queued (up to maxCombinedEvents), records it and
// hands the results back, until its own request is done; it then hands
// leadership to the oldest waiting request. It is safe for concurrent
// use.
type combiner[T any] struct {
	record func(context.Context, []T) ([]error, error) // DB.RecordBatch or DB.RecordUsage
	max    int
	pool   sync.Pool // holds *[]T, the slices of combined batches

	mu      sync.Mutex // guards the fields below
	queue   []*combineJob[T]
	leaders int
}

type combineJob[T any] struct {
	evs     []T
	errs    []error
	err     error
	done    chan struct{} // closed when errs and err are set
	promote chan struct{} // receives when the job's request is to lead
	leading bool          // its request leads or was promoted; guarded by combiner.mu
}

func newCombiner[T any](record func(context.Context, []T) ([]error, error)) *combiner[T] {
	return &combiner[T]{record: record, max: max(2, runtime.GOMAXPROCS(0))}
}

// do is c.record(ctx, evs), possibly combined with other calls. Like
// RecordBatch it fills in the Identifier and Timestamp of accepted events
// of evs; evs must not be used by others until it returns.
func (c *combiner[T]) do(ctx context.Context, evs []T) ([]error, error) {
	j := &combineJob[T]{evs: evs, done: make(chan struct{}), promote: make(chan struct{}, 1)}
	c.mu.Lock()
	c.queue = append(c.queue, j)
	lead := c.leaders < c.max
	if lead {
		c.leaders++
		j.leading = true
	}
	c.mu.Unlock()
	if !lead {
		select {
		case <-j.done:
			return j.errs, j.err
		case <-j.promote:
		}
	}
	c.lead(ctx, j)
	return j.errs, j.err
}

// lead records queued jobs until own is done, then passes leadership on.
func (c *combiner[T]) lead(ctx context.Context, own *combineJob[T]) {
	ctx = context.WithoutCancel(ctx) // the batch serves other requests too
	var all []T
	defer func() {
		if cap(all) > 0 {
			clear(all[:cap(all)]) // drop references to payload maps of pooled batches
			all = all[:0]
			c.pool.Put(&all)
		}
	}()
	for {
		select {
		case <-own.done:
			c.mu.Lock()
			defer c.mu.Unlock()
			for _, next := range c.queue {
				if !next.leading {
					next.leading = true
					next.promote <- struct{}{} // buffered; sent at most once
					return
				}
			}
			c.leaders--
			return
		default:
		}
		c.mu.Lock()
		n, events := 0, 0
		for n < len(c.queue) && (n == 0 || events+len(c.queue[n].evs) <= maxCombinedEvents) {
			events += len(c.queue[n].evs)
			n++
		}
		batch := append([]*combineJob[T](nil), c.queue[:n]...)
		c.queue = append(c.queue[:0], c.queue[n:]...)
		c.mu.Unlock()
		if len(batch) == 0 {
			<-own.done // another leader has it
			continue
		}
		if len(batch) == 1 {
			j := batch[0]
			j.errs, j.err = c.record(ctx, j.evs)
			close(j.done)
			continue
		}
		if all == nil {
			if p, ok := c.pool.Get().(*[]T); ok {
				all = *p
			}
		}
		all = all[:0]
		for _, j := range batch {
			all = append(all, j.evs...)
		}
		errs, err := c.record(ctx, all)
		off := 0
		for _, j := range batch {
			if err == nil {
				copy(j.evs, all[off:off+len(j.evs)])
				j.errs = errs[off : off+len(j.evs) : off+len(j.evs)]
			}
			j.err = err
			off += len(j.evs)
			close(j.done)
		}
	}
}
