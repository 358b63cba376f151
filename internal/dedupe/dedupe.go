// Package dedupe remembers which event identifiers were accepted within a
// time window, in 8 to 16 bytes per identifier.
//
// The Index does not keep identifiers. Each accepted identifier leaves one
// 8-byte slot in an open-addressing table: a 32-bit fingerprint of its hash
// and the 32-bit offset of its location (where the journal keeps the event:
// a log group or segment number) from the table's base. A fingerprint match
// is only a candidate: the caller confirms it against the stored events at
// that location, so a collision costs one lookup and never drops a real
// event. A slot's home position is derived from its fingerprint, which lets
// a table be resized without the identifiers. Identifiers whose events are
// still being committed are held in full in a small pending set, which is
// what makes two concurrent events with one identifier collide.
//
// Slots whose location is below the window's start (SetMinLoc) stop
// matching at once and are dropped when the table is rebuilt, which
// happens when it reaches three quarters full; a rebuild sizes the table for
// the live slots at four-sevenths load (1.75 slots, 14 bytes, per live
// identifier; table sizes are not rounded to powers of two), so memory
// tracks the identifiers in the window, not every identifier ever seen.
//
// Index is striped over 64 shards and is safe for concurrent use.
package dedupe

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

const (
	shardBits = 6
	fpBits    = 32
	deltaMask = 1<<(64-fpBits) - 1
	minSlots  = 64
)

// Index is a set of identifiers with their locations. The zero value is
// not usable; call New.
type Index struct {
	seed   maphash.Seed
	minLoc atomic.Uint64 // locations below it are outside the window
	shards [1 << shardBits]shard
}

type shard struct {
	mu      sync.Mutex // guards the fields below
	base    uint64     // location that delta 0 stands for
	slots   []uint64   // 0: empty; else fingerprint<<32 | (loc-base)
	used    int
	pending map[string]struct{}
	_       [64]byte
}

// New returns an empty index.
func New() *Index {
	x := &Index{seed: maphash.MakeSeed()}
	for i := range x.shards {
		x.shards[i].pending = map[string]struct{}{}
	}
	return x
}

// locate returns id's shard and its nonzero fingerprint.
func (x *Index) locate(id string) (*shard, uint64) {
	s, fp := split(maphash.String(x.seed, id))
	return &x.shards[s], fp
}

// split divides an identifier's hash into its shard (the top bits) and
// its nonzero fingerprint (the low bits).
func split(h uint64) (shard uint64, fp uint64) {
	fp = h & (1<<fpBits - 1)
	if fp == 0 {
		fp = 1
	}
	return h >> (64 - shardBits), fp
}

// home spreads fingerprints over a table of n slots: a multiplicative hash
// of the fingerprint, reduced to [0, n) by a multiply-shift.
func home(fp uint64, n int) int { return int((fp * 0x9E3779B97F4A7C15 >> 32) * uint64(n) >> 32) }

// next is the slot probed after i in a table of n slots.
func next(i, n int) int {
	if i++; i == n {
		return 0
	}
	return i
}

// SetMinLoc declares every location below loc outside the window.
func (x *Index) SetMinLoc(loc uint64) {
	for {
		cur := x.minLoc.Load()
		if loc <= cur || x.minLoc.CompareAndSwap(cur, loc) {
			return
		}
	}
}

// Reserve claims id for an event about to be committed: ReserveBatch of
// one identifier. It returns false when id is pending or when confirm
// accepts one of its candidate locations.
func (x *Index) Reserve(id string, confirm func(loc uint64) (bool, error)) (bool, error) {
	var r Reservation
	err := x.ReserveBatch(&r, []string{id}, func(_ int, loc uint64) (bool, error) { return confirm(loc) })
	return err == nil && r.Reserved[0], err
}

