package sharedlog

import (
	"context"
	"io"
	"time"
)

// Log is an ordered, replicated log of records. Positions start at 1 and
// increase in log order; every process reading the log sees the same
// records at the same positions.
type Log interface {
	// Append adds rec at the end of the log and returns its position once
	// the log holds it as durably as it promises (for a replicated log:
	// stored by a quorum of its replicas). An error means the record may
	// or may not be in the log; an error wrapping ErrUnavailable says the
	// log cannot be reached now and a later retry may succeed.
	Append(ctx context.Context, rec []byte) (pos uint64, err error)

	// Read calls fn with every record after position after, in log order,
	// and then waits for new ones, until ctx ends (Read returns ctx.Err())
	// or fn returns an error (Read returns it). When the log no longer
	// holds the record after after, Read returns an error wrapping
	// ErrTruncated. While the log cannot be reached, Read keeps trying.
	Read(ctx context.Context, after uint64, fn func(pos uint64, rec []byte) error) error

	// Last returns the position of the newest record of the log, 0 when
	// the log is empty.
	Last(ctx context.Context) (uint64, error)

	// PutSnapshot stores a snapshot of a database's state after the record
	// at pos, read from r. A snapshot replaces older ones.
	PutSnapshot(ctx context.Context, pos uint64, r io.Reader) error

	// Snapshot returns the newest snapshot; the caller closes the reader.
	// It returns an error wrapping ErrNoSnapshot when there is none.
	Snapshot(ctx context.Context) (SnapshotInfo, io.ReadCloser, error)

	// SnapshotInfo describes the newest snapshot without reading it; it
	// returns an error wrapping ErrNoSnapshot when there is none.
	SnapshotInfo(ctx context.Context) (SnapshotInfo, error)

	// Close releases the log. Append and Read fail after it.
	Close() error
}

// SnapshotInfo describes a stored snapshot.
type SnapshotInfo struct {
	Pos  uint64    // the state covers the log up to and including Pos
	Time time.Time // when it was stored
	Size int64     // bytes
}

// Limited is implemented by a Log whose records have a size limit. A
// writer that combines the records of several callers into one keeps
// the combined record within it.
type Limited interface {
	// MaxRecord returns the size in bytes of the largest record Append
	// takes, 0 when it is not known now.
	MaxRecord() int
}
