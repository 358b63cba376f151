package meterdb_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/store"
)

// copyFixture copies the file at src (a file an earlier format's code
// wrote) into a temporary directory and returns the copy's path.
func copyFixture(t *testing.T, src string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Opening a format 1 file upgrades it; meters, summaries and key-value
// records are what the format 1 code answered for it, and the upgraded
// file verifies clean.
func TestUpgradeV1Summaries(t *testing.T) {
	path := copyFixture(t, "store/testdata/v1.db")
	var golden struct {
		Now       time.Time
		Summaries []struct {
			Meter, Customer string
			Grouping        meterdb.Grouping
			Summaries       []meterdb.Summary
		}
	}
	data, err := os.ReadFile("store/testdata/v1-summaries.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &golden); err != nil {
		t.Fatal(err)
	}
	if r, err := meterdb.Verify(path, nil); err != nil || r.Format != 1 || !r.OK() {
		t.Fatalf("Verify of the format 1 file: %v\n%s", err, r.String())
	}
	db, err := meterdb.Open(path, &meterdb.Options{Now: func() time.Time { return golden.Now }})
	if err != nil {
		t.Fatal(err)
	}
	day := golden.Now.Truncate(24 * time.Hour)
	nonEmpty := 0
	for _, g := range golden.Summaries {
		got, err := db.Summaries(ctx, meterdb.SummaryParams{Meter: g.Meter, Customer: g.Customer,
			Start: day.Add(-3 * 24 * time.Hour), End: day.Add(24 * time.Hour), Grouping: g.Grouping})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, g.Summaries) && !(len(got) == 0 && len(g.Summaries) == 0) {
			t.Fatalf("%s %s %q: %+v, format 1 gave %+v", g.Meter, g.Customer, g.Grouping, got, g.Summaries)
		}
		if len(got) > 0 && got[0].Count > 0 {
			nonEmpty++
		}
	}
	if nonEmpty < 30 {
		t.Fatalf("only %d non-empty summaries compared", nonEmpty)
	}
	ms, _, err := db.ListMeters(ctx, meter.ListParams{Limit: 100})
	if err != nil || len(ms) != 4 {
		t.Fatalf("ListMeters: %d meters, %v", len(ms), err)
	}
	for _, kv := range []struct{ ns, key, value string }{
		{"idem", "key-1", `{"status":200}`}, {"sessions", "sess_1", "token"}, {"idem", "key-2", "\x00\x01\x02\xff"},
	} {
		if v, ok, err := db.GetKV(ctx, kv.ns, kv.key); err != nil || !ok || string(v) != kv.value {
			t.Fatalf("GetKV(%s, %s) = %q, %v, %v", kv.ns, kv.key, v, ok, err)
		}
	}
	// An identifier of the format 1 log is still taken.
	_, err = db.Record(ctx, event.Event{Name: "sum_ev", Identifier: "d-sum_ev-5", Payload: map[string]string{"stripe_customer_id": "cus_0", "value": "1"}})
	if !errors.Is(err, event.ErrDuplicate) {
		t.Fatalf("re-recording an identifier of the format 1 log: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := meterdb.Verify(path, nil)
	if err != nil || r.Format != store.FormatVersion || r.ComparedWindows == 0 || r.CompleteLog {
		t.Fatalf("Verify of the upgraded file: %v\n%s", err, r.String())
	}
	// The log of this file was pruned: a checkpoint record in a compared
	// window that the log does not back is still found.
	s, err := store.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var rec store.AggRecord
	s.LoadAggregates(func(a *store.AggRecord) error {
		if !a.Day && a.Start >= r.ComparedFrom.Unix() && rec.State == nil {
			rec = *a
			rec.State = bytes.Clone(a.State)
		}
		return nil
	})
	if rec.State == nil {
		t.Fatalf("no hour record from %v on", r.ComparedFrom)
	}
	rec.Customer = "cus_phantom"
	mark, _ := s.LastMark()
	if err := s.Checkpoint(mark, []store.AggRecord{rec}, 0, 0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	r, err = meterdb.Verify(path, nil)
	if !errors.Is(err, store.ErrCorrupt) || !strings.Contains(strings.Join(r.Problems, "\n"), `customer "cus_phantom", hour`) {
		t.Fatalf("Verify of a phantom checkpoint record: %v\n%s", err, r.String())
	}
}

// fillDB records events, a cancellation and key-value records, and closes
// the database (which writes a checkpoint).
func fillDB(t *testing.T, path string, clock *testClock) (meter.Meter, int64) {
	t.Helper()
	db := openDB(t, path, &meterdb.Options{Now: clock.Now, NoFsync: true})
	m := mustMeter(t, db, meter.Params{EventName: "e", Formula: meter.Sum})
	mustMeter(t, db, meter.Params{EventName: "l", Formula: meter.Last})
	var sum int64
	for i := range 40 {
		v := int64(i*7%23 - 5)
		sum += v
		mustRecord(t, db, ev("e", fmt.Sprint("cus_", i%3), fmt.Sprint(v), fmt.Sprint("id-", i)))
		mustRecord(t, db, ev("l", "cus_0", fmt.Sprint(i), fmt.Sprint("l-", i)))
		clock.Add(7 * time.Minute)
	}
	if err := db.Cancel(ctx, "e", "id-4"); err != nil {
		t.Fatal(err)
	}
	sum -= 4*7%23 - 5
	if err := db.PutKV(ctx, "idem", "k1", []byte("response"), clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return m, sum
}

// A flipped byte inside any log record makes Open refuse the file and name
// the record; inside a key-value record, the read fails naming it. Never a
// changed total, a lost identifier or a changed value.
func TestFlippedBytesNeverMiscount(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flip.db")
	clock := newTestClock(t0)
	m, _ := fillDB(t, path, clock)
	var locs [][]byte
	b, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	b.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("log")).ForEach(func(k, _ []byte) error { locs = append(locs, bytes.Clone(k)); return nil })
	})
	b.Close()
	if len(locs) < 40 {
		t.Fatalf("%d log records", len(locs))
	}
	flip := func(bucket [][]byte, key []byte, i int) (restore func(), ok bool) {
		var orig []byte
		b, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		get := func(tx *bolt.Tx) *bolt.Bucket {
			bk := tx.Bucket(bucket[0])
			for _, n := range bucket[1:] {
				bk = bk.Bucket(n)
			}
			return bk
		}
		b.Update(func(tx *bolt.Tx) error {
			orig = bytes.Clone(get(tx).Get(key))
			if i >= len(orig) {
				return nil
			}
			v := bytes.Clone(orig)
			v[i] ^= 0x01
			return get(tx).Put(key, v)
		})
		return func() {
			b, _ := bolt.Open(path, 0o600, &bolt.Options{NoSync: true})
			b.Update(func(tx *bolt.Tx) error { return get(tx).Put(key, orig) })
			b.Close()
		}, i < len(orig)
	}
	flips := 0
	for _, k := range []([]byte){locs[0], locs[len(locs)/2], locs[len(locs)-1]} {
		loc := binary.BigEndian.Uint64(k)
		for i := 0; ; i++ {
			restore, ok := flip([][]byte{[]byte("log")}, k, i)
			if !ok {
				break
			}
			db, err := meterdb.Open(path, &meterdb.Options{Now: clock.Now, NoFsync: true})
			if err == nil {
				s := total(t, db, m, "cus_1", t0.Add(-time.Hour), t0.Add(24*time.Hour))
				db.Close()
				t.Fatalf("log record %d, byte %d flipped: Open succeeded (cus_1 total %d/%s)", loc, i, s.Count, s.Value)
			}
			if !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("log record %d:", loc)) {
				t.Fatalf("log record %d, byte %d flipped: %v", loc, i, err)
			}
			restore()
			flips++
		}
	}
	for i := 0; ; i++ {
		restore, ok := flip([][]byte{[]byte("aux"), []byte("idem")}, []byte("k1"), i)
		if !ok {
			break
		}
		db, err := meterdb.Open(path, &meterdb.Options{Now: clock.Now, NoFsync: true})
		if err != nil {
			t.Fatal(err)
		}
		v, found, err := db.GetKV(ctx, "idem", "k1")
		db.Close()
		if !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), `key-value record "idem"/"k1"`) {
			t.Fatalf("key-value record, byte %d flipped: GetKV = %q, %v, %v", i, v, found, err)
		}
		restore()
		flips++
	}
	if r, err := meterdb.Verify(path, nil); err != nil {
		t.Fatalf("restored file: %v\n%s", err, r.String())
	}
	t.Logf("%d flips refused", flips)
}

