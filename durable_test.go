package meterdb_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/store"
)

// logRecords counts the log records of a closed store file.
func logRecords(t *testing.T, path string) int {
	t.Helper()
	s, err := store.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := 0
	err = s.Replay(0, func(uint64, *store.Group) error { n++; return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLogCompaction checks that log records leave the file once a
// checkpoint covers them and they are older than the retention window, and
// that nothing they held is lost: totals, identifiers of the window, and
// cancellation rules.
func TestLogCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "compact.db")
	clock := newTestClock(t0)
	opts := &meterdb.Options{Now: clock.Now, NoFsync: true}
	db := openDB(t, path, opts)
	m := mustMeter(t, db, meter.Params{EventName: "e", Formula: meter.Sum})
	for i := range 50 {
		mustRecord(t, db, ev("e", "c", "2", "old"+string(rune('a'+i%26))+string(rune('a'+i/26))))
		clock.Add(time.Minute)
	}
	clock.Add(25 * time.Hour) // the first events leave the 24-hour window
	for i := range 50 {
		mustRecord(t, db, ev("e", "c", "3", "new"+string(rune('a'+i%26))+string(rune('a'+i/26))))
		clock.Add(2 * time.Minute) // pruning runs at most once a minute
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Pruning goes up to the last receipt-time mark known to be old: the
	// last old record stays until a newer mark within a minute of the
	// cutoff exists.
	if n := logRecords(t, path); n != 51 {
		t.Fatalf("the log holds %d records after compaction, want the 50 recent ones and the last old one", n)
	}
	db = openDB(t, path, opts)
	defer db.Close()
	if got := dayTotal(t, db, m, "c"); got != "100/250" {
		t.Fatalf("total after compaction and reopen %s, want 100/250", got)
	}
	// Recent identifiers are still taken; old ones may be reused.
	if _, err := db.Record(ctx, ev("e", "c", "3", "newaa")); !errors.Is(err, event.ErrDuplicate) {
		t.Fatalf("recent identifier after reopen: %v, want a duplicate", err)
	}
	mustRecord(t, db, ev("e", "c", "1", "oldaa"))
	if err := db.Cancel(ctx, "e", "newab"); err != nil {
		t.Fatalf("cancelling a recent event: %v", err)
	}
	if got := dayTotal(t, db, m, "c"); got != "100/248" {
		t.Fatalf("total %s, want 100/248", got)
	}
}

// TestOpenBadFiles checks that Open reports what is wrong with a file that
// is not a healthy store, and never creates a new store over it.
func TestOpenBadFiles(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	os.WriteFile(garbage, []byte("not a database, just some text that is long enough to look at\n"), 0o600)
	if _, err := meterdb.Open(garbage, nil); !errors.Is(err, store.ErrNotStore) {
		t.Fatalf("Open of a text file: %v, want store.ErrNotStore", err)
	}
	if data, _ := os.ReadFile(garbage); string(data[:3]) != "not" {
		t.Fatal("Open changed a file that is not a store")
	}
	locked := filepath.Join(dir, "locked.db")
	db := openDB(t, locked, nil)
	defer db.Close()
	if _, err := meterdb.Open(locked, &meterdb.Options{LockTimeout: 50 * time.Millisecond}); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second Open: %v, want store.ErrLocked", err)
	}
	dir2 := filepath.Join(dir, "missing-dir", "x.db")
	if _, err := meterdb.Open(dir2, nil); err == nil {
		t.Fatal("Open in a missing directory succeeded")
	}
}

// TestCloseLeavesNoGoroutines checks that Close stops the committer and
// the checkpointer, and that Close after Close is harmless.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	for _, d := range []meterdb.Durability{meterdb.DurabilitySync, meterdb.DurabilityBuffered} {
		db := openDB(t, filepath.Join(t.TempDir(), "g.db"), &meterdb.Options{Durability: d, CheckpointInterval: time.Millisecond})
		mustMeter(t, db, meter.Params{EventName: "e", Formula: meter.Count})
		mustRecord(t, db, ev("e", "c", "", "a"))
		time.Sleep(5 * time.Millisecond) // let a checkpoint run
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := db.Record(ctx, ev("e", "c", "", "b")); !errors.Is(err, meterdb.ErrClosed) {
			t.Fatalf("Record after Close: %v", err)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}
