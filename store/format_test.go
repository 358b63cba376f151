package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/meterdb/meterdb/internal/idhash"
	"github.com/meterdb/meterdb/meter"
)

// rewrite changes a closed store file with bbolt directly.
func rewrite(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	b, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

// fillStore writes meters, log groups (events and a cancellation), an
// aggregate checkpoint, a frozen block and key-value records, and closes
// the store.
func fillStore(t *testing.T, path string) {
	t.Helper()
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if _, err := s.Append(sampleGroup(uint64(2*i + 1))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Append(&Group{Cancels: []Cancel{{Seq: 3, Received: 5, Meter: 1, Customer: "cus_a", Value: -42, Timestamp: 7}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveMeter(meter.Meter{ID: "mtr_1", Seq: 1, EventName: "e", Formula: meter.Sum, Status: meter.Active}); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(Mark{Loc: 3, LastSeq: 6}, []AggRecord{{Meter: 1, Customer: "cus_a", Start: 3600, State: []byte{1, 2, 3, 4}}}, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.PutFrozen([]FrozenBlock{{Meter: 1, Customer: "cus_a", First: 0, Data: []byte("block")}}, 86400); err != nil {
		t.Fatal(err)
	}
	s.PutKV("idem", "k1", []byte(`{"status":200}`), 1<<40)
	s.PutKV("sessions", "s1", []byte("token"), 1<<40)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// A single flipped byte anywhere in a log, key-value, aggregate, frozen
// block, meter or frozen_through record is reported as ErrCorrupt naming
// the record, by every read of it and by CheckRecords; never decoded into
// something else.
func TestFlippedByteIsCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	fillStore(t, path)
	type target struct {
		bucket []string // bucket path
		key    []byte
		name   string // what the error must name
		read   func(s *DB) error
	}
	var targets []target
	for loc := uint64(1); loc <= 7; loc++ {
		targets = append(targets, target{[]string{"log"}, u64(loc), fmt.Sprintf("log record %d:", loc), func(s *DB) error {
			if err := s.Replay(0, func(uint64, *Group) error { return nil }, nil); err == nil {
				return errors.New("Replay succeeded")
			} else if !strings.Contains(err.Error(), fmt.Sprintf("log record %d:", loc)) {
				return err
			}
			if err := s.Replay(7, func(uint64, *Group) error { return nil }, func(uint64, int64, []byte) {}); err == nil {
				return errors.New("identifier scan succeeded")
			} else if !strings.Contains(err.Error(), fmt.Sprintf("log record %d:", loc)) {
				return err
			}
			_, err := s.Group(loc)
			return err
		}})
	}
	kvRead := func(ns, key string) func(s *DB) error {
		return func(s *DB) error {
			if err := s.ListKV(ns, "", 0, func(string, []byte) bool { return true }); err == nil {
				return errors.New("ListKV succeeded")
			}
			_, _, err := s.GetKV(ns, key, 0)
			return err
		}
	}
	targets = append(targets,
		target{[]string{"aux", "idem"}, []byte("k1"), `key-value record "idem"/"k1":`, kvRead("idem", "k1")},
		target{[]string{"aux", "sessions"}, []byte("s1"), `key-value record "sessions"/"s1":`, kvRead("sessions", "s1")},
		target{[]string{"agg"}, aggKey(&AggRecord{Meter: 1, Customer: "cus_a", Start: 3600}), "aggregate record", func(s *DB) error {
			return s.LoadAggregates(func(*AggRecord) error { return nil })
		}},
		target{[]string{"agg"}, frozenKey(1, "cus_a", 0), "frozen block", func(s *DB) error {
			if err := s.LoadAggregates(func(*AggRecord) error { return nil }); err != nil {
				return fmt.Errorf("LoadAggregates, which skips frozen blocks: %v", err)
			}
			if err := s.LoadFrozen(func(*FrozenBlock) error { return nil }); err == nil {
				return errors.New("LoadFrozen succeeded")
			} else if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "frozen block") {
				return err
			}
			_, err := s.ReadFrozen(1, "cus_a", 0)
			return err
		}},
		target{[]string{"meta"}, keyFrozenThrough, `meta record "frozen_through":`, func(s *DB) error { _, err := s.FrozenThrough(); return err }},
		target{[]string{"meters"}, u64(1), "meter record 1:", func(s *DB) error { _, err := s.Meters(); return err }},
	)
	flips := 0
	for _, tg := range targets {
		bucket := func(tx *bolt.Tx) *bolt.Bucket {
			b := tx.Bucket([]byte(tg.bucket[0]))
			for _, n := range tg.bucket[1:] {
				b = b.Bucket([]byte(n))
			}
			return b
		}
		var orig []byte
		rewrite(t, path, func(tx *bolt.Tx) error { orig = bytes.Clone(bucket(tx).Get(tg.key)); return nil })
		if orig == nil {
			t.Fatalf("no record %v %x", tg.bucket, tg.key)
		}
		for i := range orig {
			for _, mask := range []byte{0x01, 0xff} {
				flipped := bytes.Clone(orig)
				flipped[i] ^= mask
				rewrite(t, path, func(tx *bolt.Tx) error { return bucket(tx).Put(tg.key, flipped) })
				s, err := Open(path, &Options{NoFsync: true})
				if err != nil {
					t.Fatal(err)
				}
				err = tg.read(s)
				var problems []error
				if _, cerr := s.CheckRecords(func(err error) { problems = append(problems, err) }); cerr != nil {
					t.Fatal(cerr)
				}
				s.Close()
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tg.name) {
					t.Fatalf("%s byte %d ^%#x: read gave %v, want ErrCorrupt naming %q", tg.name, i, mask, err, tg.name)
				}
				if len(problems) != 1 || !errors.Is(problems[0], ErrCorrupt) || !strings.Contains(problems[0].Error(), tg.name) {
					t.Fatalf("%s byte %d ^%#x: CheckRecords reported %v", tg.name, i, mask, problems)
				}
				flips++
			}
		}
		rewrite(t, path, func(tx *bolt.Tx) error { return bucket(tx).Put(tg.key, orig) })
	}
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CheckRecords(func(err error) { t.Errorf("restored file: %v", err) }); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d flips, each reported", flips)
}

// A value moved under another key fails its checksum: the key is covered.
func TestMovedRecordIsCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	fillStore(t, path)
	rewrite(t, path, func(tx *bolt.Tx) error {
		log := tx.Bucket(bucketLog)
		return log.Put(u64(5), bytes.Clone(log.Get(u64(4))))
	})
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Group(5); !errors.Is(err, ErrCorrupt) || err.Error() != "store: corrupt data: log record 5: checksum mismatch" {
		t.Fatalf("Group(5) of record 4's value: %v", err)
	}
}

func TestLogGapIsCorrupt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		delete  []uint64
		ckpt    uint64 // checkpoint location written before the deletion
		missing string // "" for none
	}{
		{"middle", []uint64{4}, 0, "log record 4: missing from the log"},
		{"first without checkpoint", []uint64{1}, 0, "log record 1: missing from the log"},
		{"pruned below the checkpoint", []uint64{1, 2}, 2, ""},
		{"beyond the checkpoint", []uint64{1, 2, 3, 4}, 2, "log record 3: missing from the log"},
		{"last", []uint64{7}, 0, ""}, // the tail cannot be told from a shorter log
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.db")
			s, err := Open(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 7 {
				s.Append(sampleGroup(uint64(2*i + 1)))
			}
			if tc.ckpt > 0 {
				if err := s.Checkpoint(Mark{Loc: tc.ckpt}, nil, 0, 0); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			rewrite(t, path, func(tx *bolt.Tx) error {
				for _, loc := range tc.delete {
					if err := tx.Bucket(bucketLog).Delete(u64(loc)); err != nil {
						return err
					}
				}
				return nil
			})
			s, err = Open(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			err = s.Replay(tc.ckpt, func(uint64, *Group) error { return nil }, func(uint64, int64, []byte) {})
			var problems []string
			s.CheckRecords(func(err error) { problems = append(problems, err.Error()) })
			if tc.missing == "" {
				if err != nil || len(problems) > 0 {
					t.Fatalf("Replay: %v; CheckRecords: %v", err, problems)
				}
				return
			}
			want := "store: corrupt data: " + tc.missing
			if !errors.Is(err, ErrCorrupt) || err.Error() != want {
				t.Fatalf("Replay: %v, want %q", err, want)
			}
			if len(problems) != 1 || problems[0] != want {
				t.Fatalf("CheckRecords: %q, want [%q]", problems, want)
			}
		})
	}
}

// An empty file at the path was not made by Open: Open says so and leaves
// it alone. Open creating a file leaves nothing else behind.
func TestEmptyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path, nil)
	if !errors.Is(err, ErrNotStore) || !strings.Contains(err.Error(), "file is empty") {
		t.Fatalf("Open of an empty file: %v, want ErrNotStore saying the file is empty", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Fatalf("the empty file changed: %v, %v", fi, err)
	}
	fresh := filepath.Join(dir, "fresh.db")
	s, err := Open(fresh, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !reflect.DeepEqual(names, []string{"empty.db", "fresh.db"}) {
		t.Fatalf("directory holds %v", names)
	}
	if _, err := Open(filepath.Join(dir, "missing.db"), &Options{ReadOnly: true}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read-only Open of a missing file: %v", err)
	}
}

// A file the process may not open for writing is a permission error, not
// corrupt data. Root bypasses file modes, so the file is made immutable
// (chattr +i), which fails an O_RDWR open with EPERM even for root.
func TestPermissionDenied(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	fillStore(t, path)
	if os.Geteuid() != 0 {
		if err := os.Chmod(path, 0o400); err != nil {
			t.Fatal(err)
		}
	} else {
		if out, err := exec.Command("chattr", "+i", path).CombinedOutput(); err != nil {
			t.Skipf("as root, a permission error needs chattr +i, which failed: %v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("chattr", "-i", path).Run() })
	}
	_, err := Open(path, nil)
	if !errors.Is(err, fs.ErrPermission) || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotStore) {
		t.Fatalf("Open of a file without write permission: %v, want a permission error", err)
	}
}

// v1File copies testdata/v1.db into a temp dir.
func v1File(t *testing.T) string {
	path, _ := fixtureCopy(t, "v1.db")
	return path
}

// openUpgraded opens the file at path, which has format from, and checks
// that Open logged its upgrade to FormatVersion (with no record
// rewritten, when noRewrite).
func openUpgraded(t *testing.T, path string, from int, noRewrite bool) *DB {
	t.Helper()
	var logged bytes.Buffer
	s, err := Open(path, &Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("from_format=%d to_format=%d", from, FormatVersion)
	if noRewrite {
		want += " records=0"
	}
	if !strings.Contains(logged.String(), "store upgraded") || !strings.Contains(logged.String(), want) {
		t.Fatalf("log: %q, want %q", logged.String(), want)
	}
	return s
}

// openNotUpgraded opens the file at path, which must need no upgrade.
func openNotUpgraded(t *testing.T, path string) *DB {
	t.Helper()
	var logged bytes.Buffer
	s, err := Open(path, &Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logged.String(), "upgraded") {
		t.Fatalf("second Open upgraded again: %q", logged.String())
	}
	return s
}

// fixtureCopy copies testdata/name into a temp dir and returns the copy's
// path and the fixture's bytes.
func fixtureCopy(t *testing.T, name string) (string, []byte) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, data
}

// v1Contents is what a format 1 file holds, read with bbolt alone.
type v1Contents struct {
	meters []meter.Meter
	groups map[uint64]*Group
	aggs   map[string][]byte
	kv     map[string][]byte // ns/key -> expiry and value
	mark   Mark
}

func readV1(t *testing.T, path string) v1Contents {
	t.Helper()
	c := v1Contents{groups: map[uint64]*Group{}, aggs: map[string][]byte{}, kv: map[string][]byte{}}
	b, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = b.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyFormat); binary.BigEndian.Uint64(v) != 1 {
			return fmt.Errorf("format %x", v)
		}
		meta := tx.Bucket(bucketMeta)
		c.mark = Mark{Loc: binary.BigEndian.Uint64(meta.Get(keyCheckpoint)), LastSeq: binary.BigEndian.Uint64(meta.Get(keyLastSeq))}
		tx.Bucket(bucketMeters).ForEach(func(k, v []byte) error {
			var m meter.Meter
			if err := json.Unmarshal(v, &m); err != nil {
				return err
			}
			c.meters = append(c.meters, m)
			return nil
		})
		if err := tx.Bucket(bucketLog).ForEach(func(k, v []byte) error {
			g, err := decodeGroup(v)
			c.groups[binary.BigEndian.Uint64(k)] = g
			return err
		}); err != nil {
			return err
		}
		tx.Bucket(bucketAgg).ForEach(func(k, v []byte) error { c.aggs[string(k)] = bytes.Clone(v); return nil })
		return tx.Bucket(bucketKV).ForEachBucket(func(ns []byte) error {
			return tx.Bucket(bucketKV).Bucket(ns).ForEach(func(k, v []byte) error {
				c.kv[string(ns)+"/"+string(k)] = bytes.Clone(v)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Open upgrades a format 1 file to the current format in place, keeping
// every record, and says so in the log; the upgraded file reads the same.
func TestUpgradeV1(t *testing.T) {
	path := v1File(t)
	want := readV1(t, path)
	if len(want.groups) < 100 || len(want.aggs) == 0 || len(want.kv) < 3 || len(want.meters) < 4 || want.mark.Loc == 0 {
		t.Fatalf("testdata/v1.db holds too little: %d groups, %d aggregates, %d kv, %d meters, %+v",
			len(want.groups), len(want.aggs), len(want.kv), len(want.meters), want.mark)
	}
	// Read-only, a format 1 file is read as it is.
	ro, err := Open(path, &Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := ro.CheckRecords(func(err error) { t.Errorf("format 1, read-only: %v", err) }); err != nil || n.Format != 1 {
		t.Fatalf("CheckRecords of format 1: %+v, %v", n, err)
	}
	ro.Close()

	s := openUpgraded(t, path, 1, false)
	check := func(s *DB) {
		t.Helper()
		n, err := s.CheckRecords(func(err error) { t.Errorf("upgraded file: %v", err) })
		if err != nil || n.Format != FormatVersion || n.Log != len(want.groups) || n.Aggregates != len(want.aggs) || n.KV != len(want.kv) || n.Meters != len(want.meters) {
			t.Fatalf("CheckRecords: %+v, %v", n, err)
		}
		ms, err := s.Meters()
		if err != nil || !reflect.DeepEqual(ms, want.meters) {
			t.Fatalf("meters %+v, %v; want %+v", ms, err, want.meters)
		}
		groups := map[uint64]*Group{}
		if err := s.Replay(0, func(loc uint64, g *Group) error { groups[loc] = g; return nil }, nil); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(groups, want.groups) {
			t.Fatalf("log differs after the upgrade")
		}
		aggs := map[string][]byte{}
		if err := s.LoadAggregates(func(r *AggRecord) error { aggs[string(aggKey(r))] = bytes.Clone(r.State); return nil }); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(aggs, want.aggs) {
			t.Fatalf("aggregates differ after the upgrade")
		}
		for nk, v := range want.kv {
			ns, key, _ := strings.Cut(nk, "/")
			got, ok, err := s.GetKV(ns, key, 0)
			if err != nil || !ok || !bytes.Equal(got, v[8:]) {
				t.Fatalf("GetKV(%s) = %q, %v, %v; want %q", nk, got, ok, err, v[8:])
			}
		}
		if m, err := s.LastMark(); err != nil || m != want.mark {
			t.Fatalf("LastMark = %+v, %v; want %+v", m, err, want.mark)
		}
	}
	check(s)
	next := s.LastLoc() + 1
	if loc, err := s.Append(sampleGroup(10_000)); err != nil || loc != next {
		t.Fatalf("Append after the upgrade: %d, %v; want %d", loc, err, next)
	}
	s.Close()
	want.groups[next] = sampleGroup(10_000)
	s = openNotUpgraded(t, path)
	defer s.Close()
	check(s)
}

// A format 1 file with a record that does not decode is refused, not
// sealed with a valid checksum.
func TestUpgradeV1RefusesDamage(t *testing.T) {
	path := v1File(t)
	rewrite(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLog).Put(u64(150), []byte{kindEvents, 200})
	})
	_, err := Open(path, nil)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "log record 150:") {
		t.Fatalf("Open: %v", err)
	}
	rewrite(t, path, func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyFormat); binary.BigEndian.Uint64(v) != 1 {
			t.Fatalf("format after a refused upgrade: %x", v)
		}
		return nil
	})
}

// Backup copies the file while Appends run; the copy checks clean and
// holds every group acknowledged before Backup was called.
func TestBackupDuringWrites(t *testing.T) {
	for _, d := range []Durability{DurabilitySync, DurabilityBuffered} {
		s, _ := openTemp(t, &Options{Durability: d, NoFsync: true})
		s.PutKV("idem", "k", []byte("v"), 1<<40)
		var mu sync.Mutex
		acked := map[uint64]bool{}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 3000; i++ {
					select {
					case <-stop:
						return
					default:
					}
					loc, err := s.Append(sampleGroup(uint64(1_000_000*w + 2*i + 1)))
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					acked[loc] = true
					mu.Unlock()
				}
			}()
		}
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		before := len(acked)
		snapshot := make(map[uint64]bool, before)
		for loc := range acked {
			snapshot[loc] = true
		}
		mu.Unlock()
		var buf bytes.Buffer
		n, err := s.Backup(&buf)
		close(stop)
		wg.Wait()
		if err != nil || n != int64(buf.Len()) {
			t.Fatalf("Backup: %d, %v (%d bytes)", n, err, buf.Len())
		}
		path := filepath.Join(t.TempDir(), "backup.db")
		if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := Open(path, &Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.CheckRecords(func(err error) { t.Errorf("backup: %v", err) }); err != nil {
			t.Fatal(err)
		}
		got := map[uint64]bool{}
		if err := b.Replay(0, func(loc uint64, _ *Group) error { got[loc] = true; return nil }, nil); err != nil {
			t.Fatal(err)
		}
		for loc := range snapshot {
			if !got[loc] {
				t.Fatalf("durability %d: group %d acknowledged before the backup is not in it", d, loc)
			}
		}
		if v, ok, err := b.GetKV("idem", "k", 0); err != nil || !ok || string(v) != "v" {
			t.Fatalf("backup GetKV: %q, %v, %v", v, ok, err)
		}
		if _, err := b.Append(sampleGroup(1)); !errors.Is(err, ErrReadOnly) {
			t.Fatalf("Append to a read-only store: %v", err)
		}
		b.Close()
		if before == 0 || len(got) < before {
			t.Fatalf("durability %d: %d groups before the backup, %d in it", d, before, len(got))
		}
		s.Close()
		if _, err := s.Backup(io.Discard); !errors.Is(err, ErrClosed) {
			t.Fatalf("Backup after Close: %v", err)
		}
	}
}

// Open upgrades a format 2 file (testdata/v2.db, see its README) to the
// current format by setting the version: format 3 only adds a log record
// kind, format 4 an aggregate record kind and a meta record. The
// records of format 2 read as before, new event records carry the hashes
// of their identifiers, and FindEvent finds identifiers in both kinds.
func TestUpgradeV2(t *testing.T) {
	path, _ := fixtureCopy(t, "v2.db")
	ro, err := Open(path, &Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	n, err := ro.CheckRecords(func(err error) { t.Errorf("format 2, read-only: %v", err) })
	if err != nil || n.Format != 2 {
		t.Fatalf("CheckRecords of format 2: %+v, %v", n, err)
	}
	want := map[uint64]*Group{}
	if err := ro.Replay(0, func(loc uint64, g *Group) error { want[loc] = g; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	last := ro.LastLoc()
	ro.Close()
	if g := want[last]; g == nil || len(g.Events) != 3 || g.Events[0].Identifier != "v2-a" {
		t.Fatalf("last record of the format 2 file: %+v", g)
	}

	s := openUpgraded(t, path, 2, false)
	if n, err := s.CheckRecords(func(err error) { t.Errorf("upgraded file: %v", err) }); err != nil || n.Format != FormatVersion || n.Log != len(want) {
		t.Fatalf("CheckRecords after the upgrade: %+v, %v", n, err)
	}
	loc, err := s.Append(&Group{Events: []Event{
		{Seq: 10_000, Meter: 1, Customer: "cus_0", Identifier: "v3-a", Value: 1, Timestamp: 1_772_000_000, Received: 1_772_000_100},
		{Seq: 10_001, Meter: 1, Customer: "cus_1", Identifier: "v3-b", Value: 2, Timestamp: 1_772_000_000, Received: 1_772_000_100},
	}})
	if err != nil || loc != last+1 {
		t.Fatalf("Append after the upgrade: %d, %v", loc, err)
	}
	s.Close()
	s, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := map[uint64]*Group{}
	if err := s.Replay(0, func(loc uint64, g *Group) error { got[loc] = g; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want)+1 || !reflect.DeepEqual(got[last], want[last]) || got[loc].Events[1].Identifier != "v3-b" {
		t.Fatalf("log after the upgrade: %d records (want %d), last format 2 record %+v", len(got), len(want)+1, got[last])
	}
	// ScanHashes gives the hashes of both kinds of records: stored in the
	// format 3 one, computed from the identifiers of the format 2 ones.
	scanned, first := 0, loc
	for l := range got {
		first = min(first, l)
	}
	err = s.ScanHashes(first, loc, 2, func(pass int, l uint64, received int64, hashes []byte) {
		g := got[l]
		if g == nil || len(hashes) != 8*len(g.Events) || received != g.Events[0].Received {
			t.Fatalf("ScanHashes at %d: %d hashes received %d, record %+v", l, len(hashes)/8, received, g)
		}
		for i := range g.Events {
			if h := binary.BigEndian.Uint64(hashes[8*i:]); h != idhash.Sum(s.idKey, g.Events[i].Identifier) {
				t.Errorf("ScanHashes at %d: hash %d is %x, want the keyed hash of %s", l, i, h, g.Events[i].Identifier)
			}
		}
		scanned += len(g.Events)
	})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, g := range got {
		total += len(g.Events)
	}
	if scanned != 2*total {
		t.Errorf("ScanHashes scanned %d identifiers in two passes, the log holds %d", scanned, total)
	}
	for _, c := range []struct {
		loc   uint64
		id    string
		found bool
	}{{last, "v2-b", true}, {last, "v3-b", false}, {loc, "v3-b", true}, {loc, "v2-b", false}, {loc, "v3-c", false}} {
		ev, found, err := s.FindEvent(c.loc, c.id)
		if err != nil || found != c.found {
			t.Errorf("FindEvent(%d, %s) = %+v, %v, %v; want found %v", c.loc, c.id, ev, found, err, c.found)
		}
	}
	if ev, _, _ := s.FindEvent(loc, "v3-b"); ev.Seq != 10_001 || ev.Customer != "cus_1" || ev.Value != 2 || ev.Received != 1_772_000_100 {
		t.Errorf("FindEvent(%d, v3-b) = %+v", loc, ev)
	}
}

// A flipped bit in an indexed record's hash table fails its own checksum
// on the cheap path of FindEvent, and the record's checksum everywhere.
func TestIndexedRecordDamage(t *testing.T) {
	s, path := openTemp(t, nil)
	s.Append(sampleGroup(1))
	s.Close()
	rewrite(t, path, func(tx *bolt.Tx) error {
		lb := tx.Bucket(bucketLog)
		v := bytes.Clone(lb.Get(u64(1)))
		if v[0] != kindIndexed {
			t.Fatalf("record kind %d, want %d", v[0], kindIndexed)
		}
		v[3] ^= 1 // inside the first hash
		return lb.Put(u64(1), v)
	})
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := s.FindEvent(1, "id-a"); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "log record 1:") {
		t.Errorf("FindEvent over a damaged hash table: %v", err)
	}
	if _, err := s.Group(1); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Group of a damaged record: %v", err)
	}
}

// v3Contents is what a store holds, read through the store's API.
type v3Contents struct {
	counts   Counts
	meters   []meter.Meter
	groups   map[uint64]*Group
	aggs     []AggRecord
	kv       map[string][]byte // ns/key -> value
	mark     Mark
	lastLoc  uint64
	identKey [idhash.Size]byte
}

func readContents(t *testing.T, s *DB) v3Contents {
	t.Helper()
	c := v3Contents{groups: map[uint64]*Group{}, kv: map[string][]byte{}, lastLoc: s.LastLoc(), identKey: s.IdentKey()}
	var err error
	if c.counts, err = s.CheckRecords(func(err error) { t.Errorf("CheckRecords: %v", err) }); err != nil {
		t.Fatal(err)
	}
	if c.meters, err = s.Meters(); err != nil {
		t.Fatal(err)
	}
	if err := s.Replay(0, func(loc uint64, g *Group) error { c.groups[loc] = g; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	c.aggs = loadAggs(t, s, 0)
	for _, ns := range []string{"idem", "sessions"} {
		if err := s.ListKV(ns, "", 0, func(key string, v []byte) bool { c.kv[ns+"/"+key] = bytes.Clone(v); return true }); err != nil {
			t.Fatal(err)
		}
	}
	if c.mark, err = s.LastMark(); err != nil {
		t.Fatal(err)
	}
	return c
}

// Open upgrades a format 3 file (testdata/v3.db, see its README: written
// by the format 3 code through the root package, with TestWriteV3Fixture
// of store/v3fixture_test.go at commit a347852, removed when the format
// became 4) by setting the version: format 4 adds frozen blocks and
// frozen_through, and a file without them has stored none. Every record
// reads as a read-only Open of the format 3 file gives it (which leaves
// the file as it was), and frozen blocks can be written afterwards.
func TestUpgradeV3(t *testing.T) {
	path, orig := fixtureCopy(t, "v3.db")
	ro, err := Open(path, &Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	want := readContents(t, ro)
	if ft, err := ro.FrozenThrough(); ft != 0 || err != nil {
		t.Fatalf("FrozenThrough of the format 3 file: %d, %v", ft, err)
	}
	if got := loadFrozen(t, ro); len(got) != 0 {
		t.Fatalf("LoadFrozen of the format 3 file: %+v", got)
	}
	ro.Close()
	if data, err := os.ReadFile(path); err != nil || !bytes.Equal(data, orig) {
		t.Fatalf("a read-only Open changed the format 3 file (%v)", err)
	}
	days, hours := 0, 0
	for _, r := range want.aggs {
		if r.Day {
			days++
		} else {
			hours++
		}
	}
	if want.counts.Format != 3 || len(want.meters) != 5 || len(want.groups) < 4 || days == 0 || hours == 0 ||
		len(want.kv) != 2 || want.mark.Loc == 0 || want.counts.Frozen != 0 {
		t.Fatalf("testdata/v3.db: %+v, %d meters, %d log records, %d day and %d hour records, %d key-value records, %+v",
			want.counts, len(want.meters), len(want.groups), days, hours, len(want.kv), want.mark)
	}

	s := openUpgraded(t, path, 3, true)
	check := func(s *DB) {
		t.Helper()
		got := readContents(t, s)
		w := want
		w.counts.Format = FormatVersion
		if !reflect.DeepEqual(got, w) {
			t.Fatalf("after the upgrade:\n got %+v\nwant %+v", got, w)
		}
		if ft, err := s.FrozenThrough(); ft != 0 || err != nil {
			t.Fatalf("FrozenThrough after the upgrade: %d, %v", ft, err)
		}
		if got := loadFrozen(t, s); len(got) != 0 {
			t.Fatalf("LoadFrozen after the upgrade: %+v", got)
		}
		for _, r := range want.aggs {
			if r.Day {
				continue
			}
			if st, err := s.ReadAggregate(r.Meter, r.Customer, r.Start); err != nil || !bytes.Equal(st, r.State) {
				t.Fatalf("ReadAggregate(%d, %q, %d) = %x, %v; want %x", r.Meter, r.Customer, r.Start, st, err, r.State)
			}
		}
	}
	check(s)
	s.Close()
	s = openNotUpgraded(t, path)
	defer s.Close()
	check(s)

	// A frozen block of the day of the last record, which is an hour record.
	r := want.aggs[len(want.aggs)-1]
	first := r.Start / 86400 * 86400
	if err := s.PutFrozen([]FrozenBlock{{Meter: r.Meter, Customer: r.Customer, First: first, Data: []byte("block")}}, first+86400); err != nil {
		t.Fatal(err)
	}
	if data, err := s.ReadFrozen(r.Meter, r.Customer, first); err != nil || string(data) != "block" {
		t.Fatalf("ReadFrozen after PutFrozen: %q, %v", data, err)
	}
	if ft, err := s.FrozenThrough(); ft != first+86400 || err != nil {
		t.Fatalf("FrozenThrough after PutFrozen: %d, %v", ft, err)
	}
	if got := loadAggs(t, s, 0); !reflect.DeepEqual(got, want.aggs) {
		t.Fatalf("LoadAggregates after PutFrozen differs")
	}
	if n, err := s.CheckRecords(func(err error) { t.Errorf("CheckRecords: %v", err) }); err != nil || n.Frozen != 1 || n.Aggregates != len(want.aggs) {
		t.Fatalf("CheckRecords after PutFrozen: %+v, %v", n, err)
	}
}
