package meterdb_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

// TestMemoryEstimate checks that Stats.MemoryBytes is within a factor of
// two of the heap the database actually grows by.
func TestMemoryEstimate(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates")
	}
	clock := newTestClock(t0)
	customers := make([]string, 1000)
	for i := range customers {
		customers[i] = "cus_" + strconv.Itoa(i)
	}
	const n = 200_000
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = event.Event{
			Name: "e", Identifier: "id_" + strconv.Itoa(i),
			Payload:   map[string]string{"stripe_customer_id": customers[i%len(customers)], "value": "3"},
			Timestamp: t0.Add(-time.Duration(i%(30*24*60)) * time.Minute),
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	db, err := meterdb.Open("", &meterdb.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mustMeter(t, db, meter.Params{EventName: "e", Formula: meter.Sum})
	for i := 0; i < n; i += 1000 {
		if _, err := db.RecordBatch(ctx, evs[i:i+1000]); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(evs) // the events' strings are the caller's, before and after
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	est := db.Stats().MemoryBytes
	t.Logf("heap grew %d bytes, estimate %d (%.2f)", grown, est, float64(est)/float64(grown))
	if est < grown/2 || est > grown*2 {
		t.Fatalf("estimate %d bytes, heap grew %d", est, grown)
	}
	runtime.KeepAlive(db)
}

// TestStatsCounters sends known traffic and checks that every counter
// moved by exactly what it should, in memory and in a file.
func TestStatsCounters(t *testing.T) {
	for _, file := range []bool{false, true} {
		t.Run(fmt.Sprintf("file=%v", file), func(t *testing.T) {
			clock := newTestClock(t0)
			path := ""
			if file {
				path = filepath.Join(t.TempDir(), "stats.db")
			}
			db := openDB(t, path, &meterdb.Options{Now: clock.Now, Durability: meterdb.DurabilityBuffered})
			if err := db.Ready(); err != nil {
				t.Fatalf("Ready of an open database: %v", err)
			}
			a := mustMeter(t, db, meter.Params{EventName: "a", Formula: meter.Sum})
			b := mustMeter(t, db, meter.Params{EventName: "b", Formula: meter.Count})
			batch := []event.Event{
				ev("a", "c1", "1", "a1"), ev("a", "c2", "2", "a2"), ev("a", "c1", "3", "dup"),
				ev("b", "c1", "", "b1"), ev("b", "c3", "", "b2"),
				ev("nope", "c1", "1", "n1"), ev("a", "c1", "x", "bad"), ev("a", "c1", "1", "a2"),
			}
			errs, err := db.RecordBatch(ctx, batch)
			if err != nil {
				t.Fatal(err)
			}
			if n := countErrs(errs); n != 3 {
				t.Fatalf("%d errors, want 3: %v", n, errs)
			}
			for range 2 {
				if _, err := db.Record(ctx, ev("a", "c1", "1", "dup")); !errors.Is(err, event.ErrDuplicate) {
					t.Fatalf("duplicate: %v", err)
				}
			}
			if err := db.Cancel(ctx, "a", "a1"); err != nil {
				t.Fatal(err)
			}

			s := db.Stats()
			want := []meterdb.MeterStats{
				{Rejected: 1, RejectedByCode: map[string]int64{event.CodeNoMeter: 1}},
				{ID: a.ID, EventName: "a", Accepted: 3, Rejected: 1, Duplicate: 3, Cancelled: 1,
					RejectedByCode: map[string]int64{event.CodeInvalidValue: 1}},
				{ID: b.ID, EventName: "b", Accepted: 2},
			}
			if !reflect.DeepEqual(s.ByMeter, want) {
				t.Errorf("ByMeter\n got %+v\nwant %+v", s.ByMeter, want)
			}
			if s.EventsAccepted != 5 || s.EventsRejected != 2 || s.EventsDuplicate != 3 || s.EventsCancelled != 1 {
				t.Errorf("totals %d/%d/%d/%d, want 5/2/3/1", s.EventsAccepted, s.EventsRejected, s.EventsDuplicate, s.EventsCancelled)
			}
			// One batch of 8 (bucket <= 10) and two Record calls (bucket <= 1).
			if h := s.BatchEvents; h.Count() != 3 || h.Sum != 10 || h.Counts[0] != 2 || h.Counts[3] != 1 || h.Bounds[3] != 10 {
				t.Errorf("BatchEvents %+v", h)
			}
			if s.Durability != meterdb.DurabilityBuffered || s.InMemory != !file {
				t.Errorf("Durability %v, InMemory %v", s.Durability, s.InMemory)
			}
			if !file {
				if s.CommitEvents.Count() != 0 || s.FileBytes != 0 || s.LogRecords != 0 {
					t.Errorf("store stats of an in-memory database: %+v", s)
				}
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
				if err := db.Ready(); !errors.Is(err, meterdb.ErrClosed) {
					t.Errorf("Ready after Close: %v", err)
				}
				return
			}
			if err := db.Sync(); err != nil {
				t.Fatal(err)
			}
			s = db.Stats()
			// Two log records: the group of 5 events, and the cancellation.
			if h := s.CommitEvents; h.Sum != 6 || s.LogRecords != 2 || s.LogBytes <= 0 {
				t.Errorf("CommitEvents %+v, LogRecords %d, LogBytes %d", h, s.LogRecords, s.LogBytes)
			}
			if n := s.CommitEvents.Count(); n < 1 || n > 2 || s.CommitDuration.Count() != n || s.SyncDuration.Count() != n {
				t.Errorf("%d commits, %d commit durations, %d sync durations",
					n, s.CommitDuration.Count(), s.SyncDuration.Count())
			}
			if s.CommitDuration.Sum <= 0 || s.SyncDuration.Sum <= 0 || s.SyncDuration.Sum > s.CommitDuration.Sum {
				t.Errorf("commit time %v s, sync time %v s", s.CommitDuration.Sum, s.SyncDuration.Sum)
			}
			if fi, err := os.Stat(path); err != nil || s.FileBytes != fi.Size() {
				t.Errorf("FileBytes %d, file %v %v", s.FileBytes, fi, err)
			}
			if s.Checkpoints != 0 || !s.LastCheckpoint.IsZero() || s.WriteFailed {
				t.Errorf("before a checkpoint: %+v", s)
			}
			logBytes := s.LogBytes
			clock.Add(90 * time.Second)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if err := db.Ready(); !errors.Is(err, meterdb.ErrClosed) {
				t.Errorf("Ready after Close: %v", err)
			}
			s = db.Stats()
			if s.Checkpoints != 1 || !s.LastCheckpoint.Equal(clock.Now()) || s.CheckpointDuration.Count() != 1 {
				t.Errorf("after Close: %d checkpoints, last %v (want %v), %d durations",
					s.Checkpoints, s.LastCheckpoint, clock.Now(), s.CheckpointDuration.Count())
			}
			// A reopened database counts the log it finds.
			db = openDB(t, path, &meterdb.Options{Now: clock.Now})
			defer db.Close()
			if s := db.Stats(); s.LogRecords != 2 || s.LogBytes != logBytes || s.EventsAccepted != 0 || s.Durability != meterdb.DurabilitySync {
				t.Errorf("reopened: LogRecords %d, LogBytes %d (want %d), accepted %d", s.LogRecords, s.LogBytes, logBytes, s.EventsAccepted)
			}
		})
	}
}

func countErrs(errs []error) int {
	n := 0
	for _, err := range errs {
		if err != nil {
			n++
		}
	}
	return n
}

// TestReadyDiskFull checks that Ready and Stats.WriteFailed report a
// buffered database whose commits wait for disk space, and that both
// clear once space returns.
func TestReadyDiskFull(t *testing.T) {
	dir := smallDisk(t, 2<<20)
	db, err := meterdb.Open(filepath.Join(dir, "ready.db"), &meterdb.Options{Durability: meterdb.DurabilityBuffered,
		FlushInterval: 5 * time.Millisecond, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mustMeter(t, db, meter.Params{EventName: "calls", Formula: meter.Sum})
	if _, err := db.RecordBatch(ctx, usageBatch("before", "c", 100)); err != nil {
		t.Fatal(err)
	}
	if err := db.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := db.Ready(); err != nil || db.Stats().WriteFailed {
		t.Fatalf("before the disk is full: Ready %v, WriteFailed %v", err, db.Stats().WriteFailed)
	}
	filler := fillDisk(t, dir)
	var ferr error
	for i := 0; i < 2000 && ferr == nil; i++ {
		if _, ferr = db.RecordBatch(ctx, usageBatch(fmt.Sprintf("full%d", i), "c", 200)); ferr == nil {
			ferr = db.Sync()
		}
	}
	if !errors.Is(ferr, meterdb.ErrUnavailable) {
		t.Fatalf("filling the disk: %v", ferr)
	}
	if err := db.Ready(); !errors.Is(err, meterdb.ErrUnavailable) || !db.Stats().WriteFailed {
		t.Errorf("while a batch waits for space: Ready %v, WriteFailed %v", err, db.Stats().WriteFailed)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for db.Ready() != nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := db.Ready(); err != nil || db.Stats().WriteFailed {
		t.Errorf("after space returned: Ready %v, WriteFailed %v", err, db.Stats().WriteFailed)
	}
}