// Find reports whether confirm accepts one of id's candidate locations, and
// which. Pending identifiers are not found.
func (x *Index) Find(id string, confirm func(loc uint64) (bool, error)) (loc uint64, found bool, err error) {
	sh, fp := x.locate(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	_, err = sh.findLocked(fp, x.minLoc.Load(), func(l uint64) (bool, error) {
		ok, err := confirm(l)
		if ok {
			loc, found = l, true
		}
		return ok, err
	})
	return loc, found, err
}

func (sh *shard) findLocked(fp, minLoc uint64, confirm func(uint64) (bool, error)) (bool, error) {
	if len(sh.slots) == 0 {
		return false, nil
	}
	n := len(sh.slots)
	for i := home(fp, n); sh.slots[i] != 0; i = next(i, n) {
		s := sh.slots[i]
		if s>>(64-fpBits) != fp {
			continue
		}
		loc := sh.base + s&deltaMask
		if loc < minLoc {
			continue
		}
		ok, err := confirm(loc)
		if ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

// Commit records that the reserved id was stored at loc.
func (x *Index) Commit(id string, loc uint64) {
	var r Reservation
	x.hash(&r, []string{id})
	r.Reserved[0] = true
	x.CommitBatch(&r, loc)
}

// Release drops a reservation whose event was not committed.
func (x *Index) Release(id string) {
	var r Reservation
	x.hash(&r, []string{id})
	r.Reserved[0] = true
	x.ReleaseBatch(&r)
}

// Add records id at loc without a reservation, as replay after a restart does.
func (x *Index) Add(id string, loc uint64) {
	sh, fp := x.locate(id)
	sh.mu.Lock()
	sh.insertLocked(fp, loc, x.minLoc.Load())
	sh.mu.Unlock()
}

func (sh *shard) insertLocked(fp, loc, minLoc uint64) {
	if loc < minLoc {
		return
	}
	if len(sh.slots) == 0 {
		sh.base = min(loc, max(minLoc, loc-deltaMask/2))
		sh.slots = make([]uint64, minSlots)
	}
	if (sh.used+1)*4 > len(sh.slots)*3 || loc < sh.base || loc-sh.base > deltaMask {
		sh.rebuildLocked(min(loc, max(minLoc, sh.base)), 1)
	}
	if loc < sh.base || loc-sh.base > deltaMask {
		// More than 2^32 locations in the window: no journal produces that
		// many groups in a day. The identifier is left out rather than
		// stored wrongly; the pending set no longer holds it either.
		return
	}
	n := len(sh.slots)
	i := home(fp, n)
	for sh.slots[i] != 0 {
		i = next(i, n)
	}
	sh.slots[i] = fp<<(64-fpBits) | (loc - sh.base)
	sh.used++
}

// rebuildLocked drops slots below minLoc, rebases on newBase (at most the
// smallest live location), and sizes the table so that the live slots plus
// extra fill four sevenths of it: at most 14 bytes per live identifier,
// and a quarter of the live count of inserts before the next rebuild.
func (sh *shard) rebuildLocked(newBase uint64, extra int) {
	old, oldBase, minLoc := sh.slots, sh.base, newBase
	live := 0
	for _, s := range old {
		if s != 0 && oldBase+s&deltaMask >= minLoc {
			live++
		}
	}
	size := max(minSlots, ((live+extra)*7+3)/4)
	slots := make([]uint64, size)
	used := 0
	for _, s := range old {
		if s == 0 || oldBase+s&deltaMask < minLoc {
			continue
		}
		loc, fp := oldBase+s&deltaMask, s>>(64-fpBits)
		i := home(fp, size)
		for slots[i] != 0 {
			i = next(i, size)
		}
		slots[i] = fp<<(64-fpBits) | (loc - newBase)
		used++
	}
	sh.slots, sh.base, sh.used = slots, newBase, used
}

// Stats describes the index's memory.
type Stats struct {
	Slots   int64 // table slots, 8 bytes each
	Used    int64 // occupied slots (some may be past the window until a rebuild)
	Pending int64 // identifiers being committed
}

// Stats returns the index's current sizes.
func (x *Index) Stats() Stats {
	var s Stats
	for i := range x.shards {
		sh := &x.shards[i]
		sh.mu.Lock()
		s.Slots += int64(len(sh.slots))
		s.Used += int64(sh.used)
		s.Pending += int64(len(sh.pending))
		sh.mu.Unlock()
	}
	return s
}

// Loader adds many identifiers at once, as Open does when it rebuilds the
// index from the log: it sizes each shard's table once and fills the
// shards in parallel. Use it before the Index is shared.
type Loader struct {
	x       *Index
	entries [1 << shardBits][]loadEntry
}

type loadEntry struct {
	fp  uint64
	loc uint64
}

// Loader returns a new Loader for x.
func (x *Index) Loader() *Loader { return &Loader{x: x} }

// Add queues id at loc. id is not retained.
func (l *Loader) Add(id []byte, loc uint64) {
	sh, fp := split(maphash.Bytes(l.x.seed, id))
	l.entries[sh] = append(l.entries[sh], loadEntry{fp: fp, loc: loc})
}

// Finish inserts everything queued, using up to workers goroutines.
func (l *Loader) Finish(workers int) {
	minLoc := l.x.minLoc.Load()
	var wg sync.WaitGroup
	next := make(chan int, len(l.entries))
	for i := range l.entries {
		next <- i
	}
	close(next)
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				sh, es := &l.x.shards[i], l.entries[i]
				if len(es) == 0 {
					continue
				}
				lo := es[0].loc
				for _, e := range es {
					lo = min(lo, e.loc)
				}
				sh.mu.Lock()
				if len(sh.slots) == 0 {
					sh.base = max(minLoc, lo)
					sh.slots = make([]uint64, minSlots)
				}
				sh.rebuildLocked(min(sh.base, max(minLoc, lo)), len(es))
				for _, e := range es {
					sh.insertLocked(e.fp, e.loc, minLoc)
				}
				sh.mu.Unlock()
				l.entries[i] = nil
			}
		}()
	}
	wg.Wait()
}

