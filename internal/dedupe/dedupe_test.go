package dedupe

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// journal is a stand-in for the event log: the identifiers stored at each
// location.
type journal struct {
	mu    sync.Mutex
	locs  map[uint64]map[string]bool
	calls atomic.Int64 // confirm calls
}

func newJournal() *journal { return &journal{locs: map[uint64]map[string]bool{}} }

func (j *journal) put(loc uint64, id string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.locs[loc] == nil {
		j.locs[loc] = map[string]bool{}
	}
	j.locs[loc][id] = true
}

// confirm is what the DB passes to Reserve and Find: does loc hold id?
func (j *journal) confirm(id string) func(uint64) (bool, error) {
	return func(loc uint64) (bool, error) {
		j.calls.Add(1)
		j.mu.Lock()
		defer j.mu.Unlock()
		return j.locs[loc][id], nil
	}
}

// commit reserves id and stores it at loc, failing the test when id is
// taken.
func (j *journal) commit(t *testing.T, x *Index, id string, loc uint64) {
	t.Helper()
	ok, err := x.Reserve(id, j.confirm(id))
	if err != nil || !ok {
		t.Fatalf("Reserve(%q) = %v, %v", id, ok, err)
	}
	j.put(loc, id)
	x.Commit(id, loc)
}

// freshReads reserves and releases n identifiers never stored (prefix
// and a number), failing the test if one is refused, and returns the
// confirm calls they caused.
func (j *journal) freshReads(t *testing.T, x *Index, prefix string, n int) int64 {
	t.Helper()
	j.calls.Store(0)
	for i := range n {
		id := fmt.Sprint(prefix, i)
		if ok, _ := x.Reserve(id, j.confirm(id)); !ok {
			t.Fatalf("%s refused", id)
		}
		x.Release(id)
	}
	return j.calls.Load()
}

func TestReserveCommitRelease(t *testing.T) {
	x, j := New(), newJournal()
	ok, _ := x.Reserve("a", j.confirm("a"))
	if !ok {
		t.Fatal("first Reserve refused")
	}
	if ok, _ := x.Reserve("a", j.confirm("a")); ok {
		t.Fatal("pending identifier reserved twice")
	}
	if _, found, _ := x.Find("a", j.confirm("a")); found {
		t.Fatal("pending identifier found")
	}
	x.Release("a")
	j.commit(t, x, "a", 3)
	if ok, _ := x.Reserve("a", j.confirm("a")); ok {
		t.Fatal("committed identifier reserved again")
	}
	if loc, found, err := x.Find("a", j.confirm("a")); !found || loc != 3 || err != nil {
		t.Fatalf("Find = %d, %v, %v", loc, found, err)
	}
	if _, found, _ := x.Find("b", j.confirm("b")); found {
		t.Fatal("unknown identifier found")
	}
	// Add, as replay does, without a reservation.
	j.put(4, "r")
	x.Add("r", 4)
	if ok, _ := x.Reserve("r", j.confirm("r")); ok {
		t.Fatal("replayed identifier reserved")
	}
	if s := x.Stats(); s.Used != 2 || s.Pending != 0 || s.Epochs < 1 || s.Epochs > 2 {
		t.Errorf("stats %+v", s)
	}
	// A confirm error is returned and reserves nothing.
	boom := fmt.Errorf("boom")
	if ok, err := x.Reserve("a", func(uint64) (bool, error) { return false, boom }); ok || err != boom {
		t.Fatalf("Reserve with a failing confirm = %v, %v", ok, err)
	}
	if s := x.Stats(); s.Pending != 0 {
		t.Errorf("failed Reserve left %d pending", s.Pending)
	}
}

// Candidates that the journal does not confirm (fingerprint collisions)
// never make a new identifier a duplicate, and never hide a real one.
func TestFingerprintCollisions(t *testing.T) {
	x, j := New(), newJournal()
	const id = "the-identifier"
	h := hashOf(x, id)
	sh := x.shardOf(h)
	// Forty other identifiers with id's hash, as far as the index can
	// tell: slots with its tag in its buckets at locations that hold
	// something else. Eight fill the two buckets, the rest go to the
	// stash and then to further epochs.
	sh.mu.Lock()
	for loc := uint64(1); loc <= 40; loc++ {
		x.insertLocked(sh, h, loc)
		j.put(loc, fmt.Sprint("other-", loc))
	}
	sh.mu.Unlock()
	j.calls.Store(0)
	ok, err := x.Reserve(id, j.confirm(id))
	if !ok || err != nil {
		t.Fatalf("identifier colliding with 40 others refused: %v, %v", ok, err)
	}
	if n := j.calls.Load(); n != 40 {
		t.Errorf("%d confirmations, want one per colliding slot (40)", n)
	}
	j.put(41, id)
	x.Commit(id, 41)
	if ok, _ := x.Reserve(id, j.confirm(id)); ok {
		t.Fatal("identifier behind 40 colliding slots reserved again")
	}
	if loc, found, _ := x.Find(id, j.confirm(id)); !found || loc != 41 {
		t.Fatalf("Find = %d, %v", loc, found)
	}
	// Collisions survive a new epoch number.
	x.SetEpoch(5)
	j.commit(t, x, "after", 42)
	if loc, found, _ := x.Find(id, j.confirm(id)); !found || loc != 41 {
		t.Fatalf("after a new epoch Find = %d, %v", loc, found)
	}
}

