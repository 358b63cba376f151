package replica

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/meterdb/meterdb/internal/natstest"
	"github.com/meterdb/meterdb/sharedlog"
)

// TestContractSingle runs the sharedlog.Log contract on one server with
// R1 streams.
func TestContractSingle(t *testing.T) {
	s := natstest.RunServer(t, nil)
	testContract(t, []string{s.ClientURL()}, 1)
}

// TestContractCluster runs the sharedlog.Log contract on a three-node
// cluster with R3 streams.
func TestContractCluster(t *testing.T) {
	c := natstest.StartCluster(t)
	testContract(t, c.ClientURLs(), 3)
}

func testContract(t *testing.T, urls []string, replicas int) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := func(stream string) Options {
		return Options{Stream: stream, Replicas: replicas}
	}

	t.Run("order", func(t *testing.T) {
		l := openLog(t, urls, opts("ORDER"))
		if last, err := l.Last(ctx); err != nil || last != 0 {
			t.Fatalf("Last of an empty log: %d, %v", last, err)
		}
		for i := range 50 {
			pos, err := l.Append(ctx, fmt.Appendf(nil, "r%d", i))
			if err != nil {
				t.Fatal(err)
			}
			if pos != uint64(i+1) {
				t.Fatalf("record %d at position %d", i, pos)
			}
		}
		if last, err := l.Last(ctx); err != nil || last != 50 {
			t.Fatalf("Last: %d, %v; want 50", last, err)
		}
		for _, after := range []uint64{0, 20, 49} {
			got := readN(t, l, after, int(50-after))
			checkContiguous(t, after, got)
			for _, e := range got {
				if want := fmt.Sprintf("r%d", e.pos-1); e.rec != want {
					t.Fatalf("position %d holds %q, want %q", e.pos, e.rec, want)
				}
			}
		}
		// A second Log on the existing stream sees the same records.
		l2 := openLog(t, urls, opts("ORDER"))
		if got := readN(t, l2, 45, 5); got[0] != (entry{46, "r45"}) {
			t.Fatalf("second Log reads %v after 45", got[0])
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		a, b, c := openLog(t, urls, opts("CONC")), openLog(t, urls, opts("CONC")), openLog(t, urls, opts("CONC"))
		stop := make(chan struct{})
		ld := runLoad([]*Log{a, b}, 4, stop)
		time.Sleep(500 * time.Millisecond)
		close(stop)
		ld.wait()
		if len(ld.failed) > 0 {
			t.Fatalf("%d appends failed, the first: %v", len(ld.failed), ld.failed[0])
		}
		n := ld.verify(t, c)
		if n != len(ld.acked) || n < 8 {
			t.Fatalf("the log holds %d records, %d were acknowledged", n, len(ld.acked))
		}
		// The writers read the same log as the third.
		if got, want := readN(t, a, 0, n), readN(t, c, 0, n); !equalEntries(got, want) {
			t.Fatal("two Logs read different records")
		}
		t.Logf("%d records from 8 writers on 2 Logs", n)
	})

	t.Run("tail", func(t *testing.T) {
		w, r := openLog(t, urls, opts("TAIL")), openLog(t, urls, opts("TAIL"))
		if _, err := w.Append(ctx, []byte("first")); err != nil {
			t.Fatal(err)
		}
		got := make(chan entry, 10)
		rctx, rcancel := context.WithCancel(ctx)
		var rerr error
		var wg sync.WaitGroup
		wg.Go(func() {
			rerr = r.Read(rctx, 1, func(pos uint64, rec []byte) error {
				got <- entry{pos, string(rec)}
				return nil
			})
		})
		time.Sleep(100 * time.Millisecond) // Read waits for records to come
		for i := range 3 {
			if _, err := w.Append(ctx, fmt.Appendf(nil, "later%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 3 {
			select {
			case e := <-got:
				if e != (entry{uint64(i + 2), fmt.Sprintf("later%d", i)}) {
					t.Fatalf("Read delivered %v", e)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Read delivered no new record")
			}
		}
		rcancel()
		wg.Wait()
		if !errors.Is(rerr, context.Canceled) {
			t.Fatalf("Read after its ctx ended: %v", rerr)
		}
	})

	t.Run("truncated", func(t *testing.T) {
		l := openLog(t, urls, opts("TRUNC"))
		for i := range 10 {
			if _, err := l.Append(ctx, fmt.Appendf(nil, "r%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		s, err := rawJS(t, urls).Stream(ctx, "TRUNC")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Purge(ctx, jetstream.WithPurgeKeep(3)); err != nil { // keeps 8, 9, 10
			t.Fatal(err)
		}
		for _, after := range []uint64{0, 6} {
			if got, err := readUpTo(l, after, 1, 10*time.Second); !errors.Is(err, sharedlog.ErrTruncated) {
				t.Fatalf("Read after %d of a log starting at 8: %v, %v; want ErrTruncated", after, got, err)
			}
		}
		got := readN(t, l, 7, 3)
		checkContiguous(t, 7, got)
		if got[0].rec != "r7" {
			t.Fatalf("position 8 holds %q", got[0].rec)
		}
		// Reading after the end of a stream that was recreated.
		if err := rawJS(t, urls).DeleteStream(ctx, "TRUNC"); err != nil {
			t.Fatal(err)
		}
		l2 := openLog(t, urls, opts("TRUNC"))
		if _, err := readUpTo(l2, 10, 1, 10*time.Second); !errors.Is(err, sharedlog.ErrTruncated) {
			t.Fatalf("Read after 10 of a new empty stream: %v; want ErrTruncated", err)
		}
	})

	t.Run("maxage", func(t *testing.T) {
		o := opts("AGE")
		// MaxAge is the time the last record has to be read in once
		// appended: under -race on two busy cores a cluster's consumer
		// has taken over a second to start, so it is not shorter.
		o.MaxAge, o.DuplicateWindow, o.AppendTimeout = 3*time.Second, 500*time.Millisecond, 500*time.Millisecond
		l := openLog(t, urls, o)
		for i := range 3 {
			if _, err := l.Append(ctx, fmt.Appendf(nil, "r%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			_, err := readUpTo(l, 0, 3, 2*time.Second)
			if errors.Is(err, sharedlog.ErrTruncated) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("records older than MaxAge still read: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		// The next record is still at position 4.
		if pos, err := l.Append(ctx, []byte("new")); err != nil || pos != 4 {
			t.Fatalf("Append after expiry: %d, %v", pos, err)
		}
		if got := readN(t, l, 3, 1); got[0] != (entry{4, "new"}) {
			t.Fatalf("read %v", got)
		}
	})

	t.Run("gap", func(t *testing.T) {
		// A stream created by someone else, allowing deletes: a deleted
		// record is a hole that Read must not skip silently.
		js := rawJS(t, urls)
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "GAP", Subjects: []string{"GAP.rec"}, Replicas: replicas}); err != nil {
			t.Fatal(err)
		}
		l := openLog(t, urls, opts("GAP"))
		for i := range 5 {
			if _, err := l.Append(ctx, fmt.Appendf(nil, "r%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		s, err := js.Stream(ctx, "GAP")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteMsg(ctx, 3); err != nil {
			t.Fatal(err)
		}
		got, err := readUpTo(l, 0, 4, 10*time.Second)
		if !errors.Is(err, sharedlog.ErrTruncated) {
			t.Fatalf("Read over a deleted record: %v, %v; want ErrTruncated", got, err)
		}
		if len(got) != 2 {
			t.Fatalf("Read delivered %v before the hole; want positions 1 and 2", got)
		}
		if got := readN(t, l, 3, 2); got[0].pos != 4 {
			t.Fatalf("Read after the hole: %v", got)
		}
	})

	t.Run("snapshots", func(t *testing.T) {
		o := opts("SNAP")
		now := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
		o.Now = func() time.Time { return now }
		l := openLog(t, urls, o)
		if _, err := l.SnapshotInfo(ctx); !errors.Is(err, sharedlog.ErrNoSnapshot) {
			t.Fatalf("SnapshotInfo of an empty bucket: %v", err)
		}
		if _, _, err := l.Snapshot(ctx); !errors.Is(err, sharedlog.ErrNoSnapshot) {
			t.Fatalf("Snapshot of an empty bucket: %v", err)
		}
		big := make([]byte, 300<<10) // several chunks
		rand.Read(big)
		for i, s := range []struct {
			pos  uint64
			data []byte
		}{{10, []byte("ten")}, {20, big}, {30, []byte("thirty")}} {
			now = now.Add(time.Minute)
			if err := l.PutSnapshot(ctx, s.pos, bytes.NewReader(s.data)); err != nil {
				t.Fatal(err)
			}
			info, r, err := l.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(r)
			r.Close()
			if err != nil {
				t.Fatal(err)
			}
			want := sharedlog.SnapshotInfo{Pos: s.pos, Time: now, Size: int64(len(s.data))}
			if info != want || !bytes.Equal(data, s.data) {
				t.Fatalf("snapshot %d: %+v with %d bytes; want %+v", i, info, len(data), want)
			}
			if info2, err := l.SnapshotInfo(ctx); err != nil || info2 != want {
				t.Fatalf("SnapshotInfo: %+v, %v; want %+v", info2, err, want)
			}
		}
		// The reader checks the digest.
		_, rc, err := l.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rc.(*chunkReader).want = "SHA-256=not-this"
		if _, err := io.ReadAll(rc); err == nil || !strings.Contains(err.Error(), "digest") {
			t.Fatalf("reading a snapshot whose digest differs: %v", err)
		}
		// An older snapshot stored late does not replace the newest.
		if err := l.PutSnapshot(ctx, 25, bytes.NewReader([]byte("late"))); err != nil {
			t.Fatal(err)
		}
		if info, err := l.SnapshotInfo(ctx); err != nil || info.Pos != 30 {
			t.Fatalf("after a late put: %+v, %v", info, err)
		}
		// The bucket keeps the newest two, 25 and 30, and no tombstone
		// of the deleted ones.
		snaps, err := l.snapshots(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(snaps) != 2 || snaps[0].Pos != 25 || snaps[1].Pos != 30 {
			t.Fatalf("bucket holds %+v", snaps)
		}
		si, err := l.objStream.Info(ctx, jetstream.WithSubjectFilter(l.metaSubjects))
		if err != nil {
			t.Fatal(err)
		}
		if len(si.State.Subjects) != 2 {
			t.Fatalf("metadata subjects %v", si.State.Subjects)
		}
	})

	t.Run("close", func(t *testing.T) {
		l := openLog(t, urls, opts("CLOSE"))
		if _, err := l.Append(ctx, []byte("x")); err != nil {
			t.Fatal(err)
		}
		rerr := make(chan error, 1)
		go func() {
			rerr <- l.Read(context.Background(), 0, func(uint64, []byte) error { return nil })
		}()
		time.Sleep(200 * time.Millisecond)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-rerr:
			if !errors.Is(err, sharedlog.ErrClosed) {
				t.Fatalf("Read in flight at Close: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Close returned while Read goes on")
		}
		if err := l.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := l.Append(ctx, []byte("y")); !errors.Is(err, sharedlog.ErrClosed) {
			t.Fatalf("Append after Close: %v", err)
		}
		if _, err := l.Last(ctx); !errors.Is(err, sharedlog.ErrClosed) {
			t.Fatalf("Last after Close: %v", err)
		}
		if err := l.Read(ctx, 0, nil); !errors.Is(err, sharedlog.ErrClosed) {
			t.Fatalf("Read after Close: %v", err)
		}
		if err := l.PutSnapshot(ctx, 1, bytes.NewReader(nil)); !errors.Is(err, sharedlog.ErrClosed) {
			t.Fatalf("PutSnapshot after Close: %v", err)
		}
	})

	t.Run("ctx", func(t *testing.T) {
		l := openLog(t, urls, opts("CTX"))
		cctx, ccancel := context.WithCancel(ctx)
		ccancel()
		if _, err := l.Append(cctx, []byte("x")); !errors.Is(err, context.Canceled) {
			t.Fatalf("Append with an ended ctx: %v", err)
		}
		if last, err := l.Last(ctx); err != nil || last != 0 {
			t.Fatalf("Last: %d, %v", last, err)
		}
	})
}

func equalEntries(a, b []entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