// Reservation is the outcome of ReserveBatch: which identifiers were
// reserved, and their hashes for CommitBatch or ReleaseBatch.
type Reservation struct {
	// Reserved[i] reports whether ids[i] was reserved.
	Reserved []bool
	ids      []string
	hs       []uint64 // shard<<fpBits | fingerprint, per identifier
	// For batches larger than smallBatch: the indexes of ids by shard, in
	// order within a shard (order[starts[s]:starts[s+1]] are shard s's).
	// Small batches take their identifiers one at a time.
	order  []int32
	starts []int32
	// storage for small batches, so that a Reservation on the caller's
	// stack needs no allocation
	hsBuf       [smallBatch]uint64
	reservedBuf [smallBatch]bool
}

// smallBatch is the size up to which a batch locks a shard per
// identifier: grouping costs more than it saves.
const smallBatch = 8

// ReserveBatch reserves every identifier of ids as Reserve would, taking
// each shard's lock once (per identifier for small batches). An
// identifier that repeats within ids is reserved at its first occurrence
// only. confirm(i, loc) must report whether an event stored at loc has
// identifier ids[i]; it runs under a shard lock and must not call the
// Index. On an error from confirm nothing stays reserved. ids must not
// change until CommitBatch or ReleaseBatch. r is overwritten.
func (x *Index) ReserveBatch(r *Reservation, ids []string, confirm func(i int, loc uint64) (bool, error)) error {
	x.hash(r, ids)
	minLoc := x.minLoc.Load()
	var err error
	x.eachShard(r, false, func(sh *shard, i int32) bool {
		id := ids[i]
		if _, pending := sh.pending[id]; pending {
			return true
		}
		var found bool
		found, err = sh.findLocked(r.hs[i]&(1<<fpBits-1), minLoc, func(loc uint64) (bool, error) { return confirm(int(i), loc) })
		if err != nil {
			return false
		}
		if !found {
			sh.pending[id] = struct{}{}
			r.Reserved[i] = true
		}
		return true
	})
	if err != nil {
		x.ReleaseBatch(r)
		return err
	}
	return nil
}

