package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/meterdb/meterdb/internal/idhash"
	"github.com/meterdb/meterdb/meter"
)

// openTemp opens a store in a temp dir and closes it at cleanup.
func openTemp(t *testing.T, o *Options) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func sampleGroup(seq uint64) *Group {
	return &Group{Events: []Event{
		{Seq: seq, Meter: 1, Customer: "cus_a", Identifier: "id-a", Value: -42, Timestamp: 1_700_000_000, Received: 1_700_000_100},
		{Seq: seq + 1, Meter: 2, Customer: "cus_b", Identifier: "id-b", Value: 999_999_999_999_999, Timestamp: 1_700_000_200, Received: 1_700_000_100},
	}}
}

func TestAppendGroupReplay(t *testing.T) {
	for _, d := range []Durability{DurabilitySync, DurabilityBuffered} {
		s, path := openTemp(t, &Options{Durability: d})
		var want []*Group
		for i := range 10 {
			g := sampleGroup(uint64(1 + 2*i))
			loc, err := s.Append(g)
			if err != nil {
				t.Fatal(err)
			}
			if loc != uint64(i+1) {
				t.Fatalf("location %d, want %d", loc, i+1)
			}
			got, err := s.Group(loc)
			if err != nil || !reflect.DeepEqual(got, g) {
				t.Fatalf("Group(%d) = %+v, %v; want %+v", loc, got, err, g)
			}
			want = append(want, g)
		}
		c := &Group{Cancels: []Cancel{{Seq: 3, Received: 5, Meter: 1, Customer: "cus_a", Value: -42, Timestamp: 7}}}
		if _, err := s.Append(c); err != nil {
			t.Fatal(err)
		}
		want = append(want, c)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, err := Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got []*Group
		if err := s.Replay(0, func(loc uint64, g *Group) error { got = append(got, g); return nil }, nil); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("durability %d: replay differs:\n got %+v\nwant %+v", d, got, want)
		}
		var ids []string
		err = s.Replay(uint64(len(want)), func(loc uint64, g *Group) error {
			if len(g.Cancels) == 0 {
				t.Fatalf("events record %d decoded in full at or before the checkpoint location", loc)
			}
			return nil
		}, func(loc uint64, received int64, id []byte) {
			if received != 1_700_000_100 {
				t.Fatalf("received %d", received)
			}
			ids = append(ids, string(id))
		})
		if err != nil || len(ids) != 20 || ids[0] != "id-a" || ids[1] != "id-b" {
			t.Fatalf("identifier scan: %v, %v", ids, err)
		}
		if loc, _ := s.Append(sampleGroup(100)); loc != uint64(len(want)+1) {
			t.Fatalf("location after reopen %d, want %d", loc, len(want)+1)
		}
		s.Close()
	}
}

func TestCloseTwiceAndErrClosed(t *testing.T) {
	s, _ := openTemp(t, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Append(sampleGroup(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := s.PutKV("n", "k", nil, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("PutKV after Close: %v", err)
	}
	if _, err := s.Group(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Group after Close: %v", err)
	}
	if err := s.Sync(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close: %v", err)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	_, path := openTemp(t, nil)
	start := time.Now()
	_, err := Open(path, &Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("second Open took %v", time.Since(start))
	}
}

func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(i * 7)
	}
	// A bbolt file of another application.
	other := filepath.Join(dir, "other.db")
	b, err := bolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("users")); return err })
	b.Close()
	// A meterdb store of a future format.
	future := filepath.Join(dir, "future.db")
	s, err := Open(future, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	b, _ = bolt.Open(future, 0o600, nil)
	b.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyFormat, u64(99)) })
	b.Close()
	// And of the format after this one.
	next := filepath.Join(dir, "next.db")
	b, _ = bolt.Open(next, 0o600, nil)
	b.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(bucketMeta); return err })
	b.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyFormat, u64(FormatVersion+1)) })
	b.Close()
	// A store cut short.
	good := filepath.Join(dir, "good.db")
	s, _ = Open(good, nil)
	for i := range 200 {
		s.Append(sampleGroup(uint64(2*i + 1)))
	}
	s.Close()
	data, _ := os.ReadFile(good)

	for _, tc := range []struct {
		name string
		path string
		want error
	}{
		{"garbage", write("garbage.db", garbage), ErrNotStore},
		{"text", write("text.db", []byte("hello, this is not a database\n")), ErrNotStore},
		{"other application", other, ErrNotStore},
		{"future format", future, ErrVersion},
		{"next format", next, ErrVersion},
		{"truncated", write("truncated.db", data[:len(data)/3]), nil},
		{"header only", write("header.db", data[:4096]), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(tc.path, &Options{LockTimeout: 100 * time.Millisecond})
			if err == nil {
				// Some damage only shows when the data is read.
				err = s.Replay(0, func(uint64, *Group) error { return nil }, nil)
				s.Close()
			}
			if err == nil {
				t.Fatalf("Open(%s) succeeded", tc.name)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Open(%s) = %v, want %v", tc.name, err, tc.want)
			}
			if tc.want == nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNotStore) {
				t.Fatalf("Open(%s) = %v, want ErrCorrupt or ErrNotStore", tc.name, err)
			}
		})
	}
}

