package sharedlogtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/meterdb/meterdb/sharedlog"
)

// Shared is one log. The zero value is not usable; call New.
type Shared struct {
	mu      sync.Mutex // guards the fields below
	base    uint64     // position of recs[0]
	recs    [][]byte
	snap    []byte // newest snapshot; nil when none
	info    sharedlog.SnapshotInfo
	down    bool
	changed chan struct{} // closed and replaced on every change

	gate      chan struct{} // while not nil, Appends wait until it closes
	appends   int           // Append calls
	maxRecord int           // MaxRecord's answer; 0: no limit stated
}

// New returns an empty, available log.
func New() *Shared { return &Shared{base: 1, changed: make(chan struct{})} }

// changedLocked wakes every waiting Read.
func (s *Shared) changedLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Client returns a new handle on s, as one process would open it.
func (s *Shared) Client() sharedlog.Log { return &client{s: s, closed: make(chan struct{})} }

// Truncate drops the records before position pos.
func (s *Shared) Truncate(pos uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pos <= s.base {
		return
	}
	n := min(pos-s.base, uint64(len(s.recs)))
	s.recs = append([][]byte(nil), s.recs[n:]...)
	s.base += n
	s.changedLocked()
}

// SetAvailable cuts every client off (false) or reconnects them (true).
func (s *Shared) SetAvailable(up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = !up
	s.changedLocked()
}

// Last returns the position of the newest record, whatever the
// availability.
func (s *Shared) Last() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.base + uint64(len(s.recs)) - 1
}

// Hold makes every Append wait, once it counted itself, until Release:
// a test sees what writers do while appends are in flight.
func (s *Shared) Hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate == nil {
		s.gate = make(chan struct{})
	}
}

// Release lets the Appends held since Hold go on.
func (s *Shared) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
}

// Appends returns how many times Append was called, on any client.
func (s *Shared) Appends() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appends
}

// SetMaxRecord sets the record limit the clients state (MaxRecord) and
// enforce: a larger record fails Append. 0 states no limit.
func (s *Shared) SetMaxRecord(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxRecord = n
}

// ErrTooLarge is Append's error for a record above SetMaxRecord's limit.
var ErrTooLarge = errors.New("sharedlogtest: record larger than the limit")

// client is one process's handle.
type client struct {
	s         *Shared
	closeOnce sync.Once
	closed    chan struct{}
}

// checkLocked returns ErrClosed after Close and ErrUnavailable while s
// is down; s.mu is held.
func (c *client) checkLocked() error {
	select {
	case <-c.closed:
		return sharedlog.ErrClosed
	default:
	}
	if c.s.down {
		return fmt.Errorf("sharedlogtest: disconnected: %w", sharedlog.ErrUnavailable)
	}
	return nil
}

func (c *client) Append(ctx context.Context, rec []byte) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s := c.s
	s.mu.Lock()
	s.appends++
	gate := s.gate
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := c.checkLocked(); err != nil {
		return 0, err
	}
	if s.maxRecord > 0 && len(rec) > s.maxRecord {
		return 0, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(rec), s.maxRecord)
	}
	s.recs = append(s.recs, bytes.Clone(rec))
	s.changedLocked()
	return s.base + uint64(len(s.recs)) - 1, nil
}

// MaxRecord states the limit set by SetMaxRecord (sharedlog.Limited).
func (c *client) MaxRecord() int {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.s.maxRecord
}

func (c *client) Read(ctx context.Context, after uint64, fn func(pos uint64, rec []byte) error) error {
	s := c.s
	for {
		s.mu.Lock()
		select {
		case <-c.closed:
			s.mu.Unlock()
			return sharedlog.ErrClosed
		default:
		}
		wait := s.changed
		var batch [][]byte
		first := after + 1
		if !s.down {
			if first < s.base {
				s.mu.Unlock()
				return fmt.Errorf("sharedlogtest: position %d was dropped (the log starts at %d): %w", first, s.base, sharedlog.ErrTruncated)
			}
			if i := first - s.base; i < uint64(len(s.recs)) {
				batch = s.recs[i:] // records are never modified
			}
		}
		s.mu.Unlock()
		for i, rec := range batch {
			buf := bytes.Clone(rec)
			if err := fn(first+uint64(i), buf); err != nil {
				return err
			}
			for j := range buf {
				buf[j] = 0xEE // the callback must not keep rec
			}
			after = first + uint64(i)
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.closed:
			return sharedlog.ErrClosed
		case <-wait:
		}
	}
}

func (c *client) Last(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := c.checkLocked(); err != nil {
		return 0, err
	}
	return s.base + uint64(len(s.recs)) - 1, nil
}

func (c *client) PutSnapshot(ctx context.Context, pos uint64, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := c.checkLocked(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.snap = data
	s.info = sharedlog.SnapshotInfo{Pos: pos, Time: time.Now(), Size: int64(len(data))}
	return nil
}

func (c *client) Snapshot(ctx context.Context) (sharedlog.SnapshotInfo, io.ReadCloser, error) {
	info, data, err := c.snapshot(ctx)
	if err != nil {
		return info, nil, err
	}
	return info, io.NopCloser(bytes.NewReader(data)), nil
}

func (c *client) SnapshotInfo(ctx context.Context) (sharedlog.SnapshotInfo, error) {
	info, _, err := c.snapshot(ctx)
	return info, err
}

// snapshot returns the newest snapshot and its description, which match.
func (c *client) snapshot(ctx context.Context) (sharedlog.SnapshotInfo, []byte, error) {
	if err := ctx.Err(); err != nil {
		return sharedlog.SnapshotInfo{}, nil, err
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := c.checkLocked(); err != nil {
		return sharedlog.SnapshotInfo{}, nil, err
	}
	if s.snap == nil {
		return sharedlog.SnapshotInfo{}, nil, fmt.Errorf("sharedlogtest: %w", sharedlog.ErrNoSnapshot)
	}
	return s.info, s.snap, nil
}

func (c *client) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}