// hash sets r up for ids, none reserved: their shards and fingerprints,
// and for batches larger than smallBatch their grouping by shard.
func (x *Index) hash(r *Reservation, ids []string) {
	r.ids, r.order, r.starts = ids, nil, nil
	if len(ids) <= smallBatch {
		r.hs, r.Reserved = r.hsBuf[:len(ids)], r.reservedBuf[:len(ids)]
		clear(r.Reserved)
	} else {
		r.hs, r.Reserved = make([]uint64, len(ids)), make([]bool, len(ids))
	}
	for i, id := range ids {
		s, fp := split(maphash.String(x.seed, id))
		r.hs[i] = s<<fpBits | fp
	}
	if len(ids) > smallBatch {
		r.group()
	}
}

// CommitBatch records that the reserved identifiers of r were stored at
// loc.
func (x *Index) CommitBatch(r *Reservation, loc uint64) {
	minLoc := x.minLoc.Load()
	x.eachShard(r, true, func(sh *shard, i int32) bool {
		delete(sh.pending, r.ids[i])
		sh.insertLocked(r.hs[i]&(1<<fpBits-1), loc, minLoc)
		return true
	})
}

// ReleaseBatch drops the reservations of r.
func (x *Index) ReleaseBatch(r *Reservation) {
	x.eachShard(r, true, func(sh *shard, i int32) bool {
		delete(sh.pending, r.ids[i])
		return true
	})
}

// eachShard calls fn under the shard's lock for every identifier of r (the
// reserved ones only, if reserved is set), in order within each shard,
// until fn returns false.
func (x *Index) eachShard(r *Reservation, reserved bool, fn func(sh *shard, i int32) bool) {
	if r.order == nil {
		for i := range r.ids {
			if reserved && !r.Reserved[i] {
				continue
			}
			sh := &x.shards[r.hs[i]>>fpBits]
			sh.mu.Lock()
			more := fn(sh, int32(i))
			sh.mu.Unlock()
			if !more {
				return
			}
		}
		return
	}
	for s := range x.shards {
		sh, locked := &x.shards[s], false
		for _, i := range r.order[r.starts[s]:r.starts[s+1]] {
			if reserved && !r.Reserved[i] {
				continue
			}
			if !locked {
				sh.mu.Lock()
				locked = true
			}
			if !fn(sh, i) {
				sh.mu.Unlock()
				return
			}
		}
		if locked {
			sh.mu.Unlock()
		}
	}
}

// group orders the indexes of r's identifiers by shard, keeping their
// order within a shard.
func (r *Reservation) group() {
	r.starts = make([]int32, 1<<shardBits+1)
	for _, h := range r.hs {
		r.starts[h>>fpBits+1]++
	}
	for s := 1; s < len(r.starts); s++ {
		r.starts[s] += r.starts[s-1]
	}
	next := make([]int32, 1<<shardBits)
	copy(next, r.starts)
	r.order = make([]int32, len(r.hs))
	for i, h := range r.hs {
		s := h >> fpBits
		r.order[next[s]] = int32(i)
		next[s]++
	}
}

// Detach gives r its own copies of the slices it shares with the value it
// was copied from (a small batch's storage lives inside the Reservation)
// and with the caller (the identifiers): a copy handed to another
// goroutine calls Detach first.
func (r *Reservation) Detach() {
	r.hs = append([]uint64(nil), r.hs...)
	r.Reserved = append([]bool(nil), r.Reserved...)
	r.ids = append([]string(nil), r.ids...)
}