// Verify passes a clean file, and reports a flipped byte, a missing log
// location and a checkpoint that disagrees with the log.
func TestVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.db")
	clock := newTestClock(t0)
	fillDB(t, path, clock)
	r, err := meterdb.Verify(path, nil)
	if err != nil || !r.OK() || !r.CompleteLog || r.Events != 80 || r.Cancels != 1 || r.KVRecords != 1 || r.ComparedWindows < 10 {
		t.Fatalf("clean file: %v\n%s", err, r.String())
	}
	damage := func(name string, fn func(path string), want string) {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "d.db")
			data, _ := os.ReadFile(path)
			os.WriteFile(p, data, 0o600)
			fn(p)
			r, err := meterdb.Verify(p, nil)
			if !errors.Is(err, store.ErrCorrupt) || r.OK() || !strings.Contains(strings.Join(r.Problems, "\n"), want) {
				t.Fatalf("Verify: %v\n%s\nwant a problem containing %q", err, r.String(), want)
			}
		})
	}
	boltUpdate := func(p string, fn func(tx *bolt.Tx) error) {
		b, err := bolt.Open(p, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Update(fn); err != nil {
			t.Fatal(err)
		}
		b.Close()
	}
	key := binary.BigEndian.AppendUint64(nil, 30)
	damage("flipped byte", func(p string) {
		boltUpdate(p, func(tx *bolt.Tx) error {
			v := bytes.Clone(tx.Bucket([]byte("log")).Get(key))
			v[len(v)/2] ^= 0x10
			return tx.Bucket([]byte("log")).Put(key, v)
		})
	}, "log record 30: checksum mismatch")
	damage("gap", func(p string) {
		boltUpdate(p, func(tx *bolt.Tx) error { return tx.Bucket([]byte("log")).Delete(key) })
	}, "log record 30: missing from the log")
	damage("checkpoint disagrees with the log", func(p string) {
		// A well-formed, checksummed aggregate record of a series the log
		// never saw: the checkpoint claims usage that no event backs.
		s, err := store.Open(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var rec store.AggRecord
		s.LoadAggregates(func(r *store.AggRecord) error {
			if !r.Day && rec.State == nil {
				rec = *r
				rec.State = bytes.Clone(r.State)
			}
			return nil
		})
		rec.Customer = "cus_phantom"
		mark, _ := s.LastMark()
		if err := s.Checkpoint(mark, []store.AggRecord{rec}, 0, 0); err != nil {
			t.Fatal(err)
		}
	}, `customer "cus_phantom", hour`)

	// A running writer holds the file: Verify says it is locked.
	db := openDB(t, path, &meterdb.Options{Now: clock.Now, NoFsync: true})
	defer db.Close()
	if _, err := meterdb.Verify(path, &meterdb.VerifyOptions{LockTimeout: 50 * time.Millisecond}); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("Verify of an open file: %v", err)
	}
}

