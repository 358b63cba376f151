package aggregate

import (
	"fmt"

	"github.com/google/btree"
	"hash/maphash"
	"math/bits"
	"sync"
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
	seed   maphash.Seed
	mask   uint64
	shards []shard
}

type shard struct {
	mu       sync.Mutex // guards the fields below
	series   map[Key]*series
	n        counts
	tracking bool                  // remember changed buckets for checkpoints
	dirty    []dirtyRef            // changed buckets, each once
	free     *btree.FreeListG[ref] // tree nodes, shared by the trees of the shard's series
	meters   map[uint64]*meterPart // the series of each meter, by customer (meter_index.go)
	_        [128 - (unsafe.Sizeof(sync.Mutex{})+unsafe.Sizeof(map[Key]*series(nil))+unsafe.Sizeof(counts{})+8+unsafe.Sizeof([]dirtyRef(nil))+8+8)%128]byte
}

// NewTable returns a table with n shards; n must be a power of two.
func NewTable(n int) *Table {
	if n < 1 || n&(n-1) != 0 {
		panic(fmt.Sprintf("aggregate: shard count %d is not a power of two", n))
	}
	t := &Table{seed: maphash.MakeSeed(), mask: uint64(n - 1), shards: make([]shard, n)}
	for i := range t.shards {
		sh := &t.shards[i]
		sh.series = make(map[Key]*series)
		sh.meters = make(map[uint64]*meterPart)
		sh.free = btree.NewFreeListG[ref](128)
	}
	return t
}

func (t *Table) shard(k Key) *shard {
	h := maphash.String(t.seed, k.Customer)
	h ^= k.Meter * 0x9E3779B97F4A7C15
	h = bits.RotateLeft64(h*0xBF58476D1CE4E5B9, 31)
	return &t.shards[h&t.mask]
}

// Apply adds e to series k, whose meter aggregates under mode m.
func (t *Table) Apply(k Key, m Mode, e Entry) {
	sh := t.shard(k)
	sh.mu.Lock()
	sh.applyLocked(k, m, e)
	sh.mu.Unlock()
}

func (sh *shard) applyLocked(k Key, m Mode, e Entry) {
	s, ok := sh.series[k]
	if !ok {
		s = newSeries(k, sh)
		sh.series[k] = s
		sh.n.series++
		sh.indexLocked(s)
	}
	s.apply(m, e, sh)
}

// Item is one entry of an ApplyBatch call.
type Item struct {
	Key   Key
	Mode  Mode
	Entry Entry
}

// ApplyBatch applies every item, taking each shard lock once per run of
// consecutive items on that shard.
func (t *Table) ApplyBatch(items []Item) {
	var cur *shard
	for i := range items {
		it := &items[i]
		sh := t.shard(it.Key)
		if sh != cur {
			if cur != nil {
				cur.mu.Unlock()
			}
			cur = sh
			cur.mu.Lock()
		}
		cur.applyLocked(it.Key, it.Mode, it.Entry)
	}
	if cur != nil {
		cur.mu.Unlock()
	}
}

// Cancel removes e, which must have been applied to series k under mode m
// with the same Seq, Timestamp and Value. It reports false when the series
// holds no such entry.
func (t *Table) Cancel(k Key, m Mode, e Entry) bool {
	sh := t.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s, ok := sh.series[k]
	if !ok {
		return false
	}
	if !s.cancel(m, e, sh) {
		return false
	}
	if s.empty() {
		delete(sh.series, k)
		sh.n.series--
		sh.unindexLocked(s)
	}
	return true
}

// Stats counts what a table holds.
type Stats struct {
	Series      int64 // (meter, customer) pairs with data
	HourBuckets int64
	DayBuckets  int64
	MinuteCells int64
	RawEntries  int64 // entries kept for last and pre-aggregated meters
	// Bytes estimates the heap the table holds, from the counts above and
	// the sizes of its structures (slice and tree slack included roughly).
	Bytes int64
}

// Approximate heap bytes per structure: the struct, the pointer or map
// entry that holds it, and typical slack.
var (
	seriesBytes = int64(unsafe.Sizeof(series{})) + 2*64 + 48      // two tree headers, map entry
	hourBytes   = int64(unsafe.Sizeof(bucket{})) + 24             // tree slot at ~70% fill
	dayBytes    = hourBytes + int64(unsafe.Sizeof(dayCell{}))*5/4 // with its copy in the meter index
	extBytes    = int64(unsafe.Sizeof(bucketExt{})) + 16
	minuteBytes = int64(unsafe.Sizeof(Cell{})) * 5 / 4 // slice growth slack
	rawBytes    = int64(unsafe.Sizeof(Entry{})) * 5 / 4
)

// Stats returns the table's current sizes.
func (t *Table) Stats() Stats {
	var s Stats
	var slots, exts int64
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		s.Series += sh.n.series
		s.HourBuckets += sh.n.hours
		s.DayBuckets += sh.n.days
		s.MinuteCells += sh.n.minutes
		s.RawEntries += sh.n.raw
		slots += sh.n.minuteSlots
		exts += sh.n.exts
		sh.mu.Unlock()
	}
	s.Bytes = s.Series*seriesBytes + s.HourBuckets*hourBytes + s.DayBuckets*dayBytes +
		slots*minuteBytes + s.RawEntries*rawBytes + exts*extBytes
	return s
}

// Shards returns the number of shards.
func (t *Table) Shards() int { return len(t.shards) }
