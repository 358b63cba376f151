package pipeline

import (
	"encoding/binary"
	"hash/maphash"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/meterdb/meterdb/internal/dedupe"
	"github.com/meterdb/meterdb/internal/idhash"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/store"
)

// Log keeps accepted events and cancellations for replay, dedupe
// confirmation and cancellation lookups, and the meters and key-value
// records of the database. A record's location is a dense, increasing
// number; locations below a pruned point are gone.
type Log interface {
	// Append queues g, with kvs to be written in the same commit, and
	// returns at once; the commit tells when g is as durable as the log
	// promises and at which location.
	Append(g *store.Group, kvs []store.KVWrite) (commit, error)
	// FindEvent returns the event with identifier id in the record at loc
	// (its Identifier left empty), or false when there is none or loc was
	// pruned. It is how dedupe confirms a candidate and Cancel finds its
	// event: it should read as little as it can and allocate nothing
	// unless the event is found. The memory log's locations here are its
	// event indexes, not its record locations: see memLog.
	FindEvent(loc uint64, id string) (store.Event, bool, error)
	// Prune lets the log drop groups below loc and key-value records
	// expired at now (unix seconds).
	Prune(loc uint64, now int64)
	// SaveMeter stores a new or changed meter.
	SaveMeter(m meter.Meter) error
	PutKV(ns, key string, value []byte, expires int64) error
	GetKV(ns, key string, now int64) ([]byte, bool, error)
	DeleteKV(ns, key string) error
	// WriteKV applies several puts and deletes in one commit: all or none.
	WriteKV(ws []store.KVWrite) error
	ListKV(ns, after string, now int64, fn func(key string, value []byte) bool) error
	// MemoryBytes estimates the heap the log holds.
	MemoryBytes() int64
	Sync() error
	Close() error
}

// commit is an Append in progress.
type commit struct {
	p     store.Pending // file logs
	loc   uint64        // memory logs: final at once
	first uint64        // memory logs: the event index of the record's first event
	held  *heldCommit   // tests: a commit that completes later
}

// heldCommit is a commit whose completion a test controls.
type heldCommit struct {
	done chan struct{}
	loc  uint64
}

func (c commit) done() <-chan struct{} {
	switch {
	case c.held != nil:
		return c.held.done
	case c.loc != 0:
		return closed
	}
	return c.p.Done()
}