// A backup taken while writers record holds every event acknowledged
// before it started and verifies clean.
func TestBackupDuringWrites(t *testing.T) {
	for _, d := range []meterdb.Durability{meterdb.DurabilitySync, meterdb.DurabilityBuffered} {
		dir := t.TempDir()
		clock := newTestClock(t0)
		db := openDB(t, filepath.Join(dir, "live.db"), &meterdb.Options{Now: clock.Now, Durability: d, NoFsync: true, CheckpointInterval: 5 * time.Millisecond})
		m := mustMeter(t, db, meter.Params{EventName: "e", Formula: meter.Count})
		var mu sync.Mutex
		var acked []string
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 5000; i++ {
					select {
					case <-stop:
						return
					default:
					}
					id := fmt.Sprintf("w%d-%d", w, i)
					if _, err := db.Record(ctx, ev("e", fmt.Sprint("cus_", i%5), "", id)); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					acked = append(acked, id)
					mu.Unlock()
				}
			}()
		}
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		before := append([]string(nil), acked...)
		mu.Unlock()
		backup := filepath.Join(dir, "backup.db")
		f, err := os.Create(backup)
		if err != nil {
			t.Fatal(err)
		}
		n, err := db.Backup(f)
		close(stop)
		wg.Wait()
		if cerr := f.Close(); err != nil || cerr != nil || n == 0 {
			t.Fatalf("Backup: %d, %v, %v", n, err, cerr)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if r, err := meterdb.Verify(backup, nil); err != nil {
			t.Fatalf("backup: %v\n%s", err, r.String())
		}
		b := openDB(t, backup, &meterdb.Options{Now: clock.Now, NoFsync: true})
		var count int64
		for c := range 5 {
			count += total(t, b, m, fmt.Sprint("cus_", c), t0.Add(-time.Hour), t0.Add(time.Hour)).Count
		}
		if len(before) == 0 || count < int64(len(before)) {
			t.Fatalf("durability %d: %d events acknowledged before the backup, %d in it", d, len(before), count)
		}
		for _, id := range before {
			if _, err := b.Record(ctx, ev("e", "cus_0", "", id)); !errors.Is(err, event.ErrDuplicate) {
				t.Fatalf("durability %d: event %s acknowledged before the backup is not in it: %v", d, id, err)
			}
		}
		b.Close()
		mem, _ := meterdb.Open("", nil)
		if _, err := mem.Backup(&bytes.Buffer{}); !errors.Is(err, meterdb.ErrInMemory) {
			t.Fatalf("Backup of an in-memory database: %v", err)
		}
		mem.Close()
	}
}