func TestCorruptLogRecord(t *testing.T) {
	s, path := openTemp(t, nil)
	s.Append(sampleGroup(1))
	s.Close()
	b, _ := bolt.Open(path, 0o600, nil)
	b.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketLog).Put(u64(1), []byte{kindEvents, 200}) })
	b.Close()
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Replay(0, func(uint64, *Group) error { return nil }, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Replay of a corrupt record: %v", err)
	}
	if _, err := s.Group(1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Group of a corrupt record: %v", err)
	}
	if err := s.Replay(1, nil, func(uint64, int64, []byte) {}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("identifier scan of a corrupt record: %v", err)
	}
}

func TestAux(t *testing.T) {
	for _, d := range []Durability{DurabilitySync, DurabilityBuffered} {
		s, path := openTemp(t, &Options{Durability: d})
		if err := s.PutKV("idem", "k1", []byte("v1"), 100); err != nil {
			t.Fatal(err)
		}
		s.PutKV("idem", "old", []byte("x"), 10)
		s.PutKV("sess", "k1", []byte("other namespace"), 100)
		check := func(ns, key string, now int64, want string, wantOK bool) {
			t.Helper()
			v, ok, err := s.GetKV(ns, key, now)
			if err != nil || ok != wantOK || string(v) != want {
				t.Fatalf("GetKV(%s, %s, %d) = %q, %v, %v; want %q, %v", ns, key, now, v, ok, err, want, wantOK)
			}
		}
		check("idem", "k1", 50, "v1", true)
		check("idem", "k1", 100, "", false) // expired
		check("sess", "k1", 50, "other namespace", true)
		check("idem", "missing", 50, "", false)
		s.DeleteKV("sess", "k1")
		check("sess", "k1", 50, "", false)
		if err := s.Checkpoint(Mark{}, nil, 0, 50); err != nil { // prunes "old"
			t.Fatal(err)
		}
		s.Close()
		s, _ = Open(path, nil)
		check("idem", "k1", 50, "v1", true)
		check("idem", "old", 5, "", false) // pruned at the checkpoint, though unexpired at 5
		s.Close()
	}
}

