package store

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"pgregory.net/rapid"
)

// fataler is what the helpers need of a *testing.T or a *rapid.T.
type fataler interface {
	Helper()
	Fatal(args ...any)
}

// loadFrozen returns copies of every stored block, in LoadFrozen's order.
func loadFrozen(t fataler, s *DB) []FrozenBlock {
	t.Helper()
	var out []FrozenBlock
	if err := s.LoadFrozen(func(b *FrozenBlock) error {
		c := *b
		c.Data = bytes.Clone(b.Data)
		out = append(out, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// loadAggs returns copies of the records LoadAggregatesFrom(from) gives.
func loadAggs(t fataler, s *DB, from int64) []AggRecord {
	t.Helper()
	var out []AggRecord
	if err := s.LoadAggregatesFrom(from, func(r *AggRecord) error {
		c := *r
		c.State = bytes.Clone(r.State)
		out = append(out, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// PutFrozen stores blocks beside the hour and day records of the same
// meters, in key order; ReadFrozen and LoadFrozen give them back after a
// reopen, LoadAggregates gives the hour and day records alone, and
// CheckRecords counts and checks both.
func TestFrozenRoundTrip(t *testing.T) {
	s, path := openTemp(t, &Options{NoFsync: true})
	aggs := []AggRecord{ // in LoadAggregates's order: day records first
		{Meter: 1, Customer: "cus_a", Start: 86400, Day: true, State: []byte{2}},
		{Meter: 1, Customer: "cus_a", Start: 3600, State: []byte{1}},
		{Meter: 2, Customer: "cus_b", Start: 7200, State: []byte{3}},
	}
	if err := s.Checkpoint(Mark{}, aggs, 0, 0); err != nil {
		t.Fatal(err)
	}
	blocks := []FrozenBlock{ // out of key order, one key twice
		{Meter: 2, Customer: "cus_b", First: 0, Data: []byte("m2 b 0")},
		{Meter: 1, Customer: "cus_b", First: 86400, Data: []byte("m1 b 1")},
		{Meter: 1, Customer: "cus_a", First: 86400, Data: []byte("m1 a 1, replaced")},
		{Meter: 1, Customer: "cus_a", First: 0, Data: []byte("m1 a 0")},
		{Meter: 1, Customer: "cus_a", First: 86400, Data: []byte("m1 a 1")},
		{Meter: math.MaxUint64, Customer: "", First: 1 << 40, Data: []byte{}},
	}
	if err := s.PutFrozen(blocks, 2*86400); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.FrozenBlocks != int64(len(blocks)) {
		t.Errorf("Stats.FrozenBlocks = %d, want %d", st.FrozenBlocks, len(blocks))
	}
	want := []FrozenBlock{
		{Meter: 1, Customer: "cus_a", First: 0, Data: []byte("m1 a 0")},
		{Meter: 1, Customer: "cus_a", First: 86400, Data: []byte("m1 a 1")},
		{Meter: 1, Customer: "cus_b", First: 86400, Data: []byte("m1 b 1")},
		{Meter: 2, Customer: "cus_b", First: 0, Data: []byte("m2 b 0")},
		{Meter: math.MaxUint64, Customer: "", First: 1 << 40, Data: []byte{}},
	}
	check := func(s *DB) {
		t.Helper()
		if got := loadFrozen(t, s); !reflect.DeepEqual(got, want) {
			t.Fatalf("LoadFrozen:\n got %+v\nwant %+v", got, want)
		}
		for _, b := range want {
			got, err := s.ReadFrozen(b.Meter, b.Customer, b.First)
			if err != nil || got == nil || !bytes.Equal(got, b.Data) {
				t.Fatalf("ReadFrozen(%d, %q, %d) = %q, %v; want %q", b.Meter, b.Customer, b.First, got, err, b.Data)
			}
		}
		for _, c := range []struct {
			meter    uint64
			customer string
			first    int64
		}{
			{1, "cus_a", 3600},  // an hour record's key, not a block's
			{1, "cus_a", 86401}, // no block starts there
			{1, "cus_", 0},
			{3, "cus_a", 0},
		} {
			if got, err := s.ReadFrozen(c.meter, c.customer, c.first); got != nil || err != nil {
				t.Fatalf("ReadFrozen(%d, %q, %d) = %q, %v; want nil", c.meter, c.customer, c.first, got, err)
			}
		}
		if got := loadAggs(t, s, 0); !reflect.DeepEqual(got, aggs) {
			t.Fatalf("LoadAggregates gave %+v, want the hour and day records %+v", got, aggs)
		}
		if ft, err := s.FrozenThrough(); ft != 2*86400 || err != nil {
			t.Fatalf("FrozenThrough = %d, %v", ft, err)
		}
		n, err := s.CheckRecords(func(err error) { t.Errorf("CheckRecords: %v", err) })
		if err != nil || n.Aggregates != len(aggs) || n.Frozen != len(want) || n.FrozenThrough != 2*86400 || n.Format != FormatVersion {
			t.Fatalf("CheckRecords = %+v, %v", n, err)
		}
	}
	check(s)
	s.Close()
	if err := s.PutFrozen(blocks, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("PutFrozen after Close: %v", err)
	}
	s, err := Open(path, &Options{NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	check(s)
	s.Close()
	ro, err := Open(path, &Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	check(ro)
	if err := ro.PutFrozen(blocks, 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("PutFrozen on a read-only store: %v", err)
	}
}

// frozen_through only grows: PutFrozen stores the greater of the stored
// time and its argument, with or without blocks, across reopens.
func TestFrozenThroughOnlyGrows(t *testing.T) {
	s, path := openTemp(t, &Options{NoFsync: true})
	b := []FrozenBlock{{Meter: 1, Customer: "c", First: 0, Data: []byte{1}}}
	for _, c := range []struct {
		blocks  []FrozenBlock
		through int64
		want    int64
		reopen  bool
	}{
		{nil, 0, 0, false},
		{nil, -5, 0, false},
		{b, 100, 100, false},
		{nil, 50, 100, true},
		{b, 99, 100, false},
		{nil, 300, 300, true},
		{nil, math.MinInt64, 300, false},
		{b, 301, 301, true},
	} {
		if err := s.PutFrozen(c.blocks, c.through); err != nil {
			t.Fatal(err)
		}
		if c.reopen {
			s.Close()
			var err error
			if s, err = Open(path, &Options{NoFsync: true}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
		}
		if got, err := s.FrozenThrough(); got != c.want || err != nil {
			t.Fatalf("after PutFrozen(%d blocks, %d): FrozenThrough = %d, %v; want %d", len(c.blocks), c.through, got, err, c.want)
		}
	}
}

// A key of an unknown kind in agg stays corrupt for LoadAggregates, with
// or without a from, and for CheckRecords, wherever it sorts among the
// kinds.
func TestUnknownAggregateKind(t *testing.T) {
	for _, kind := range []byte{'a', 'e', 'g', 'z'} {
		s, path := openTemp(t, &Options{NoFsync: true})
		if err := s.Checkpoint(Mark{}, []AggRecord{
			{Meter: 1, Customer: "c", Start: 3600, State: []byte{1}},
			{Meter: 1, Customer: "c", Start: 86400, Day: true, State: []byte{2}},
		}, 0, 0); err != nil {
			t.Fatal(err)
		}
		if err := s.PutFrozen([]FrozenBlock{{Meter: 1, Customer: "c", First: 0, Data: []byte{3}}}, 0); err != nil {
			t.Fatal(err)
		}
		s.Close()
		k := makeAggKey(1, kind, 3600, "c")
		rewrite(t, path, func(tx *bolt.Tx) error {
			return tx.Bucket(bucketAgg).Put(k, seal(scopeAgg, k, []byte{4}))
		})
		s, err := Open(path, &Options{NoFsync: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, from := range []int64{0, 7200, 1 << 40} {
			err := s.LoadAggregatesFrom(from, func(*AggRecord) error { return nil })
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), fmt.Sprintf("aggregate key %x", k)) {
				t.Errorf("kind %c, LoadAggregatesFrom(%d): %v", kind, from, err)
			}
		}
		var problems []error
		if _, err := s.CheckRecords(func(err error) { problems = append(problems, err) }); err != nil || len(problems) != 1 || !errors.Is(problems[0], ErrCorrupt) {
			t.Errorf("kind %c, CheckRecords: %v, %v", kind, problems, err)
		}
		s.Close()
	}
}

// LoadAggregatesFrom gives exactly the records of LoadAggregates whose
// Start is at least from, in the same order (meter, day before hour,
// start, customer), for random files of several meters, customers and
// both kinds, frozen blocks among them, and random from values.
func TestLoadAggregatesFromProperty(t *testing.T) {
	dir := t.TempDir()
	n := 0
	rapid.Check(t, func(rt *rapid.T) {
		n++
		s, err := Open(filepath.Join(dir, fmt.Sprintf("s%d.db", n)), &Options{NoFsync: true})
		if err != nil {
			rt.Fatal(err)
		}
		defer s.Close()
		meters := rapid.SliceOfNDistinct(rapid.SampledFrom([]uint64{1, 2, 3, 255, 256, 1 << 40, math.MaxUint64}), 1, 4, rapid.ID).Draw(rt, "meters")
		customers := rapid.SliceOfNDistinct(rapid.SampledFrom([]string{"", "a", "ab", "b", "cus_\xff", "cus_é"}), 1, 4, rapid.ID).Draw(rt, "customers")
		const base = 1_700_000_000 / 86400 * 86400
		recGen := rapid.Custom(func(rt *rapid.T) AggRecord {
			r := AggRecord{
				Meter:    rapid.SampledFrom(meters).Draw(rt, "meter"),
				Customer: rapid.SampledFrom(customers).Draw(rt, "customer"),
				Day:      rapid.Bool().Draw(rt, "day"),
				State:    rapid.SliceOfN(rapid.Byte(), 1, 8).Draw(rt, "state"),
			}
			if r.Day {
				r.Start = base + 86400*rapid.Int64Range(0, 60).Draw(rt, "day start")
			} else {
				r.Start = base + 3600*rapid.Int64Range(0, 60*24).Draw(rt, "hour start")
			}
			return r
		})
		model := map[string]AggRecord{}
		for range rapid.IntRange(1, 4).Draw(rt, "checkpoints") {
			recs := rapid.SliceOfN(recGen, 0, 60).Draw(rt, "records")
			if err := s.Checkpoint(Mark{}, recs, 0, 0); err != nil {
				rt.Fatal(err)
			}
			for _, r := range recs {
				model[string(aggKey(&r))] = r
			}
			var blocks []FrozenBlock
			for range rapid.IntRange(0, 5).Draw(rt, "blocks") {
				blocks = append(blocks, FrozenBlock{
					Meter:    rapid.SampledFrom(meters).Draw(rt, "block meter"),
					Customer: rapid.SampledFrom(customers).Draw(rt, "block customer"),
					First:    base + 86400*rapid.Int64Range(0, 60).Draw(rt, "block first"),
					Data:     []byte{1},
				})
			}
			if err := s.PutFrozen(blocks, 0); err != nil {
				rt.Fatal(err)
			}
		}
		all := make([]AggRecord, 0, len(model))
		for _, r := range model {
			all = append(all, r)
		}
		slices.SortFunc(all, func(a, b AggRecord) int {
			if a.Meter != b.Meter {
				return cmp.Compare(a.Meter, b.Meter)
			}
			if a.Day != b.Day {
				if a.Day {
					return -1
				}
				return 1
			}
			if a.Start != b.Start {
				return cmp.Compare(a.Start, b.Start)
			}
			return strings.Compare(a.Customer, b.Customer)
		})
		if got := loadAggs(rt, s, 0); !equalRecs(got, all) {
			rt.Fatalf("LoadAggregates:\n got %v\nwant %v", got, all)
		}
		var edges []int64
		for _, r := range all {
			edges = append(edges, r.Start, r.Start+1)
		}
		fromGen := rapid.OneOf(
			rapid.Int64Range(base-86400, base+62*86400),
			rapid.SampledFrom([]int64{0, -1, math.MinInt64, math.MaxInt64, base}),
		)
		if len(edges) > 0 {
			fromGen = rapid.OneOf(fromGen, rapid.SampledFrom(edges))
		}
		for range 20 {
			from := fromGen.Draw(rt, "from")
			var want []AggRecord
			for _, r := range all {
				if r.Start >= from {
					want = append(want, r)
				}
			}
			if got := loadAggs(rt, s, from); !equalRecs(got, want) {
				rt.Fatalf("LoadAggregatesFrom(%d):\n got %v\nwant %v", from, got, want)
			}
		}
	})
}

// equalRecs compares record lists, nil and empty alike.
func equalRecs(a, b []AggRecord) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b))
}

// LoadAggregatesFrom seeks past the records before from: with 400 days of
// hour and day records of two meters and two customers, and frozen blocks
// for the older days, loading the last three days visits the keys it
// returns and one key per meter and kind where it seeks, not the 40,000
// older ones.
func TestLoadAggregatesFromSeeks(t *testing.T) {
	s, _ := openTemp(t, &Options{NoFsync: true})
	const (
		days = 400
		base = 1_700_000_000 / 86400 * 86400
	)
	var recs []AggRecord
	var blocks []FrozenBlock
	for _, m := range []uint64{1, 2} {
		for _, c := range []string{"cus_a", "cus_b"} {
			for d := range int64(days) {
				day := base + d*86400
				recs = append(recs, AggRecord{Meter: m, Customer: c, Start: day, Day: true, State: []byte{1}})
				for h := range int64(24) {
					recs = append(recs, AggRecord{Meter: m, Customer: c, Start: day + 3600*h, State: []byte{2}})
				}
				if d%30 == 0 && d < days-30 {
					blocks = append(blocks, FrozenBlock{Meter: m, Customer: c, First: day, Data: bytes.Repeat([]byte{3}, 100)})
				}
			}
		}
	}
	// A negative start is stored after every other start of its meter and
	// kind: it is not returned, and not sought again.
	recs = append(recs, AggRecord{Meter: 2, Customer: "cus_a", Start: -3600, State: []byte{4}})
	if err := s.Checkpoint(Mark{}, recs, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.PutFrozen(blocks, base+360*86400); err != nil {
		t.Fatal(err)
	}
	visit := func(from int64) (visited, returned int) {
		t.Helper()
		err := s.view(func(tx *bolt.Tx) error {
			var err error
			visited, err = s.loadAggregates(tx, from, func(r *AggRecord) error {
				if from > 0 && r.Start < from {
					t.Fatalf("from %d: record of start %d", from, r.Start)
				}
				returned++
				return nil
			})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return visited, returned
	}
	// Everything: each record once, and one seek per meter past its
	// blocks (two meters).
	if v, r := visit(0); r != len(recs) || v != len(recs)+2 {
		t.Fatalf("from 0: visited %d keys, returned %d; want %d and %d", v, r, len(recs)+2, len(recs))
	}
	from := int64(base + (days-3)*86400)
	want := 2 * 2 * 3 * 25 // meters, customers, days, records a day
	// One seek per meter and kind (four), one per meter past its blocks
	// (two), and the negative start, visited and skipped.
	v, r := visit(from)
	if r != want || v != want+4+2+1 {
		t.Fatalf("from the last three days: visited %d keys, returned %d; want %d and %d", v, r, want+4+2+1, want)
	}
}
