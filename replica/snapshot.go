package replica

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meterdb/meterdb/sharedlog"
)

// Snapshots are objects named snapshotPrefix + the zero-padded position
// they cover, with that position and their time in the metadata.
const (
	snapshotPrefix = "snapshot-"
	metaPos        = "pos"
	metaTime       = "time"
)

// PutSnapshot stores the snapshot read from r, covering the log up to and
// including pos, as a new object of the snapshot bucket (chunked,
// replicated like the stream, with a SHA-256 digest the reader checks).
// Once it is stored, PutSnapshot deletes the snapshots older than the one
// that was newest before it: the one before stays, so that a replica that
// began reading it before this put can finish. Snapshot and SnapshotInfo
// return the newest by position, so racing writers need no coordination.
func (l *Log) PutSnapshot(ctx context.Context, pos uint64, r io.Reader) error {
	ctx, done, err := l.enter(ctx)
	if err != nil {
		return err
	}
	defer done()
	name := fmt.Sprintf("%s%020d", snapshotPrefix, pos)
	_, err = l.obs.Put(ctx, jetstream.ObjectMeta{
		Name: name,
		Metadata: map[string]string{
			metaPos:  strconv.FormatUint(pos, 10),
			metaTime: l.opts.Now().UTC().Format(time.RFC3339Nano),
		},
	}, r)
	if err != nil {
		return l.errorf("put snapshot", ctx, err)
	}
	snaps, err := l.snapshots(ctx)
	if err != nil {
		return err
	}
	// Keep the newest two (this one, unless a newer one came meanwhile,
	// and the one before). The tombstone a delete leaves is purged, so
	// that the listing stays as short as what is stored.
	for i := 0; i+2 < len(snaps); i++ {
		_, err := l.retry(ctx, "delete snapshot", func(actx context.Context) error { return l.obs.Delete(actx, snaps[i].name) })
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			continue // the replica that answered lags, or another put (or an attempt whose answer was lost) deleted it: the next put tries again
		}
		if err != nil {
			return err
		}
		if _, err := l.retry(ctx, "purge deleted snapshot", func(actx context.Context) error {
			return l.objStream.Purge(actx, jetstream.WithPurgeSubject(snaps[i].subject))
		}); err != nil {
			return err
		}
	}
	return nil
}

// Snapshot returns the newest snapshot and a reader of it; the caller
// closes the reader, which fails after Close or once ctx ends. Each chunk
// is asked for as retry describes (an attempt waits at most
// AttemptTimeout, attempts go on through an election until AppendTimeout).
// The reader's Read returns an error at the end when the data does not
// match the stored digest.
func (l *Log) Snapshot(ctx context.Context) (sharedlog.SnapshotInfo, io.ReadCloser, error) {
	rctx := ctx
	ctx, done, err := l.enter(ctx)
	if err != nil {
		return sharedlog.SnapshotInfo{}, nil, err
	}
	defer done()
	info, err := l.newest(ctx)
	if err != nil {
		return sharedlog.SnapshotInfo{}, nil, err
	}
	return info.SnapshotInfo, &chunkReader{l: l, ctx: rctx, subject: "$O." + l.bucket + ".C." + info.nuid, left: info.chunks, seq: 1,
		digest: sha256.New(), want: info.digest, name: info.name}, nil
}