func (c commit) result() (uint64, error) {
	switch {
	case c.held != nil:
		return c.held.loc, nil
	case c.loc != 0:
		return c.loc, nil
	}
	return c.p.Result()
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// memLog is the log of an in-memory database. It keeps no events: of
// each event of the retention window, 114 bits of its identifier's
// 128-bit fingerprint (for dedupe confirmation and Cancel's lookup), in
// blocks of fpBlock, and what a cancellation needs (sequence, meter,
// customer, value, timestamp), in blocks of memBlock: appending never
// copies what is kept (but the last fingerprint block, which grows to its
// size by doubling), and pruning drops whole blocks. Cancellation records
// keep nothing: nothing looks them up. Customers are interned (custs):
// the blocks hold no pointer, so the garbage collector skips them, and a
// customer's string is kept once while an event of the window names it.
//
// An event's location for FindEvent is its absolute index (the dedupe
// index keeps one location per identifier: Options.EventLocs), so a
// candidate is compared with one event only: the one whose slot named
// it. The fingerprint is the dedupe index's 64-bit hash of the
// identifier and a second, independent one (maphash); the log keeps the
// low fpLowBits bits of the first and all of the second. The first's
// other bits are the dedupe.ImpliedBits that a candidate shares with the
// event whose slot named it, so FindEvent called with the index's
// candidates compares all 128 bits.
type memLog struct {
	key    idhash.Key   // of the dedupe index's hash
	seed   maphash.Seed // of the second hash
	hashFn func(id string) (uint64, uint64)

	mu      sync.Mutex // guards the fields below
	base    uint64     // location of groups[0]
	groups  []memGroup
	recBase int64 // absolute index of blocks[0][0], a multiple of memBlock
	recN    int64 // absolute index of the next entry
	blocks  [][]memEvent
	fpBase  int64 // absolute index of fps[0]'s first entry, a multiple of fpBlock
	fps     []*memFPs
	custs   custTable
	kv      map[[2]string]kvValue
}

// custTable interns the customers of the memory log's events: an event
// keeps its customer's number, and a number is reused once no kept event
// names it.
type custTable struct {
	ids   map[string]uint32
	names []string // by number; "" for a free number
	refs  []int32  // kept events naming each number
	free  []uint32
}

// intern returns c's number, counting one more event that names it.
func (cs *custTable) intern(c string) uint32 {
	id, ok := cs.ids[c]
	if !ok {
		if k := len(cs.free); k > 0 {
			id, cs.free = cs.free[k-1], cs.free[:k-1]
			cs.names[id] = c
		} else {
			id = uint32(len(cs.names))
			cs.names, cs.refs = append(cs.names, c), append(cs.refs, 0)
		}
		if cs.ids == nil {
			cs.ids = map[string]uint32{}
		}
		cs.ids[c] = id
	}
	cs.refs[id]++
	return id
}

// release counts one event fewer naming number id.
func (cs *custTable) release(id uint32) {
	if cs.refs[id]--; cs.refs[id] == 0 {
		delete(cs.ids, cs.names[id])
		cs.names[id] = ""
		cs.free = append(cs.free, id)
	}
}

const (
	// fpLowBits is how many low bits of the index hash the log keeps of
	// an event; dedupe.ImpliedBits imply the others.
	fpLowBits = 50
	// fpBlock is the number of fingerprints per block: 64 Ki make both
	// of a full block's arrays whole 8 KiB pages (512 KiB of second
	// hashes, 50 pages of index hash bits), 14.25 bytes per event.
	fpBlock = 1 << 16
)

// The index's slots imply the index hash's bits that the log leaves out.
var _ [fpLowBits + dedupe.ImpliedBits - 64]struct{}

// memFPs is a block of fingerprints: entry i is h2[i] and the fpLowBits
// bits of low from bit i*fpLowBits on (little-endian).
type memFPs struct {
	h2  []uint64
	low []byte
	n   int // entries used
}

// add appends the fingerprint (h1, h2), growing the block by doubling
// up to fpBlock entries.
func (b *memFPs) add(h1, h2 uint64) {
	if b.n == len(b.h2) {
		n := min(max(2*len(b.h2), 1024), fpBlock) // a multiple of 8: whole bytes of low
		h2s, low := make([]uint64, n), make([]byte, n*fpLowBits/8)
		copy(h2s, b.h2)
		copy(low, b.low)
		b.h2, b.low = h2s, low
	}
	b.h2[b.n] = h2
	bit := b.n * fpLowBits
	const mask = 1<<fpLowBits - 1
	w := load64(b.low, bit/8)
	store64(b.low, bit/8, w&^(mask<<(bit%8))|(h1&mask)<<(bit%8))
	b.n++
}

// is reports whether entry i is the fingerprint (h1, h2), but for the
// bits of h1 above fpLowBits.
func (b *memFPs) is(i int, h1, h2 uint64) bool {
	bit := i * fpLowBits
	return b.h2[i] == h2 && (load64(b.low, bit/8)>>(bit%8)^h1)&(1<<fpLowBits-1) == 0
}

// load64 reads 8 bytes of p from off, little-endian, those past its end
// as zeros.
func load64(p []byte, off int) uint64 {
	if off+8 <= len(p) {
		return binary.LittleEndian.Uint64(p[off:])
	}
	var w [8]byte
	copy(w[:], p[off:])
	return binary.LittleEndian.Uint64(w[:])
}

// store64 writes v's 8 bytes to p from off, little-endian, dropping those
// past its end.
func store64(p []byte, off int, v uint64) {
	if off+8 <= len(p) {
		binary.LittleEndian.PutUint64(p[off:], v)
		return
	}
	var w [8]byte
	binary.LittleEndian.PutUint64(w[:], v)
	copy(p[off:], w[:])
}

// memGroup is what the memory log keeps of one log record.
type memGroup struct {
	start    int64 // absolute index of its first event
	n        int32 // events (0 for cancellations)
	received int64
}

// memEvent is what the memory log keeps of one event for a cancellation:
// 40 bytes and no pointer.
type memEvent struct {
	seq       uint64
	meter     uint64
	value     int64
	timestamp int64
	customer  uint32 // its number in memLog.custs
}

const memBlock = 4096 // entries per block of the memory log

// rec returns the entry at absolute index a.
func (j *memLog) rec(a int64) *memEvent {
	i := a - j.recBase
	return &j.blocks[i/memBlock][i%memBlock]
}

type kvValue struct {
	value   []byte
	expires int64
}

// newMemLog returns an empty memory log whose fingerprints start with the
// dedupe index's hash under key. hashes, when set, replaces both hashes
// (tests).
func newMemLog(key idhash.Key, hashes func(id string) (uint64, uint64)) *memLog {
	return &memLog{base: 1, kv: map[[2]string]kvValue{}, key: key, seed: maphash.MakeSeed(), hashFn: hashes}
}

// hashes returns id's index hash and second hash.
func (j *memLog) hashes(id string) (uint64, uint64) {
	if j.hashFn != nil {
		return j.hashFn(id)
	}
	return idhash.Sum(j.key, id), maphash.String(j.seed, id)
}

// hash2 returns id's second hash.
func (j *memLog) hash2(id string) uint64 {
	if j.hashFn != nil {
		_, h2 := j.hashFn(id)
		return h2
	}
	return maphash.String(j.seed, id)
}

func (j *memLog) Append(g *store.Group, kvs []store.KVWrite) (commit, error) {
	var received int64
	if len(g.Events) > 0 {
		received = g.Events[0].Received
	}
	// The fingerprints are hashed before the lock is taken.
	fpp := fpPool.Get().(*[][2]uint64)
	fps := (*fpp)[:0]
	for i := range g.Events {
		h1, h2 := j.hashes(g.Events[i].Identifier)
		fps = append(fps, [2]uint64{h1, h2})
	}
	j.mu.Lock()
	loc, first := j.base+uint64(len(j.groups)), j.recN
	j.groups = append(j.groups, memGroup{start: j.recN, n: int32(len(g.Events)), received: received})
	for i := range g.Events {
		ev := &g.Events[i]
		if k := len(j.blocks); k == 0 || len(j.blocks[k-1]) == memBlock {
			j.blocks = append(j.blocks, make([]memEvent, 0, memBlock))
		}
		if k := len(j.fps); k == 0 || j.fps[k-1].n == fpBlock {
			j.fps = append(j.fps, new(memFPs))
		}
		j.fps[len(j.fps)-1].add(fps[i][0], fps[i][1])
		b := &j.blocks[len(j.blocks)-1]
		*b = append(*b, memEvent{seq: ev.Seq, meter: ev.Meter,
			customer: j.custs.intern(ev.Customer), value: ev.Value, timestamp: ev.Timestamp})
		j.recN++
	}
	for _, w := range kvs {
		j.writeLocked(w)
	}
	j.mu.Unlock()
	if cap(fps) <= 1<<16 {
		*fpp = fps[:0]
		fpPool.Put(fpp)
	}
	return commit{loc: loc, first: uint64(first)}, nil
}

// fpPool holds Append's fingerprint buffers.
var fpPool = sync.Pool{New: func() any { return new([][2]uint64) }}

// FindEvent compares the kept fingerprint bits of the event whose index
// is loc with id's.
func (j *memLog) FindEvent(loc uint64, id string) (store.Event, bool, error) {
	h1, h2 := j.hashes(id)
	ev, ok := j.find(loc, h1, h2)
	return ev, ok, nil
}

// find is FindEvent for an identifier whose index hash h1 and second hash
// h2 are known.
func (j *memLog) find(loc, h1, h2 uint64) (store.Event, bool) {
	a := int64(loc)
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.groups) == 0 || a < j.groups[0].start || a >= j.recN || a < 0 {
		return store.Event{}, false
	}
	i := a - j.fpBase
	if !j.fps[i/fpBlock].is(int(i%fpBlock), h1, h2) {
		return store.Event{}, false
	}
	// The group of the event: the last one that starts at or before it
	// (the cancellations before a group start where it does).
	k := sort.Search(len(j.groups), func(k int) bool { return j.groups[k].start > a }) - 1
	r := j.rec(a)
	return store.Event{Seq: r.seq, Meter: r.meter, Customer: j.custs.names[r.customer], Value: r.value,
		Timestamp: r.timestamp, Received: j.groups[k].received}, true
}