// At scale, distinct identifiers are all accepted and all remembered.
func TestNoFalseDrops(t *testing.T) {
	x, j := New(), newJournal()
	const n = 50000
	for i := range n {
		j.commit(t, x, fmt.Sprint("id-", i), uint64(i/100+1))
	}
	for i := range n {
		id := fmt.Sprint("id-", i)
		if ok, _ := x.Reserve(id, j.confirm(id)); ok {
			t.Fatalf("%s reserved twice", id)
		}
	}
	// 14-bit tags over two buckets of four slots per epoch: at most 1 %
	// of fresh identifiers meet a false candidate.
	if c := j.freshReads(t, x, "new-", n); c > n/100 {
		t.Errorf("%d confirmations for %d new identifiers", c, n)
	}
}

func TestSetMinLoc(t *testing.T) {
	x, j := New(), newJournal()
	for loc := uint64(1); loc <= 10; loc++ {
		j.commit(t, x, fmt.Sprint("id-", loc), loc)
	}
	x.SetMinLoc(6)
	x.SetMinLoc(4) // never moves back
	j.calls.Store(0)
	for loc := uint64(1); loc <= 10; loc++ {
		id := fmt.Sprint("id-", loc)
		_, found, _ := x.Find(id, j.confirm(id))
		if found != (loc >= 6) {
			t.Errorf("%s found %v after SetMinLoc(6)", id, found)
		}
	}
	if c := j.calls.Load(); c != 5 {
		t.Errorf("%d confirmations, want 5 (slots below the window are not candidates)", c)
	}
	// An identifier below the window is accepted again.
	j.commit(t, x, "id-1", 11)
	// Committing below the window stores nothing.
	x.Add("late", 2)
	if _, found, _ := x.Find("late", func(uint64) (bool, error) { return true, nil }); found {
		t.Error("identifier committed below the window found")
	}
}

// Memory tracks the identifiers in the window, not every identifier ever
// seen: with a sliding window and a new epoch number every eighth of it,
// whole epochs retire. The tables cost about 4.8 bytes per identifier of
// the window at steady state once a shard's epoch holds thousands; at this
// test's scale (300 per shard and epoch) the epochs' fixed costs and the
// variance between shards add some.
func TestBoundedMemory(t *testing.T) {
	x := New()
	const perLoc, window = 2000, 80 // 160,000 identifiers live
	var samples, bytes, live float64
	var peak int64
	for loc := uint64(1); loc <= 800; loc++ {
		x.SetEpoch(loc * 12 / window)
		for i := range perLoc {
			id := fmt.Sprint(loc, "-", i)
			x.Reserve(id, func(uint64) (bool, error) { return false, nil })
			x.Commit(id, loc)
		}
		if loc > window {
			x.SetMinLoc(loc - window + 1)
		}
		s := x.Stats()
		peak = max(peak, s.Bytes)
		if loc > 3*window {
			samples++
			bytes += float64(s.Bytes)
			live += perLoc * window
		}
	}
	avg := bytes / live
	t.Logf("steady state: %.2f bytes per live identifier on average, peak %.2f; %+v",
		avg, float64(peak)/(perLoc*window), x.Stats())
	if avg > 6.5 {
		t.Errorf("%.2f bytes per live identifier on average, want at most 6.5", avg)
	}
	if float64(peak)/(perLoc*window) > 7.5 {
		t.Errorf("peak %d bytes for %d live identifiers", peak, perLoc*window)
	}
}

// Concurrent Reserve of one identifier: exactly one wins.
func TestConcurrentReserve(t *testing.T) {
	x, j := New(), newJournal()
	for round := range 200 {
		id := fmt.Sprint("id-", round)
		var wins atomic.Int32
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if ok, _ := x.Reserve(id, j.confirm(id)); ok {
					wins.Add(1)
					j.put(uint64(round+1), id)
					x.Commit(id, uint64(round+1))
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%s reserved %d times", id, wins.Load())
		}
	}
}

