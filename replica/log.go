package replica

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meterdb/meterdb/sharedlog"
)

// Log is a sharedlog.Log on a JetStream stream. It is safe for
// concurrent use.
type Log struct {
	opts    Options
	subject string
	bucket  string
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  jetstream.Stream
	obs     jetstream.ObjectStore
	log     *slog.Logger

	objStream    jetstream.Stream // the bucket's stream
	metaSubjects string           // its subjects of object metadata

	idPrefix string        // unique to this Log: the message ids of its records
	idSeq    atomic.Uint64 // the last message id's counter

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // in-flight calls

	mu     sync.Mutex // guards the field below
	closed bool
}

var _ sharedlog.Log = (*Log)(nil)

// Open connects to the NATS servers in o.URLs, creates the stream and the
// snapshot bucket if they are missing (or checks the stream that exists)
// and returns the Log. Each request waits at most AttemptTimeout; while
// the stream or the bucket has no leader (an election), or a server the
// stream needs is offline (a new stream cannot be placed), it asks again
// until AppendTimeout has passed. It fails with
// an error wrapping sharedlog.ErrUnavailable when no server answers,
// ErrOptions for invalid Options and ErrStream for a stream it cannot
// use.
func Open(ctx context.Context, o Options) (*Log, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	l := &Log{
		opts:    o,
		subject: o.Stream + ".rec",
		bucket:  o.Stream + "_SNAPSHOTS",
		log:     o.Logger.With("stream", o.Stream),
	}
	var id [8]byte
	rand.Read(id[:])
	l.idPrefix = hex.EncodeToString(id[:]) + "-"

	copts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		// No publish buffer while disconnected: Append fails fast and
		// retries itself, with the same message id, until it reconnects.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: closed by Close
				l.log.Warn("replica: NATS connection lost", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			l.log.Info("replica: NATS connection back", "server", nc.ConnectedUrlRedacted())
		}),
	}
	if o.CredsFile != "" {
		copts = append(copts, nats.UserCredentials(o.CredsFile))
	}
	if o.TLS != nil {
		copts = append(copts, nats.Secure(o.TLS.Clone()))
	}
	l.nc, err = nats.Connect(strings.Join(o.URLs, ","), copts...)
	if err != nil {
		// No server reachable is transient; a refused TLS handshake,
		// credentials or authorization is not.
		var opErr *net.OpError
		var certErr *tls.CertificateVerificationError
		if retryable(err) || errors.As(err, &opErr) && !errors.As(err, &certErr) {
			return nil, fmt.Errorf("replica: connect to %s: %w: %w", strings.Join(o.URLs, ","), sharedlog.ErrUnavailable, err)
		}
		return nil, fmt.Errorf("replica: connect to %s: %w", strings.Join(o.URLs, ","), err)
	}
	l.js, err = jetstream.New(l.nc)
	if err != nil {
		l.nc.Close()
		return nil, fmt.Errorf("replica: %w", err)
	}
	// The stream or the bucket may have no leader for a few seconds (its
	// leader's server just died): ask again, as Append does.
	deadline := time.Now().Add(o.AppendTimeout)
	for {
		err := l.setup(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, sharedlog.ErrUnavailable) || ctx.Err() != nil || time.Now().After(deadline) {
			l.nc.Close()
			return nil, err
		}
		l.log.Warn("replica: the stream cannot be reached yet; asking again", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l, nil
}

// setup creates or checks the stream and the snapshot bucket. Each
// request waits at most AttemptTimeout for its answer: one in flight when
// its server died is never answered, and Open asks again.
func (l *Log) setup(ctx context.Context) error {
	o := l.opts
	want := jetstream.StreamConfig{
		Name:        o.Stream,
		Description: "meterdb shared log",
		Subjects:    []string{l.subject},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      o.MaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		Duplicates:  o.DuplicateWindow,
		// A deleted record would be a hole in the log; purges (which
		// drop a prefix) stay possible and readers see ErrTruncated.
		DenyDelete: true,
	}
	for {
		s, err := attempt(ctx, o.AttemptTimeout, func(c context.Context) (jetstream.Stream, error) { return l.js.Stream(c, o.Stream) })
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			s, err = attempt(ctx, o.AttemptTimeout, func(c context.Context) (jetstream.Stream, error) { return l.js.CreateStream(c, want) })
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				continue // created by another process meanwhile
			}
			if err != nil {
				return l.errorf("create stream", ctx, err)
			}
			l.log.Info("replica: stream created", "replicas", o.Replicas, "max_age", o.MaxAge)
		} else if err != nil {
			return l.errorf("stream info", ctx, err)
		} else if err := l.check(s.CachedInfo().Config); err != nil {
			return err
		}
		l.stream = s
		break
	}
	bucket := func(c context.Context) (jetstream.ObjectStore, error) { return l.js.ObjectStore(c, l.bucket) }
	obs, err := attempt(ctx, o.AttemptTimeout, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		obs, err = attempt(ctx, o.AttemptTimeout, func(c context.Context) (jetstream.ObjectStore, error) {
			return l.js.CreateObjectStore(c, jetstream.ObjectStoreConfig{
				Bucket:      l.bucket,
				Description: "meterdb snapshots of " + o.Stream,
				Storage:     jetstream.FileStorage,
				Replicas:    o.Replicas,
			})
		})
		if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			obs, err = attempt(ctx, o.AttemptTimeout, bucket)
		}
	}
	if err != nil {
		return l.errorf("snapshot bucket", ctx, err)
	}
	l.obs = obs
	if l.objStream, err = attempt(ctx, o.AttemptTimeout, func(c context.Context) (jetstream.Stream, error) { return l.js.Stream(c, "OBJ_"+l.bucket) }); err != nil {
		return l.errorf("snapshot bucket stream", ctx, err)
	}
	l.metaSubjects = "$O." + l.bucket + ".M.>"
	return nil
}

