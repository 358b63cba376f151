package replica

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meterdb/meterdb/sharedlog"
)

// Heartbeats of the pull requests behind Read: a consumer that stops
// sending them (its server died) is replaced after two missed beats.
const (
	readExpiry    = 5 * time.Second
	readHeartbeat = time.Second
)

// readStall is how long a read may go without delivering while the stream
// holds a record for it (or dropped that record) before Read replaces its
// consumer (or returns ErrTruncated): the client library recreates a lost
// ordered consumer on its own, and keeps trying for ever when the record
// it resumes at was dropped meanwhile.
const readStall = 5 * time.Second

// errStalled ends a consumer that delivered nothing for readStall while
// records were waiting; Read starts a new one.
var errStalled = errors.New("replica: read stalled: records wait but none arrives")

// Read calls fn with every record after position after, in stream order,
// then waits for new records, until ctx ends (Read returns ctx.Err()), fn
// returns an error (Read returns it) or the Log is closed (ErrClosed).
//
// Read uses an ordered consumer starting at after+1, which the client
// recreates after a lost connection, a missed heartbeat or a consumer
// leader change, resuming after the last record delivered; when that
// fails, Read waits and starts a new one at the same point, for as long
// as the stream cannot be reached. Read checks every record's stream
// sequence: a record already delivered is skipped, and a record after a
// hole (the stream dropped records by age or purge, or a record was
// deleted) ends Read with an error wrapping sharedlog.ErrTruncated, never
// a silent gap. It returns such an error at once when the stream's first
// sequence is above after+1, or its last sequence below after (the
// stream was recreated). A consumer that delivers nothing for readStall
// (5 s) while the stream holds the record due, and the callback is not
// running, is replaced; when the stream dropped that record meanwhile,
// Read returns an error wrapping sharedlog.ErrTruncated.
//
// The record passed to fn is valid only during the call.
func (l *Log) Read(ctx context.Context, after uint64, fn func(pos uint64, rec []byte) error) error {
	ctx, done, err := l.enter(ctx)
	if err != nil {
		return err
	}
	defer done()
	next := after + 1
	wait := 50 * time.Millisecond
	for {
		n := next
		err := l.readFrom(ctx, &next, fn)
		var ferr fnError
		switch {
		case errors.As(err, &ferr):
			return ferr.err
		case errors.Is(err, sharedlog.ErrTruncated):
			return err
		case l.ctx.Err() != nil:
			return ErrClosed
		case ctx.Err() != nil:
			return ctx.Err()
		}
		if next > n {
			wait = 50 * time.Millisecond // it made progress: retry soon
		}
		l.log.Warn("replica: read restarts", "at", next, "err", err, "in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// fnError carries the error of Read's callback.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// readFrom delivers records from *next on, advancing *next, until an
// error.
func (l *Log) readFrom(ctx context.Context, next *uint64, fn func(uint64, []byte) error) error {
	if err := l.checkHeld(ctx, *next); err != nil {
		return err
	}
	cons, err := attempt(ctx, l.opts.AttemptTimeout, func(c context.Context) (jetstream.Consumer, error) {
		return l.js.OrderedConsumer(c, l.opts.Stream, jetstream.OrderedConsumerConfig{
			DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
			OptStartSeq:   *next,
		})
	})
	if err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullExpiry(readExpiry), jetstream.PullHeartbeat(readHeartbeat))
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer func() {
		stop()
		it.Stop()
		if info := cons.CachedInfo(); info != nil {
			// Best effort: an ordered consumer left behind is removed by
			// the server after its inactivity threshold.
			go func(name string) {
				dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				l.js.DeleteConsumer(dctx, l.opts.Stream, name)
			}(info.Name)
		}
	}()
	var (
		due     atomic.Uint64 // *next, for the watch
		busy    atomic.Bool   // fn is running: not a stall
		stalled = make(chan error, 1)
	)
	due.Store(*next)
	wctx, endWatch := context.WithCancel(ctx)
	defer endWatch()
	go l.watch(wctx, &due, &busy, func(err error) {
		stalled <- err
		it.Stop()
	})
	for {
		msg, err := it.Next()
		if err != nil {
			select {
			case serr := <-stalled:
				return serr
			default:
				return err
			}
		}
		md, err := msg.Metadata()
		if err != nil {
			return err
		}
		seq := md.Sequence.Stream
		if seq < *next {
			continue // delivered already
		}
		if seq > *next {
			return l.gap(ctx, *next, seq)
		}
		busy.Store(true)
		err = fn(seq, msg.Data())
		busy.Store(false)
		if err != nil {
			return fnError{err}
		}
		*next = seq + 1
		due.Store(*next)
	}
}

// watch checks, every readStall, a read that delivered nothing since the
// last check while fn was not running: when the stream dropped the record
// due, or holds it, it calls stop once with the error that ends the read
// (ErrTruncated, or errStalled to start a new consumer).
func (l *Log) watch(ctx context.Context, due *atomic.Uint64, busy *atomic.Bool, stop func(error)) {
	t := time.NewTicker(readStall)
	defer t.Stop()
	last := due.Load()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := due.Load()
		if n != last || busy.Load() {
			last = n
			continue
		}
		held, err := l.held(ctx, n)
		switch {
		case errors.Is(err, sharedlog.ErrTruncated):
			stop(err)
			return
		case err == nil && held:
			stop(errStalled)
			return
		}
	}
}

// checkHeld returns an error wrapping sharedlog.ErrTruncated when the
// stream no longer holds the record at next.
func (l *Log) checkHeld(ctx context.Context, next uint64) error {
	_, err := l.held(ctx, next)
	return err
}

// held reports whether the stream holds the record at next, and returns an
// error wrapping sharedlog.ErrTruncated when it dropped it.
func (l *Log) held(ctx context.Context, next uint64) (bool, error) {
	si, err := attempt(ctx, l.opts.AttemptTimeout, func(c context.Context) (*jetstream.StreamInfo, error) { return l.stream.Info(c) })
	if err != nil {
		return false, err
	}
	st := si.State
	if next < st.FirstSeq {
		return false, fmt.Errorf("replica: read from %d: %w: the stream starts at %d", next, sharedlog.ErrTruncated, st.FirstSeq)
	}
	if next > st.LastSeq+1 {
		return false, fmt.Errorf("replica: read from %d: %w: the stream ends at %d (was it recreated?)", next, sharedlog.ErrTruncated, st.LastSeq)
	}
	return next <= st.LastSeq, nil
}

// gap reports that the consumer delivered seq when next was due.
func (l *Log) gap(ctx context.Context, next, seq uint64) error {
	if err := l.checkHeld(ctx, next); err != nil {
		return err
	}
	return fmt.Errorf("replica: read: %w: records %d to %d are missing", sharedlog.ErrTruncated, next, seq-1)
}