// firstEvent returns the index of the first event of the record at loc,
// or of the next event appended when loc is past the last record (0 for
// pruned records).
func (j *memLog) firstEvent(loc uint64) uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	switch {
	case loc < j.base:
		return 0
	case loc-j.base >= uint64(len(j.groups)):
		return uint64(j.recN)
	}
	return uint64(j.groups[loc-j.base].start)
}

func (j *memLog) Prune(loc uint64, now int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for k, v := range j.kv {
		if v.expires <= now {
			delete(j.kv, k)
		}
	}
	if loc <= j.base {
		return
	}
	n := min(loc-j.base, uint64(len(j.groups)))
	j.groups = j.groups[n:]
	j.base += n
	live := j.recN // absolute index of the first entry still needed
	if len(j.groups) > 0 {
		live = j.groups[0].start
	}
	for len(j.blocks) > 0 && j.recBase+memBlock <= live && len(j.blocks[0]) == memBlock {
		for i := range j.blocks[0] {
			j.custs.release(j.blocks[0][i].customer)
		}
		j.blocks[0] = nil
		j.blocks = j.blocks[1:]
		j.recBase += memBlock
	}
	for len(j.fps) > 0 && j.fpBase+fpBlock <= live && j.fps[0].n == fpBlock {
		j.fps[0] = nil
		j.fps = j.fps[1:]
		j.fpBase += fpBlock
	}
	if len(j.groups)*2 < cap(j.groups) {
		j.groups = append([]memGroup(nil), j.groups...)
	}
}

