package replica

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meterdb/meterdb/sharedlog"
)

// headerRoom is what Append leaves of the servers' max_payload for the
// message's headers (the message id).
const headerRoom = 256

// MaxRecord returns the size of the largest record Append takes: the
// servers' max_payload less room for the message's headers; 0 while it
// is not known (never connected).
func (l *Log) MaxRecord() int {
	if max := l.nc.MaxPayload(); max > headerRoom {
		return int(max - headerRoom)
	}
	return 0
}

// Append publishes rec on the stream and returns its stream sequence once
// a quorum of the stream's replicas stored it. rec is not retained.
//
// Every record gets a message id unique to this Log; a publish whose
// acknowledgement does not come within AttemptTimeout, or that fails for
// want of a connection, a responder or a stream leader, is sent again
// with the same id until AppendTimeout has passed since the call began,
// so the stream stores it once (its dedupe window is DuplicateWindow)
// and Append returns the sequence of the one stored copy. When
// AppendTimeout passes, Append returns an error wrapping
// sharedlog.ErrUnavailable: the record may or may not be in the log.
// When ctx ends first it returns an error wrapping ctx.Err(), and after
// Close ErrClosed.
func (l *Log) Append(ctx context.Context, rec []byte) (uint64, error) {
	ctx, done, err := l.enter(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	if max := l.nc.MaxPayload(); max > 0 && int64(len(rec)) > max-headerRoom {
		return 0, fmt.Errorf("%w: %d bytes, the servers take %d", ErrRecordTooLarge, len(rec), max-headerRoom)
	}
	msg := &nats.Msg{Subject: l.subject, Data: rec, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, l.idPrefix+strconv.FormatUint(l.idSeq.Add(1), 10))

	var seq uint64
	attempts, err := l.retry(ctx, "append", func(actx context.Context) error {
		ack, err := l.js.PublishMsg(actx, msg, jetstream.WithRetryAttempts(0))
		if err == nil && ack.Sequence == 0 {
			// Not expected of a server; never return position 0.
			err = errors.New("acknowledgement without a sequence")
		}
		if err == nil {
			seq = ack.Sequence
		}
		return err
	})
	switch {
	case errors.Is(err, sharedlog.ErrUnavailable) && ctx.Err() == nil:
		l.log.Warn("replica: append gives up", "attempts", attempts, "err", err)
	case err == nil && attempts > 1:
		l.log.Info("replica: append acknowledged after retries", "attempts", attempts, "seq", seq)
	}
	return seq, err
}
