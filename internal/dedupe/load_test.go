package dedupe

import (
	"encoding/binary"
	"fmt"
	"testing"
)

// Both loaders rebuild an index that finds every loaded identifier at its
// location, refuses none of the fresh ones, and takes new identifiers
// after the load.
func TestLoaders(t *testing.T) {
	const n, perLoc = 20000, 10
	load := map[string]func(x *Index, ids []string){
		"Loader": func(x *Index, ids []string) {
			l := x.Loader()
			for i, id := range ids {
				l.Add([]byte(id), uint64(i/perLoc+1))
			}
			l.Finish(2)
		},
		"PlannedLoader": func(x *Index, ids []string) {
			// Three parts of unequal sizes; the last one is the one that
			// fills after the load.
			bounds := []int{0, 9000, 18000, n}
			var parts []LoadPart
			for k := range 3 {
				parts = append(parts, LoadPart{First: uint64(bounds[k]/perLoc + 1), Last: uint64((bounds[k+1]-1)/perLoc + 1), Count: bounds[k+1] - bounds[k]})
			}
			l := x.PlannedLoader(parts)
			for k := range 3 {
				for i := bounds[k]; i < bounds[k+1]; i++ {
					l.Count(k, hashTable(x, ids[i]))
				}
			}
			for k := range 3 {
				for i := bounds[k]; i < bounds[k+1]; i++ {
					l.Fill(k, hashTable(x, ids[i]), uint64(i/perLoc+1))
				}
			}
			l.Finish()
		},
	}
	for name, fill := range load {
		t.Run(name, func(t *testing.T) {
			x, j := New(), newJournal()
			ids := make([]string, n)
			for i := range ids {
				ids[i] = fmt.Sprint("id-", i)
				j.put(uint64(i/perLoc+1), ids[i])
			}
			x.SetEpoch(7)
			fill(x, ids)
			if s := x.Stats(); s.Used != n {
				t.Fatalf("%d identifiers loaded, want %d: %+v", s.Used, n, s)
			}
			for i, id := range ids {
				if loc, found, _ := x.Find(id, j.confirm(id)); !found || loc != uint64(i/perLoc+1) {
					t.Fatalf("Find(%s) = %d, %v", id, loc, found)
				}
			}
			if c := j.freshReads(t, x, "fresh-", n); c > n/100 {
				t.Errorf("%d confirmations for %d fresh identifiers", c, n)
			}
			// New identifiers after the load fill the last epochs: a shard
			// whose share ran high may start another.
			before := x.Stats().Epochs
			for i := range 1000 {
				j.commit(t, x, fmt.Sprint("new-", i), uint64(n/perLoc+1+i/perLoc))
			}
			if s := x.Stats(); s.Epochs > before+8 || s.Used != n+1000 {
				t.Errorf("after 1000 new identifiers: %+v (had %d epochs)", s, before)
			}
		})
	}
}

// An epoch whose locations span more than its offsets express stands an
// offset for several locations: a candidate is confirmed at each of them,
// and the identifier is found at exactly its own.
func TestCoarseOffsets(t *testing.T) {
	x, j := New(), newJournal()
	const n, step = 2000, 1000 // locations 1 to 2,000,000: 2^21, three bits past the offsets
	l := x.Loader()
	for i := range n {
		loc := uint64(1 + i*step)
		id := fmt.Sprint("id-", i)
		j.put(loc, id)
		l.Add([]byte(id), loc)
	}
	l.Finish(1)
	shifted, maxShift := 0, uint8(0)
	for s := range x.shards {
		for _, e := range x.shards[s].epochs {
			if e.shift > 0 {
				shifted++
			}
			maxShift = max(maxShift, e.shift)
		}
	}
	if shifted == 0 {
		t.Fatal("no epoch has coarse offsets")
	}
	for i := range n {
		id := fmt.Sprint("id-", i)
		j.calls.Store(0)
		if loc, found, _ := x.Find(id, j.confirm(id)); !found || loc != uint64(1+i*step) {
			t.Fatalf("Find(%s) = %d, %v", id, loc, found)
		}
		// One read per location of its offset, and as many for a rare
		// false candidate.
		if c := j.calls.Load(); c > 2<<maxShift {
			t.Fatalf("Find(%s): %d confirmations, offsets of %d locations", id, c, 1<<maxShift)
		}
		if ok, _ := x.Reserve(id, j.confirm(id)); ok {
			t.Fatalf("%s reserved again", id)
		}
	}
}

// hashTable returns the hashes of ids under x's key, as a format 3 log
// record keeps them.
func hashTable(x *Index, ids ...string) []byte {
	var b []byte
	for _, id := range ids {
		b = binary.BigEndian.AppendUint64(b, hashOf(x, id))
	}
	return b
}

// A PlannedLoader given more identifiers than were counted (a log that
// grew between the passes would do it) still finds every one: the extra
// ones go straight into the tables.
func TestPlannedLoaderUncounted(t *testing.T) {
	const n = 4000
	x, j := New(), newJournal()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprint("id-", i)
		j.put(uint64(i/10+1), ids[i])
	}
	parts := []LoadPart{{First: 1, Last: n / 20, Count: n / 2}, {First: n/20 + 1, Last: n / 10, Count: n / 2}}
	l := x.PlannedLoader(parts)
	for i, id := range ids {
		if i%3 != 0 { // a third are never counted
			l.Count(i*2/n, hashTable(x, id))
		}
	}
	for i, id := range ids {
		l.Fill(i*2/n, hashTable(x, id), uint64(i/10+1))
	}
	l.Build(0)
	l.Finish()
	if s := x.Stats(); s.Used != n {
		t.Fatalf("%d identifiers loaded, want %d", s.Used, n)
	}
	for i, id := range ids {
		if loc, found, _ := x.Find(id, j.confirm(id)); !found || loc != uint64(i/10+1) {
			t.Fatalf("Find(%s) = %d, %v", id, loc, found)
		}
	}
}
