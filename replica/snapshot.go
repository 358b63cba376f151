package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

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
	// The listing comes from a consumer on any replica of the bucket's
	// stream, which may lag. Once it shows this snapshot it shows every
	// snapshot stored before it, so the cleanup never misses one.
	var snaps []snapshot
	for wait := 10 * time.Millisecond; ; wait *= 2 {
		snaps, err = l.snapshots(ctx)
		if err != nil {
			return l.errorf("list snapshots", ctx, err)
		}
		if slices.ContainsFunc(snaps, func(s snapshot) bool { return s.name == name }) {
			break
		}
		if wait > time.Second {
			l.log.Warn("replica: the snapshot listing lags; older snapshots stay until the next put", "snapshot", name)
			return nil
		}
		select {
		case <-ctx.Done():
			return l.errorf("list snapshots", ctx, ctx.Err())
		case <-time.After(wait):
		}
	}
	// Keep the newest two (this one, unless a newer one came meanwhile,
	// and the one before).
	for i := 0; i+2 < len(snaps); i++ {
		if err := l.obs.Delete(ctx, snaps[i].name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return l.errorf("delete snapshot", ctx, err)
		}
	}
	return nil
}

// Snapshot returns the newest snapshot and a reader of it; the caller
// closes the reader, which fails after Close. The listing behind it comes
// from one replica of the bucket's stream, so a snapshot stored a moment
// ago by another process may not be seen yet (the one before it is, and
// it is kept). The reader's Read returns an error at the end when
// the data does not match the stored digest.
func (l *Log) Snapshot(ctx context.Context) (sharedlog.SnapshotInfo, io.ReadCloser, error) {
	ctx, done, err := l.enter(ctx)
	if err != nil {
		return sharedlog.SnapshotInfo{}, nil, err
	}
	defer done()
	for range 3 {
		info, err := l.newest(ctx)
		if err != nil {
			return sharedlog.SnapshotInfo{}, nil, err
		}
		// The reader outlives this call: it gets the Log's context, not ctx.
		res, err := l.obs.Get(l.ctx, info.name)
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			continue // deleted meanwhile by a newer put
		}
		if err != nil {
			return sharedlog.SnapshotInfo{}, nil, l.errorf("get snapshot", ctx, err)
		}
		return info.SnapshotInfo, res, nil
	}
	return sharedlog.SnapshotInfo{}, nil, fmt.Errorf("replica: get snapshot: %w: snapshots replaced while reading", sharedlog.ErrUnavailable)
}

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
	name string
}

func (l *Log) newest(ctx context.Context) (snapshot, error) {
	snaps, err := l.snapshots(ctx)
	if err != nil {
		return snapshot{}, l.errorf("list snapshots", ctx, err)
	}
	if len(snaps) == 0 {
		return snapshot{}, fmt.Errorf("replica: %w in bucket %s", sharedlog.ErrNoSnapshot, l.bucket)
	}
	return snaps[len(snaps)-1], nil
}

// snapshots lists the stored snapshots, oldest first.
func (l *Log) snapshots(ctx context.Context) ([]snapshot, error) {
	objs, err := l.obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var snaps []snapshot
	for _, o := range objs {
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
		snaps = append(snaps, snapshot{sharedlog.SnapshotInfo{Pos: pos, Time: t, Size: int64(o.Size)}, o.Name})
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