func (j *memLog) PutKV(ns, key string, value []byte, expires int64) error {
	return j.WriteKV([]store.KVWrite{{NS: ns, Key: key, Value: value, Expires: expires}})
}

func (j *memLog) GetKV(ns, key string, now int64) ([]byte, bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	v, ok := j.kv[[2]string{ns, key}]
	if !ok || v.expires <= now {
		return nil, false, nil
	}
	return append([]byte(nil), v.value...), true, nil
}

func (j *memLog) DeleteKV(ns, key string) error {
	return j.WriteKV([]store.KVWrite{{NS: ns, Key: key, Delete: true}})
}

func (j *memLog) WriteKV(ws []store.KVWrite) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, w := range ws {
		if !w.Delete {
			w.Value = append([]byte(nil), w.Value...)
		}
		j.writeLocked(w)
	}
	return nil
}

// writeLocked applies w, keeping its value.
func (j *memLog) writeLocked(w store.KVWrite) {
	if w.Delete {
		delete(j.kv, [2]string{w.NS, w.Key})
		return
	}
	j.kv[[2]string{w.NS, w.Key}] = kvValue{value: w.Value, expires: w.Expires}
}

func (j *memLog) ListKV(ns, after string, now int64, fn func(key string, value []byte) bool) error {
	j.mu.Lock()
	var keys []string
	for k, v := range j.kv {
		if k[0] == ns && k[1] > after && v.expires > now {
			keys = append(keys, k[1])
		}
	}
	j.mu.Unlock()
	slices.Sort(keys)
	for _, k := range keys {
		j.mu.Lock()
		v, ok := j.kv[[2]string{ns, k}]
		j.mu.Unlock()
		if ok && v.expires > now && !fn(k, v.value) {
			return nil
		}
	}
	return nil
}

// MemoryBytes counts the blocks of fingerprints and cancellation data,
// the group headers and the interned customers' numbers; their strings
// are shared with the aggregates and are not counted.
func (j *memLog) MemoryBytes() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := int64(len(j.blocks))*memBlock*int64(unsafe.Sizeof(memEvent{})) + int64(cap(j.groups))*int64(unsafe.Sizeof(memGroup{}))
	for _, b := range j.fps {
		n += int64(len(b.h2))*8 + int64(len(b.low))
	}
	n += int64(cap(j.custs.names))*16 + int64(cap(j.custs.refs))*4 + int64(len(j.custs.ids))*24
	return n
}

func (j *memLog) SaveMeter(meter.Meter) error { return nil }
func (j *memLog) Sync() error                 { return nil }
func (j *memLog) Close() error                { return nil }

// fileLog is the log of a file-backed database. Pruning is deferred to
// the next checkpoint.
type fileLog struct {
	*store.DB
	pruneLoc atomic.Uint64 // log records below it are no longer needed for dedupe
}

func (j *fileLog) Append(g *store.Group, kvs []store.KVWrite) (commit, error) {
	p, err := j.AppendWith(g, kvs)
	return commit{p: p}, err
}

// MemoryBytes is zero: the file log keeps nothing in memory beyond the
// records waiting for their commit.
func (j *fileLog) MemoryBytes() int64 { return 0 }

func (j *fileLog) Prune(loc uint64, now int64) {
	if loc > j.pruneLoc.Load() {
		j.pruneLoc.Store(loc)
	}
}