// chunkReader reads a snapshot's chunks one by one from the leader of
// the bucket's stream and checks the digest at the end. The object
// store's own reader takes its chunks from a consumer on any replica and
// ends when that replica has no more, which on a replica that lags is
// before the end (a digest mismatch).
type chunkReader struct {
	l       *Log
	ctx     context.Context // Snapshot's: ends the reads
	name    string
	subject string
	seq     uint64 // where the next chunk is looked for
	left    uint32 // chunks to read
	buf     []byte
	digest  hash.Hash
	want    string
	err     error
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.left == 0 {
			r.err = io.EOF
			if got := "SHA-256=" + base64.URLEncoding.EncodeToString(r.digest.Sum(nil)); got != r.want {
				r.err = fmt.Errorf("replica: snapshot %s: digest %s, want %s", r.name, got, r.want)
			}
			continue
		}
		ctx, done, err := r.l.enter(r.ctx)
		var (
			seq  uint64
			data []byte
		)
		if err == nil {
			seq, data, err = r.l.nextMsg(ctx, r.subject, r.seq)
			done()
		}
		if err != nil {
			r.err = fmt.Errorf("replica: snapshot %s: chunk after %d: %w", r.name, r.seq, err)
			continue
		}
		r.buf, r.seq = data, seq+1
		r.left--
		r.digest.Write(data)
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// Close releases nothing: the reader holds no subscription.
func (r *chunkReader) Close() error { return nil }

// SnapshotInfo describes the newest snapshot.
func (l *Log) SnapshotInfo(ctx context.Context) (sharedlog.SnapshotInfo, error) {
	ctx, done, err := l.enter(ctx)
	if err != nil {
		return sharedlog.SnapshotInfo{}, err
	}
	defer done()
	info, err := l.newest(ctx)
	return info.SnapshotInfo, err
}

type snapshot struct {
	sharedlog.SnapshotInfo
	name    string // object name
	subject string // of its metadata message
	nuid    string // names the subject of its chunks
	chunks  uint32
	digest  string // "SHA-256=" and the URL-safe base64 of the data's SHA-256
}

// lastMsg returns the data of the last message on subject of the bucket's
// stream, from the stream's leader. (The stream allows direct gets, which
// the client would send to any replica, and a replica may lag.)
func (l *Log) lastMsg(ctx context.Context, subject string) ([]byte, error) {
	_, data, err := l.msgGet(ctx, map[string]any{"last_by_subj": subject})
	return data, err
}

// nextMsg returns the first message on subject at or after seq of the
// bucket's stream, from the stream's leader.
func (l *Log) nextMsg(ctx context.Context, subject string, seq uint64) (uint64, []byte, error) {
	return l.msgGet(ctx, map[string]any{"next_by_subj": subject, "seq": seq})
}

// msgGet asks the bucket stream's leader for one message, as retry
// describes: an attempt waits at most AttemptTimeout.
func (l *Log) msgGet(ctx context.Context, q map[string]any) (uint64, []byte, error) {
	req, _ := json.Marshal(q)
	var msg *nats.Msg
	_, err := l.retry(ctx, "snapshot message", func(actx context.Context) error {
		var err error
		msg, err = l.nc.RequestWithContext(actx, "$JS.API.STREAM.MSG.GET."+l.objStream.CachedInfo().Config.Name, req)
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	var resp struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Seq  uint64 `json:"seq"`
			Data []byte `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, nil, err
	}
	if resp.Error != nil {
		if resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound {
			return 0, nil, jetstream.ErrMsgNotFound
		}
		return 0, nil, resp.Error
	}
	if resp.Message == nil {
		return 0, nil, jetstream.ErrMsgNotFound
	}
	return resp.Message.Seq, resp.Message.Data, nil
}

// snapshots lists the stored snapshots, oldest first, as the leader of
// the bucket's stream holds them: the object store's own listing reads a
// consumer on any replica of the stream, which may lag, and a snapshot
// just stored must be seen by the next reader.
func (l *Log) snapshots(ctx context.Context) ([]snapshot, error) {
	var si *jetstream.StreamInfo
	_, err := l.retry(ctx, "list snapshots", func(actx context.Context) error {
		var err error
		si, err = l.objStream.Info(actx, jetstream.WithSubjectFilter(l.metaSubjects))
		return err
	})
	if err != nil {
		return nil, err
	}
	var snaps []snapshot
	for subject := range si.State.Subjects {
		data, err := l.lastMsg(ctx, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // purged meanwhile
		}
		if err != nil {
			return nil, err
		}
		var o jetstream.ObjectInfo
		if err := json.Unmarshal(data, &o); err != nil {
			return nil, fmt.Errorf("snapshot metadata on %s: %w", subject, err)
		}
		if o.Deleted || !strings.HasPrefix(o.Name, snapshotPrefix) {
			continue
		}
		pos, err := strconv.ParseUint(o.Metadata[metaPos], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: metadata pos %q: %w", o.Name, o.Metadata[metaPos], err)
		}
		t, err := time.Parse(time.RFC3339Nano, o.Metadata[metaTime])
		if err != nil {
			t = o.ModTime
		}
		snaps = append(snaps, snapshot{sharedlog.SnapshotInfo{Pos: pos, Time: t, Size: int64(o.Size)}, o.Name, subject, o.NUID, o.Chunks, o.Digest})
	}
	slices.SortFunc(snaps, func(a, b snapshot) int {
		if a.Pos != b.Pos {
			if a.Pos < b.Pos {
				return -1
			}
			return 1
		}
		return a.Time.Compare(b.Time)
	})
	return snaps, nil
}

func (l *Log) newest(ctx context.Context) (snapshot, error) {
	snaps, err := l.snapshots(ctx)
	if err != nil {
		return snapshot{}, err
	}
	if len(snaps) == 0 {
		return snapshot{}, fmt.Errorf("replica: %w in bucket %s", sharedlog.ErrNoSnapshot, l.bucket)
	}
	return snaps[len(snaps)-1], nil
}