func TestCheckpointPrunesLog(t *testing.T) {
	s, path := openTemp(t, nil)
	for i := range 10 {
		s.Append(sampleGroup(uint64(2*i + 1)))
	}
	recs := []AggRecord{
		{Meter: 1, Customer: "cus_a", Start: 3600, State: []byte{1, 2, 3}},
		{Meter: 1, Customer: "cus_a", Start: 86400, Day: true, State: []byte{4}},
		{Meter: 2, Customer: "cus_b", Start: 7200, State: []byte{5}},
	}
	if err := s.Checkpoint(Mark{Loc: 8, LastSeq: 16}, recs, 6, 0); err != nil {
		t.Fatal(err)
	}
	// A tombstone removes a record; pruning never passes the mark.
	if err := s.Checkpoint(Mark{Loc: 9, LastSeq: 18}, []AggRecord{{Meter: 2, Customer: "cus_b", Start: 7200}}, 100, 0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if m, _ := s.LastMark(); m != (Mark{Loc: 9, LastSeq: 18}) {
		t.Fatalf("LastMark = %+v", m)
	}
	var locs []uint64
	s.Replay(0, func(loc uint64, _ *Group) error { locs = append(locs, loc); return nil }, nil)
	if !reflect.DeepEqual(locs, []uint64{10}) {
		t.Fatalf("log after pruning holds %v, want [10]", locs)
	}
	var got []AggRecord
	s.LoadAggregates(func(r *AggRecord) error {
		c := *r
		c.State = append([]byte(nil), r.State...)
		got = append(got, c)
		return nil
	})
	if want := []AggRecord{recs[1], recs[0]}; !reflect.DeepEqual(got, want) { // key order: meter, then 'd' before 'h'
		t.Fatalf("aggregates %+v, want %+v", got, want)
	}
	if loc, _ := s.Append(sampleGroup(100)); loc != 11 {
		t.Fatalf("next location %d, want 11", loc)
	}
}

func TestMeters(t *testing.T) {
	s, path := openTemp(t, nil)
	m := meter.Meter{ID: "mtr_1", Seq: 1, EventName: "e", Formula: meter.Sum, Status: meter.Active,
		Created: time.Unix(1000, 0).UTC(), Updated: time.Unix(1000, 0).UTC()}
	s.SaveMeter(m)
	m.Status, m.DeactivatedAt = meter.Inactive, time.Unix(2000, 0).UTC()
	s.SaveMeter(m)
	s.Close()
	s, _ = Open(path, nil)
	defer s.Close()
	ms, err := s.Meters()
	if err != nil || len(ms) != 1 || !reflect.DeepEqual(ms[0], m) {
		t.Fatalf("Meters() = %+v, %v; want [%+v]", ms, err, m)
	}
}

func FuzzDecodeGroup(f *testing.F) {
	// scanIdentifiers must agree with decodeGroup on every input; the
	// stored form (the record sealed with its checksum under key loc) must
	// read back as decodeGroup decodes the body, and any flipped bit of it,
	// or the same value under another key, must be ErrCorrupt naming the
	// record.
	f.Add(appendGroup(nil, sampleGroup(1), idhash.Key{}), uint64(1), uint(0))
	f.Add(appendGroup(nil, &Group{Cancels: []Cancel{{Seq: 1, Customer: "c"}}}, idhash.Key{}), uint64(7), uint(13))
	f.Add([]byte{kindEvents, 0}, uint64(1<<40), uint(3))
	f.Add([]byte{kindEvents, 255, 255, 255, 255, 15}, uint64(2), uint(47))
	f.Fuzz(func(t *testing.T, b []byte, loc uint64, bit uint) {
		g, err := decodeGroup(b)
		var scanned []string
		scanErr := scanIdentifiers(b, func(_ int64, id []byte) { scanned = append(scanned, string(id)) })
		if err == nil && len(g.Events) > 0 {
			if scanErr != nil || len(scanned) != len(g.Events) {
				t.Fatalf("scan: %v, %d identifiers; decode: %d events", scanErr, len(scanned), len(g.Events))
			}
			for i := range scanned {
				if scanned[i] != g.Events[i].Identifier {
					t.Fatalf("scan identifier %d = %q, decode %q", i, scanned[i], g.Events[i].Identifier)
				}
			}
		}
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %v does not wrap ErrCorrupt", err)
		}

		// The stored form.
		s := &DB{format: FormatVersion}
		k := u64(loc)
		v := seal(scopeLog, k, bytes.Clone(b))
		sg, serr := s.readGroup(k, v)
		if (serr == nil) != (err == nil) || (err == nil && !reflect.DeepEqual(sg, g)) {
			t.Fatalf("stored form: %+v, %v; body decodes to %+v, %v", sg, serr, g, err)
		}
		name := fmt.Sprintf("log record %d:", loc)
		if serr != nil && (!errors.Is(serr, ErrCorrupt) || !strings.Contains(serr.Error(), name)) {
			t.Fatalf("stored form error %v does not name %q", serr, name)
		}
		flipped := bytes.Clone(v)
		flipped[int(bit/8)%len(v)] ^= 1 << (bit % 8)
		if _, ferr := s.readGroup(k, flipped); !errors.Is(ferr, ErrCorrupt) || !strings.Contains(ferr.Error(), name+" checksum mismatch") {
			t.Fatalf("flipped bit %d: %v", bit, ferr)
		}
		other := u64(loc ^ 1<<(bit%64))
		if _, oerr := s.readGroup(other, v); !errors.Is(oerr, ErrCorrupt) {
			t.Fatalf("record under another key: %v", oerr)
		}
		// Arbitrary bytes as a stored value: a checksum error, or a body
		// that seals back to exactly those bytes.
		if body, uerr := unseal(scopeLog, k, b); uerr == nil && !bytes.Equal(seal(scopeLog, k, bytes.Clone(body)), b) {
			t.Fatalf("unseal accepted %x", b)
		}

		if err != nil {
			return
		}
		// What decodes re-encodes to a record that decodes the same.
		g2, err := decodeGroup(appendGroup(nil, g, idhash.Key{}))
		if err != nil || !reflect.DeepEqual(g, g2) {
			t.Fatalf("round trip: %+v, %v; want %+v", g2, err, g)
		}
	})
}

