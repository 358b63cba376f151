package aggregate

import (
	"fmt"

	"github.com/google/btree"
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Key names a series: a meter (by its creation sequence) and a customer.
type Key struct {
	Meter    uint64
	Customer string
}

// Table holds every series, striped over shards. The zero value is not
// usable; call NewTable.
type Table struct {
	seed    maphash.Seed
	mask    uint64
	shards  []shard
	minutes MinuteReader // nil: frozen days keep their minute cells (freeze.go)
	blocks  BlockReader  // nil: frozen blocks stay whole in memory (freeze.go, "Stored blocks")
	cache   blockCache   // stored blocks read back lately
	horizon atomic.Int64 // the greatest Freeze horizon
	through atomic.Int64 // every day before it is frozen in every series (a block span start)
}

type shard struct {
	mu       sync.Mutex         // guards the fields below
	series   map[uint64]*series // by the hash of the key: series whose keys share a hash chain through series.next
	n        counts
	tracking bool                  // remember changed buckets for checkpoints
	dirty    []dirtyRef            // changed buckets, each once
	free     *btree.FreeListG[ref] // tree nodes, shared by the trees of the shard's series
	meters   map[uint64]*meterPart // the series of each meter, by customer (meter_index.go)
	toStore  []*series             // series with complete frozen blocks not stored yet (freeze.go)
	ar       arena                 // the minute cells and bucket extensions of the shard's series (arena.go)
	_        [128 - (unsafe.Sizeof(sync.Mutex{})+unsafe.Sizeof(map[uint64]*series(nil))+unsafe.Sizeof(counts{})+8+unsafe.Sizeof([]dirtyRef(nil))+8+8+unsafe.Sizeof([]*series(nil))+unsafe.Sizeof(arena{}))%128]byte
}

// NewTable returns a table with n shards; n must be a power of two.
func NewTable(n int) *Table {
	if n < 1 || n&(n-1) != 0 {
		panic(fmt.Sprintf("aggregate: shard count %d is not a power of two", n))
	}
	t := &Table{seed: maphash.MakeSeed(), mask: uint64(n - 1), shards: make([]shard, n)}
	for i := range t.shards {
		sh := &t.shards[i]
		sh.series = make(map[uint64]*series)
		sh.meters = make(map[uint64]*meterPart)
		sh.free = btree.NewFreeListG[ref](128)
	}
	return t
}

// hash returns the 64-bit hash of k that picks its shard.
func (t *Table) hash(k Key) uint64 {
	h := maphash.String(t.seed, k.Customer)
	h ^= k.Meter * 0x9E3779B97F4A7C15
	return bits.RotateLeft64(h*0xBF58476D1CE4E5B9, 31)
}

// shard returns the shard of k and k's hash.
func (t *Table) shard(k Key) (*shard, uint64) {
	h := t.hash(k)
	return &t.shards[h&t.mask], h
}

// lookupLocked returns the series k, whose hash is h, or nil.
func (sh *shard) lookupLocked(h uint64, k Key) *series {
	for s := sh.series[h]; s != nil; s = s.next {
		if s.key == k {
			return s
		}
	}
	return nil
}

// seriesLocked returns the series k, whose hash is h, creating it when
// there is none.
func (sh *shard) seriesLocked(h uint64, k Key) *series {
	if s := sh.lookupLocked(h, k); s != nil {
		return s
	}
	s := newSeries(k, sh)
	s.next = sh.series[h]
	sh.series[h] = s
	sh.n.series++
	sh.indexLocked(s)
	return s
}

// removeLocked removes s, whose key hashes to h.
func (sh *shard) removeLocked(h uint64, s *series) {
	if p := sh.series[h]; p == s {
		if s.next == nil {
			delete(sh.series, h)
		} else {
			sh.series[h] = s.next
		}
	} else {
		for p.next != s {
			p = p.next
		}
		p.next = s.next
	}
	s.next = nil
	if s.recent != nil {
		s.recent = nil
		sh.n.recent--
	}
	sh.n.series--
	sh.unindexLocked(s)
	if sh.n.series == 0 {
		sh.ar = arena{} // nothing names its cells or extensions any more
	}
}

// Apply adds e to series k, whose meter aggregates under mode m.
func (t *Table) Apply(k Key, m Mode, e Entry) {
	sh, h := t.shard(k)
	sh.mu.Lock()
	sh.applyLocked(h, k, m, e)
	sh.mu.Unlock()
}

// applyLocked adds e to series k, whose hash is h.
func (sh *shard) applyLocked(h uint64, k Key, m Mode, e Entry) {
	s := sh.seriesLocked(h, k)
	if s.fz != nil && e.Timestamp < s.fz.end {
		panic(fmt.Sprintf("aggregate: applying an entry at %d to a frozen day (frozen before %d)", e.Timestamp, s.fz.end))
	}
	s.apply(m, e, sh)
}

// Item is one entry of an ApplyBatch call.
type Item struct {
	Key   Key
	Mode  Mode
	Entry Entry
}

// ApplyBatch applies every item, taking each shard lock once: the items
// are grouped by shard first (a stable counting sort into scratch space
// reused across calls), so the items of a series are applied in their
// order in items. items is not modified or retained.
func (t *Table) ApplyBatch(items []Item) {
	if len(t.shards) == 1 {
		sh := &t.shards[0]
		sh.mu.Lock()
		for i := range items {
			it := &items[i]
			sh.applyLocked(t.hash(it.Key), it.Key, it.Mode, it.Entry)
		}
		sh.mu.Unlock()
		return
	}
	if len(items) < 2 {
		for i := range items {
			t.Apply(items[i].Key, items[i].Mode, items[i].Entry)
		}
		return
	}
	sc := batchScratchPool.Get().(*batchScratch)
	n := len(t.shards)
	ends := grow(sc.ends, n+1)
	hashes := grow(sc.hashes, len(items))
	order := grow(sc.order, len(items))
	clear(ends)
	for i := range items {
		h := t.hash(items[i].Key)
		hashes[i] = h
		ends[h&t.mask+1]++
	}
	for w := 1; w <= n; w++ {
		ends[w] += ends[w-1]
	}
	// ends[w] is now where shard w's items start; placing them moves it to
	// where they end.
	for i, h := range hashes {
		w := h & t.mask
		order[ends[w]] = int32(i)
		ends[w]++
	}
	begin := int32(0)
	for w := range n {
		end := ends[w]
		if end == begin {
			continue
		}
		sh := &t.shards[w]
		sh.mu.Lock()
		if end-begin >= warmMin {
			sh.warmLocked(items, hashes, order[begin:end], sc)
		}
		for _, i := range order[begin:end] {
			it := &items[i]
			sh.applyLocked(hashes[i], it.Key, it.Mode, it.Entry)
		}
		sh.mu.Unlock()
		begin = end
	}
	if len(items) <= 1<<16 { // very large batches leave theirs to the collector
		sc.ends, sc.hashes, sc.order = ends, hashes, order
		batchScratchPool.Put(sc)
	}
}

// batchScratch is ApplyBatch's working space: per shard where its items
// end in order, per item its key's hash (which picks the shard and finds
// the series), and the item indices grouped by shard.
type batchScratch struct {
	ends   []int32
	hashes []uint64
	order  []int32
	// warmLocked's series, chunks and hour buckets of the items of one shard
	warmSeries []*series
	warmChunks []*chunk
	warmHours  []*bucket
}

var batchScratchPool = sync.Pool{New: func() any { return new(batchScratch) }}

// grow returns s resized to n, reusing its array when it is large enough.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// Cancel removes e, which must have been applied to series k under mode m
// with the same Seq, Timestamp and Value. It reports false when the series
// holds no such entry.
func (t *Table) Cancel(k Key, m Mode, e Entry) bool {
	sh, h := t.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s := sh.lookupLocked(h, k)
	if s != nil && s.fz != nil && e.Timestamp < s.fz.end {
		panic(fmt.Sprintf("aggregate: cancelling an entry at %d of a frozen day (frozen before %d)", e.Timestamp, s.fz.end))
	}
	if s == nil || !s.cancel(m, e, sh) {
		return false
	}
	if s.empty() {
		sh.removeLocked(h, s)
	}
	return true
}

// Stats counts what a table holds.
type Stats struct {
	Series      int64 // (meter, customer) pairs with data
	HourBuckets int64 // hours with entries, frozen ones included
	DayBuckets  int64 // days with entries, frozen ones included
	MinuteCells int64 // minutes with entries, frozen ones included (whether their cells are in memory or read from the store)
	RawEntries  int64 // entries kept for last and pre-aggregated meters (frozen days keep none)
	// FrozenDays counts the days of FrozenDays that are frozen, and
	// FrozenBytes the heap their packed form takes (included in Bytes).
	FrozenDays  int64
	FrozenBytes int64
	// StoredBlocks counts the blocks of frozen days kept in the store,
	// whose hour cells are read back when a query needs them.
	StoredBlocks int64
	// Bytes estimates the heap the table holds, from the counts above and
	// the sizes of its structures (slice and tree slack included roughly).
	Bytes int64
}

// Approximate heap bytes per structure: the struct, the pointer or map
// entry that holds it, and typical slack.
var (
	seriesBytes = int64(unsafe.Sizeof(series{})) + 64 + 48                                 // tree header, map entry
	chunkBytes  = int64(unsafe.Sizeof(chunk{})) + 24 + int64(unsafe.Sizeof(dayCell{}))*5/4 // tree slot at ~70% fill; the day's copy in the meter index
	hourBytes   = int64(unsafe.Sizeof(bucket{})) * 9 / 8                                   // growth slack of a chunk's hours
	extBytes    = int64(unsafe.Sizeof(bucketExt{})) + 16
	recentBytes = int64(unsafe.Sizeof([recentDays]ref{}))
	minuteBytes = int64(unsafe.Sizeof(minuteCell{})) // per cell of the arenas' blocks, free ones included
	rawBytes    = int64(unsafe.Sizeof(Entry{})) * 5 / 4
)

// Stats returns the table's current sizes.
func (t *Table) Stats() Stats {
	var s Stats
	var cells, extSlots, exts, chunks, frozenHours, frozenMinutes, recent int64
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		s.Series += sh.n.series
		s.HourBuckets += sh.n.hours
		s.DayBuckets += sh.n.days
		s.MinuteCells += sh.n.minutes
		s.RawEntries += sh.n.raw
		cells += sh.ar.cells
		extSlots += int64(cap(sh.ar.exts) + cap(sh.ar.freeExts))
		exts += sh.n.exts
		chunks += sh.n.chunks
		recent += sh.n.recent
		s.FrozenDays += sh.n.frozenDays
		s.FrozenBytes += sh.n.frozenBytes
		s.StoredBlocks += sh.n.storedBlocks
		frozenHours += sh.n.frozenHours
		frozenMinutes += sh.n.frozenMinutes
		sh.mu.Unlock()
	}
	s.Bytes = s.Series*seriesBytes + chunks*chunkBytes + s.HourBuckets*hourBytes +
		cells*minuteBytes + s.RawEntries*rawBytes + exts*extBytes + extSlots*8 + s.FrozenBytes + recent*recentBytes
	s.HourBuckets += frozenHours
	s.DayBuckets += s.FrozenDays
	s.MinuteCells += frozenMinutes
	return s
}

// Shards returns the number of shards.
func (t *Table) Shards() int { return len(t.shards) }
