package meterdb_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/store"
)

// TestReadOnly opens a file written by another DB read-only: its data is
// all there, every write is refused with ErrReadOnly, Close leaves the
// file byte for byte as it was, read-only opens share the file and a
// writer is locked out while they hold it.
func TestReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ro.db")
	clock := newTestClock(t0)
	w := openDB(t, path, &meterdb.Options{Now: clock.Now, NoFsync: true})
	m := mustMeter(t, w, meter.Params{EventName: "tokens", Formula: meter.Sum})
	e := mustRecord(t, w, ev("tokens", "cus_a", "5", "id1"))
	mustRecord(t, w, ev("tokens", "cus_b", "7", "id2"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	opts := &meterdb.Options{Now: clock.Now, ReadOnly: true, LockTimeout: 50 * time.Millisecond}
	r1 := openDB(t, path, opts)
	r2 := openDB(t, path, opts) // a second reader shares the lock
	day := t0.Truncate(24 * time.Hour)
	for _, r := range []*meterdb.DB{r1, r2} {
		top, err := r.TopCustomers(ctx, meterdb.TopParams{Meter: m.ID, Start: day, End: day.Add(24 * time.Hour)})
		if err != nil || len(top) != 2 || top[0].Customer != "cus_b" || top[1].Value != meterdb.Int128Of(5) {
			t.Fatalf("TopCustomers on the read-only DB = %v, %v", top, err)
		}
	}
	if _, err := meterdb.Open(path, &meterdb.Options{LockTimeout: 50 * time.Millisecond}); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("opening for writing while readers hold the file: %v, want store.ErrLocked", err)
	}

	writes := map[string]error{}
	_, writes["Record"] = r1.Record(ctx, ev("tokens", "cus_a", "1", ""))
	_, writes["CreateMeter"] = r1.CreateMeter(ctx, meter.Params{DisplayName: "x", EventName: "other", Formula: meter.Count})
	_, writes["DeactivateMeter"] = r1.DeactivateMeter(ctx, m.ID)
	writes["Cancel"] = r1.Cancel(ctx, "tokens", e.Identifier)
	writes["PutKV"] = r1.PutKV(ctx, "ns", "k", []byte("v"), t0.Add(time.Hour))
	writes["DeleteKV"] = r1.DeleteKV(ctx, "ns", "k")
	for what, err := range writes {
		if !errors.Is(err, meterdb.ErrReadOnly) {
			t.Errorf("%s on a read-only DB: %v, want ErrReadOnly", what, err)
		}
	}
	s := total(t, r1, m, "cus_a", day, day.Add(24*time.Hour))
	if s.Value != meterdb.Int128Of(5) || s.Count != 1 {
		t.Fatalf("after the refused writes cus_a has %v", s)
	}
	if err := errors.Join(r1.Close(), r2.Close()); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("closing the read-only DBs changed the file")
	}
	if _, err := meterdb.Open(filepath.Join(t.TempDir(), "missing.db"), opts); err == nil {
		t.Fatal("opening a missing file read-only succeeded")
	}
}