// BenchmarkWindow fills a window of -window identifiers (1,000 per
// location, a new epoch number every twelfth of the window) for three
// windows and reports the tables' bytes per identifier of the window and
// the share of fresh identifiers that met a false candidate.
func BenchmarkWindow(b *testing.B) {
	for _, live := range []int{1 << 20, 8 << 20} {
		b.Run(fmt.Sprintf("window=%d", live), func(b *testing.B) {
			for range b.N {
				x := New()
				const perLoc = 1000
				window := uint64(live / perLoc)
				var bytes, samples float64
				id := make([]byte, 0, 32)
				for loc := uint64(1); loc <= 3*window; loc++ {
					x.SetEpoch(loc * 12 / window)
					for i := range perLoc {
						id = fmt.Appendf(id[:0], "%d-%d", loc, i)
						x.Add(string(id), loc)
					}
					if loc > window {
						x.SetMinLoc(loc - window + 1)
					}
					if loc > 2*window && loc%16 == 0 {
						bytes += float64(x.Stats().Bytes)
						samples++
					}
				}
				b.ReportMetric(bytes/samples/float64(window*perLoc), "B/identifier")
			}
		})
	}
}

// BenchmarkReserveFresh reserves and releases fresh identifiers in
// batches of 1,000 against a full window of -window identifiers in
// twelve epochs and more: every lookup probes every live epoch.
func BenchmarkReserveFresh(b *testing.B) {
	for _, live := range []int{1 << 20, 16 << 20} {
		b.Run(fmt.Sprintf("window=%d", live), func(b *testing.B) {
			x := New()
			const perLoc = 1000
			window := uint64(live / perLoc)
			id := make([]byte, 0, 32)
			for loc := uint64(1); loc <= window+window/12; loc++ {
				x.SetEpoch(loc * 12 / window)
				for i := range perLoc {
					id = fmt.Appendf(id[:0], "%d-%d", loc, i)
					x.Add(string(id), loc)
				}
				if loc > window {
					x.SetMinLoc(loc - window + 1)
				}
			}
			// Distinct identifiers in every batch (up to 4 Mi of them), so
			// that a batch finds no slot of the last one in the cache.
			fresh := make([]string, min(b.N, 4<<20)+1000)
			for i := range fresh {
				fresh[i] = fmt.Sprintf("fresh-%08d", i)
			}
			var r Reservation
			no := func(int, uint64) (bool, error) { return false, nil }
			b.ResetTimer()
			for i := 0; i < b.N; i += 1000 {
				k := i % (len(fresh) - 999)
				x.ReserveBatch(&r, fresh[k:k+1000], no)
				x.ReleaseBatch(&r)
			}
			b.ReportMetric(float64(x.Stats().Epochs)/(1<<shardBits), "epochs/shard")
		})
	}
}

// An EventLocs index keeps one exact location per identifier: a shard's
// epoch ends when its 23-bit offsets run out, and every identifier is
// found at its own location, never at a neighbour's.
func TestEventLocs(t *testing.T) {
	x, j := NewWith(Options{EventLocs: true}), newJournal()
	const n, gap = 2000, 1 << 18 // 32 batches per epoch's offsets in a shard
	var r Reservation
	for i := range n / 4 {
		ids := make([]string, 5)
		for k := range ids {
			ids[k] = fmt.Sprint("id-", 4*i+min(k, 3))
		}
		if err := x.ReserveBatch(&r, ids, func(int, uint64) (bool, error) { return false, nil }); err != nil {
			t.Fatal(err)
		}
		if !r.Reserved[3] || r.Reserved[4] {
			t.Fatalf("reserved %v: the repeated identifier must be reserved once", r.Reserved)
		}
		// The four reserved identifiers take consecutive locations.
		first := uint64(i) * gap
		for k := range 4 {
			j.put(first+uint64(k), ids[k])
		}
		x.CommitEach(&r, first)
	}
	for i := range n {
		id := fmt.Sprint("id-", i)
		want := uint64(i/4)*gap + uint64(i%4)
		loc, found, err := x.Find(id, j.confirm(id))
		if err != nil || !found || loc != want {
			t.Fatalf("Find(%s) = %d, %v, %v; want %d", id, loc, found, err, want)
		}
	}
	// A candidate stands for one location, never a range.
	if s := x.Stats(); s.ConfirmReads != s.Candidates {
		t.Errorf("%d confirm calls for %d candidates", s.ConfirmReads, s.Candidates)
	}
	// 500 batches over 500<<18 locations: every epoch's offsets count
	// single locations and reach at most 1<<memOffBits of them.
	epochs := 0
	for i := range x.shards {
		for _, e := range x.shards[i].epochs {
			epochs++
			if e.shift != 0 || e.ob != memOffBits || e.last-e.base >= 1<<memOffBits {
				t.Fatalf("epoch from %d to %d: shift %d, %d offset bits", e.base, e.last, e.shift, e.ob)
			}
		}
	}
	if epochs < 64*(n/4*gap>>memOffBits)/2 {
		t.Errorf("%d epochs for %d locations: offsets cannot reach that far", epochs, n/4*gap)
	}
	if ok, err := x.Reserve("id-7", j.confirm("id-7")); ok || err != nil {
		t.Errorf("Reserve of a stored identifier = %v, %v", ok, err)
	}
}