// attempt calls f with ctx bounded by d.
func attempt[T any](ctx context.Context, d time.Duration, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return f(ctx)
}

// check refuses a stream the log cannot use and warns of one configured
// otherwise than Options ask.
func (l *Log) check(c jetstream.StreamConfig) error {
	o := l.opts
	if !slices.Equal(c.Subjects, []string{l.subject}) {
		return fmt.Errorf("%w: stream %s has subjects %q, want only %q", ErrStream, c.Name, c.Subjects, l.subject)
	}
	if c.Retention != jetstream.LimitsPolicy {
		return fmt.Errorf("%w: stream %s has retention %v, want limits: other retentions delete records once consumed", ErrStream, c.Name, c.Retention)
	}
	if c.Replicas != o.Replicas || c.MaxAge != o.MaxAge || c.Storage != jetstream.FileStorage || c.MaxMsgs > 0 || c.MaxBytes > 0 || !c.DenyDelete || c.Duplicates < o.AppendTimeout {
		l.log.Warn("replica: the stream exists with another configuration; using it as it is",
			"replicas", c.Replicas, "max_age", c.MaxAge, "storage", c.Storage, "max_msgs", c.MaxMsgs,
			"max_bytes", c.MaxBytes, "deny_delete", c.DenyDelete, "duplicate_window", c.Duplicates)
	}
	return nil
}