func TestListKV(t *testing.T) {
	s, _ := openTemp(t, nil)
	for _, k := range []string{"b", "a", "d", "c"} {
		s.PutKV("ns", k, []byte("v"+k), 100)
	}
	s.PutKV("ns", "e", []byte("expired"), 10)
	s.PutKV("other", "a", []byte("x"), 100)
	list := func(after string, limit int) (keys []string) {
		err := s.ListKV("ns", after, 50, func(k string, v []byte) bool {
			if string(v) != "v"+k {
				t.Fatalf("value of %s is %q", k, v)
			}
			keys = append(keys, k)
			return len(keys) < limit
		})
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}
	if got := list("", 10); !reflect.DeepEqual(got, []string{"a", "b", "c", "d"}) {
		t.Fatalf("ListKV = %v", got)
	}
	if got := list("b", 1); !reflect.DeepEqual(got, []string{"c"}) {
		t.Fatalf("ListKV after b, limit 1 = %v", got)
	}
	if got := list("bb", 10); !reflect.DeepEqual(got, []string{"c", "d"}) {
		t.Fatalf("ListKV after bb = %v", got)
	}
}

// ReadAggregate finds one checkpointed hour record by key: its state, nil
// for a missing one (another customer, a day record's start, a deleted
// record), and ErrCorrupt naming the record when its checksum fails.
func TestReadAggregate(t *testing.T) {
	s, path := openTemp(t, nil)
	recs := []AggRecord{
		{Meter: 1, Customer: "cus_a", Start: 3600, State: []byte{1, 2, 3}},
		{Meter: 1, Customer: "cus_ab", Start: 3600, State: []byte{9}},
		{Meter: 1, Customer: "cus_a", Start: 86400, Day: true, State: []byte{4}},
	}
	if err := s.Checkpoint(Mark{}, recs, 0, 0); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		meter    uint64
		customer string
		start    int64
		want     []byte
	}{
		{1, "cus_a", 3600, []byte{1, 2, 3}},
		{1, "cus_ab", 3600, []byte{9}},
		{1, "cus_", 3600, nil},
		{2, "cus_a", 3600, nil},
		{1, "cus_a", 86400, nil}, // a day record is not an hour record
	} {
		got, err := s.ReadAggregate(c.meter, c.customer, c.start)
		if err != nil || !bytes.Equal(got, c.want) || (got == nil) != (c.want == nil) {
			t.Fatalf("ReadAggregate(%d, %q, %d) = %v, %v; want %v", c.meter, c.customer, c.start, got, err, c.want)
		}
	}
	s.Close()
	b, _ := bolt.Open(path, 0o600, nil)
	b.Update(func(tx *bolt.Tx) error {
		k := aggKey(&recs[0])
		v := append([]byte(nil), tx.Bucket(bucketAgg).Get(k)...)
		v[0] ^= 1
		return tx.Bucket(bucketAgg).Put(k, v)
	})
	b.Close()
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.ReadAggregate(1, "cus_a", 3600); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "aggregate record") {
		t.Fatalf("ReadAggregate of a flipped bit: %v", err)
	}
}