// A format 2 file (store/testdata/v2.db) opens as the current format:
// identifiers of its format 2 records and of the format 1 records before
// them are still taken, new identifiers are accepted, and the file
// verifies.
func TestUpgradeV2Dedupe(t *testing.T) {
	path := copyFixture(t, "store/testdata/v2.db")
	now := time.Date(2026, 3, 2, 14, 41, 0, 0, time.UTC)
	db, err := meterdb.Open(path, &meterdb.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	rec := func(id string) error {
		_, err := db.Record(ctx, event.Event{Name: "sum_ev", Identifier: id, Payload: map[string]string{"stripe_customer_id": "cus_0", "value": "1"}})
		return err
	}
	for _, id := range []string{"v2-a", "v2-c", "d-sum_ev-5"} {
		if err := rec(id); !errors.Is(err, event.ErrDuplicate) {
			t.Errorf("re-recording %s of the format 2 file: %v", id, err)
		}
	}
	if err := rec("v3-new"); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = meterdb.Open(path, &meterdb.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"v2-b", "v3-new"} {
		if err := rec(id); !errors.Is(err, event.ErrDuplicate) {
			t.Errorf("re-recording %s after a reopen: %v", id, err)
		}
	}
	db.Close()
	if r, err := meterdb.Verify(path, nil); err != nil || r.Format != store.FormatVersion || !r.OK() {
		t.Fatalf("Verify of the upgraded file: %v\n%s", err, r.String())
	}
}