// While the window fills (the first epoch number, none before it to size
// from), a file-backed index keeps one table per shard, rebuilt twice as
// large when it fills and with coarser offsets when its locations outrun
// them: a lookup probes one epoch. The next number settles it (shrunk to
// what it holds, its kept slots dropped), and every identifier is found
// at its location throughout. An EventLocs index keeps no slots: it grows
// by new epochs.
func TestGrowingEpoch(t *testing.T) {
	x, j := New(), newJournal()
	const n = 20000                                        // about 310 per shard: four doublings from 32
	loc := func(i int) uint64 { return 1 + uint64(i)*499 } // up to 10 M, past 2^18: offsets coarsen
	id := func(i int) string { return fmt.Sprint("id-", i) }
	for i := range n {
		j.commit(t, x, id(i), loc(i))
	}
	check := func(stage string, upTo int) {
		t.Helper()
		for i := range upTo {
			if l, found, err := x.Find(id(i), j.confirm(id(i))); !found || l != loc(i) || err != nil {
				t.Fatalf("%s: Find(%s) = %d, %v, %v; want %d", stage, id(i), l, found, err, loc(i))
			}
		}
	}
	check("growing", n)
	if s := x.Stats(); s.Epochs != 1<<shardBits || s.Used != n {
		t.Fatalf("while the window fills: %d epochs over %d shards for %d identifiers, want one each", s.Epochs, 1<<shardBits, s.Used)
	}
	maxShift := uint8(0)
	for s := range x.shards {
		sh := &x.shards[s]
		if e := sh.epochs[0]; !e.grows || len(sh.keep) != e.count {
			t.Fatalf("shard %d: growing %v, %d kept slots for %d identifiers", s, e.grows, len(sh.keep), e.count)
		}
		maxShift = max(maxShift, sh.epochs[0].shift)
	}
	if maxShift == 0 {
		t.Fatal("no epoch's offsets coarsened")
	}
	x.SetEpoch(1)
	const more = 5000
	for i := n; i < n+more; i++ {
		j.commit(t, x, id(i), loc(i))
	}
	check("settled", n+more)
	for s := range x.shards {
		sh := &x.shards[s]
		e := sh.epochs[0]
		if e.grows || e.n != 0 || e.count+e.count/2+64 < e.limit {
			t.Fatalf("shard %d: first epoch growing %v, number %d, limit %d for %d identifiers", s, e.grows, e.n, e.limit, e.count)
		}
		if last := sh.epochs[len(sh.epochs)-1]; last == e || last.grows || sh.keep != nil {
			t.Fatalf("shard %d: the second number's epoch grows (%v) or slots are kept (%d)", s, last.grows, len(sh.keep))
		}
	}

	ev := NewWith(Options{EventLocs: true})
	for i := range n {
		ev.Add(id(i), uint64(i))
	}
	for s := range ev.shards {
		if sh := &ev.shards[s]; sh.keep != nil || sh.epochs[len(sh.epochs)-1].grows {
			t.Fatalf("EventLocs shard %d keeps %d slots", s, len(sh.keep))
		}
	}
}

// A gap in the locations while the window fills starts a new epoch: the
// growing one keeps its offsets exact instead of coarsening them to reach
// across the gap, which would make every candidate of an identifier
// stored before it cost thousands of confirm reads.
func TestGrowingEpochGap(t *testing.T) {
	x, j := New(), newJournal()
	id := func(i int) string { return fmt.Sprint("g-", i) }
	const n = 64 * 1000 // about 1,000 per shard, 64 per location
	for i := range n {
		j.commit(t, x, id(i), uint64(i/64+1))
	}
	far := uint64(n/64 + 1 + 1<<30)
	for i := range 1000 {
		j.commit(t, x, fmt.Sprint("far-", i), far+uint64(i))
	}
	j.calls.Store(0)
	for i := range n {
		if l, found, _ := x.Find(id(i), j.confirm(id(i))); !found || l != uint64(i/64+1) {
			t.Fatalf("Find(%s) = %d, %v", id(i), l, found)
		}
	}
	if reads := j.calls.Load(); reads > 2*n {
		t.Errorf("%d confirm reads to find %d identifiers stored before the gap", reads, n)
	}
	const fresh = 20000
	if reads := j.freshReads(t, x, "fresh-", fresh); reads > fresh/100 {
		t.Errorf("%d confirm reads for %d fresh identifiers", reads, fresh)
	}
}