// Last returns the stream's last sequence, 0 when it is empty. The
// stream leader answers, so Last covers every record acknowledged before
// the call. It asks as retry describes: each attempt waits at most
// AttemptTimeout, and attempts go on through a lost connection or a
// leader election until AppendTimeout has passed (an error wrapping
// sharedlog.ErrUnavailable).
func (l *Log) Last(ctx context.Context) (uint64, error) {
	ctx, done, err := l.enter(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	var last uint64
	_, err = l.retry(ctx, "last", func(actx context.Context) error {
		si, err := l.stream.Info(actx)
		if err == nil {
			last = si.State.LastSeq
		}
		return err
	})
	return last, err
}

// retry is how every request to the servers is made. It calls f with a
// context that ends after AttemptTimeout (a request in flight when its
// server died is never answered, and would otherwise wait as long as
// ctx). An attempt that fails for want of a connection, a responder or a
// stream leader (an election takes a few seconds after the leader's
// server died) is made again, 20 ms to 500 ms later, until AppendTimeout
// has passed since the call began; retry then returns an error wrapping
// sharedlog.ErrUnavailable. Another error of f ends retry at once. When
// ctx ends first, retry returns an error wrapping ctx.Err() (and also
// sharedlog.ErrUnavailable when the last attempt failed so); after Close,
// ErrClosed. It returns the number of attempts made.
func (l *Log) retry(ctx context.Context, op string, f func(context.Context) error) (int, error) {
	deadline := time.Now().Add(l.opts.AppendTimeout)
	wait := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, max(min(l.opts.AttemptTimeout, time.Until(deadline)), 50*time.Millisecond))
		err := f(actx)
		cancel()
		if err == nil {
			return attempt, nil
		}
		// ended is the error once ctx ended after the failed attempt.
		ended := func() error {
			if l.ctx.Err() == nil && retryable(err) {
				return fmt.Errorf("replica: %s: %w: %w after %d attempts: %w", op, ctx.Err(), sharedlog.ErrUnavailable, attempt, err)
			}
			return l.errorf(op, ctx, err)
		}
		if ctx.Err() != nil {
			return attempt, ended()
		}
		if !retryable(err) {
			return attempt, l.errorf(op, ctx, err)
		}
		if !time.Now().Add(wait).Before(deadline) {
			return attempt, fmt.Errorf("replica: %s: %w after %d attempts in %v: %w", op, sharedlog.ErrUnavailable, attempt, l.opts.AppendTimeout, err)
		}
		l.log.Debug("replica: request retries", "op", op, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return attempt, ended()
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// Close stops the Reads and Appends in flight (they return ErrClosed),
// waits for them and closes the connection. Close twice is safe; every
// other method returns ErrClosed after it.
func (l *Log) Close() error {
	l.mu.Lock()
	first := !l.closed
	l.closed = true
	l.mu.Unlock()
	if first {
		l.cancel()
	}
	l.wg.Wait()
	if first {
		l.nc.Close()
	}
	return nil
}

// enter registers a call: it returns ErrClosed after Close, or ctx merged
// with the Log's own end and the function that ends the call.
func (l *Log) enter(ctx context.Context) (context.Context, func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	l.wg.Add(1)
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(l.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
		l.wg.Done()
	}, nil
}

// errorf wraps err of the operation op: ErrClosed when the Log was closed,
// the caller's ctx error when ctx ended, sharedlog.ErrUnavailable when a
// retry may succeed, err itself otherwise.
func (l *Log) errorf(op string, ctx context.Context, err error) error {
	if l.ctx != nil && l.ctx.Err() != nil {
		return ErrClosed
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("replica: %s: %w", op, cerr)
	}
	if retryable(err) {
		return fmt.Errorf("replica: %s: %w: %w", op, sharedlog.ErrUnavailable, err)
	}
	return fmt.Errorf("replica: %s: %w", op, err)
}

// retryable reports whether err is one a later attempt may overcome: no
// connection, no responder, no leader, a timeout.
func retryable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case 10005, // no suitable peers for placement: a server is offline
			10008, // cluster temporarily unavailable
			10118, // stream offline
			10158: // duplicate message id in process
			return true
		}
		return apiErr.Code == 503
	}
	return errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrConnectionClosed) ||
		errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, nats.ErrReconnectBufExceeded) ||
		errors.Is(err, nats.ErrNoServers) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}
