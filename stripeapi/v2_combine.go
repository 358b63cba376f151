package stripeapi

import (
	"context"
	"runtime"
	"sync"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
)

// maxCombinedEvents bounds the events of one combined RecordBatch call.
const maxCombinedEvents = 5000

// combiner records the events of concurrent stream requests with one
// DB.RecordBatch call per group of requests (leader/follower group
// commit): each request still waits for exactly one commit, and the
// engine sees a few large batches instead of many small ones contending
// for its dedupe and aggregate locks. At most max leaders run at once;
// each takes what is queued (up to maxCombinedEvents), records it and
// hands the results back, until its own request is done; it then hands
// leadership to the oldest waiting request. It is safe for concurrent
// use.
type combiner struct {
	db  *meterdb.DB
	max int

	mu      sync.Mutex // guards the fields below
	queue   []*combineJob
	leaders int
}

// combinePool holds the event slices of combined batches.
var combinePool sync.Pool

type combineJob struct {
	evs     []event.Event
	errs    []error
	err     error
	done    chan struct{} // closed when errs and err are set
	promote chan struct{} // receives when the job's request is to lead
	leading bool          // its request leads or was promoted; guarded by combiner.mu
}

func newCombiner(db *meterdb.DB) *combiner {
	return &combiner{db: db, max: max(2, runtime.GOMAXPROCS(0))}
}

// record is DB.RecordBatch(ctx, evs), possibly combined with other calls.
// Like RecordBatch it fills in the Identifier and Timestamp of accepted
// events of evs; evs must not be used by others until it returns.
func (c *combiner) record(ctx context.Context, evs []event.Event) ([]error, error) {
	j := &combineJob{evs: evs, done: make(chan struct{}), promote: make(chan struct{}, 1)}
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
func (c *combiner) lead(ctx context.Context, own *combineJob) {
	ctx = context.WithoutCancel(ctx) // the batch serves other requests too
	var all []event.Event
	defer func() {
		if cap(all) > 0 {
			clear(all[:cap(all)]) // drop references to payload maps of pooled batches
			all = all[:0]
			combinePool.Put(&all)
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
		batch := append([]*combineJob(nil), c.queue[:n]...)
		c.queue = append(c.queue[:0], c.queue[n:]...)
		c.mu.Unlock()
		if len(batch) == 0 {
			<-own.done // another leader has it
			continue
		}
		if len(batch) == 1 {
			j := batch[0]
			j.errs, j.err = c.db.RecordBatch(ctx, j.evs)
			close(j.done)
			continue
		}
		if all == nil {
			if p, ok := combinePool.Get().(*[]event.Event); ok {
				all = *p
			}
		}
		all = all[:0]
		for _, j := range batch {
			all = append(all, j.evs...)
		}
		errs, err := c.db.RecordBatch(ctx, all)
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
