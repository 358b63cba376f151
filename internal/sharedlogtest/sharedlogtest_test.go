package sharedlogtest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/meterdb/meterdb/sharedlog"
)

// TestContract checks the sharedlog.Log contract the core relies on:
// positions from 1 in append order for every client, Read delivering in
// order and then waiting, ErrTruncated, ErrUnavailable, snapshots and
// ErrClosed.
func TestContract(t *testing.T) {
	ctx := context.Background()
	s := New()
	a, b := s.Client(), s.Client()
	if last, err := a.Last(ctx); err != nil || last != 0 {
		t.Fatalf("Last of an empty log: %d, %v", last, err)
	}
	for i, c := range []sharedlog.Log{a, b, a} {
		pos, err := c.Append(ctx, []byte{byte('x' + i)})
		if err != nil || pos != uint64(i+1) {
			t.Fatalf("Append %d: %d, %v", i, pos, err)
		}
	}
	// Read delivers after the given position, in order, then waits.
	got := make(chan string, 10)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- b.Read(rctx, 1, func(pos uint64, rec []byte) error {
			got <- string(rune('0'+pos)) + string(rec)
			return nil
		})
	}()
	for _, want := range []string{"2y", "3z"} {
		if g := <-got; g != want {
			t.Fatalf("Read delivered %q, want %q", g, want)
		}
	}
	a.Append(ctx, []byte("w"))
	if g := <-got; g != "4w" {
		t.Fatalf("Read delivered %q after waiting, want 4w", g)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after its context ended: %v", err)
	}
	// An error from fn ends Read with it.
	stop := errors.New("stop")
	if err := a.Read(ctx, 0, func(uint64, []byte) error { return stop }); err != stop {
		t.Fatalf("Read whose fn fails: %v", err)
	}
	// Truncation.
	s.Truncate(3)
	if err := a.Read(ctx, 1, func(uint64, []byte) error { return nil }); !errors.Is(err, sharedlog.ErrTruncated) {
		t.Fatalf("Read of a dropped position: %v", err)
	}
	if err := a.Read(ctx, 2, func(pos uint64, _ []byte) error {
		if pos != 3 {
			t.Fatalf("first position after truncation %d", pos)
		}
		return stop
	}); err != stop {
		t.Fatal(err)
	}
	// Unavailability: Append and Last fail, Read waits.
	s.SetAvailable(false)
	if _, err := a.Append(ctx, []byte("v")); !errors.Is(err, sharedlog.ErrUnavailable) {
		t.Fatalf("Append while down: %v", err)
	}
	if _, err := a.Last(ctx); !errors.Is(err, sharedlog.ErrUnavailable) {
		t.Fatalf("Last while down: %v", err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if err := a.Read(wctx, 2, func(uint64, []byte) error { return stop }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read while down: %v, want it to wait", err)
	}
	wcancel()
	s.SetAvailable(true)
	// Snapshots.
	if _, err := a.SnapshotInfo(ctx); !errors.Is(err, sharedlog.ErrNoSnapshot) {
		t.Fatalf("SnapshotInfo without one: %v", err)
	}
	if err := a.PutSnapshot(ctx, 3, strings.NewReader("state")); err != nil {
		t.Fatal(err)
	}
	info, r, err := b.Snapshot(ctx)
	if err != nil || info.Pos != 3 || info.Size != 5 {
		t.Fatalf("Snapshot: %+v %v", info, err)
	}
	if data, _ := io.ReadAll(r); !bytes.Equal(data, []byte("state")) {
		t.Fatalf("snapshot data %q", data)
	}
	// Close.
	a.Close()
	a.Close()
	if _, err := a.Append(ctx, nil); !errors.Is(err, sharedlog.ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := a.Read(ctx, 0, func(uint64, []byte) error { return nil }); !errors.Is(err, sharedlog.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if _, err := b.Last(ctx); err != nil {
		t.Fatalf("another client after one closed: %v", err)
	}
}
