package dedupe

import (
	"math"
	"sync"
	"sync/atomic"

	"github.com/meterdb/meterdb/internal/idhash"
)

const (
	shardBits = 6
	// The slots of a file-backed database's index: the identifier's tag,
	// never zero, and the location's offset from its epoch's base, in
	// units of 1<<shift locations.
	tagBits = 14
	offBits = 18
	offMask = 1<<offBits - 1
	// The slots of an index whose locations name single events
	// (Options.EventLocs): a 9-bit tag and a 23-bit offset counted in
	// locations, never coarse.
	memTagBits = 9
	memOffBits = 23
	// ImpliedBits is how many top bits of an identifier's hash a candidate
	// of an EventLocs index shares with the identifier whose slot named
	// the location: the shard bits and the tag's, except the tag's lowest
	// bit (tag 0 is stored as tag 1).
	ImpliedBits = shardBits + memTagBits - 1
	bucketSlots = 4
	// An epoch's table is full at 96 % load; four-slot cuckoo buckets
	// place keys reliably up to about 95 %.
	loadNum, loadDen = 96, 100
	maxKicks         = 500
	maxStash         = 8
	// DefaultMinEpoch is the smallest epoch a shard creates, in
	// identifiers.
	DefaultMinEpoch = 32
)

// Options tunes an Index. The zero value means the defaults.
type Options struct {
	// MinEpoch is the number of identifiers the smallest epoch of a
	// shard holds (0: DefaultMinEpoch). Tests make it tiny so that
	// epochs roll after a few identifiers.
	MinEpoch int
	// Key is the key of the identifier hashes (idhash): a file-backed
	// database passes its store's, whose records keep those hashes, so
	// that Open loads them; the zero Key draws a random one.
	Key idhash.Key
	// EventLocs declares that a location names exactly one event (the
	// in-memory log's event index), which confirm compares alone. Slots
	// are then a 9-bit tag and a 23-bit offset counted in locations, and
	// a shard's epoch ends when its offsets run out; the candidate's top
	// ImpliedBits hash bits are those of the identifier stored at the
	// location, so the caller need not keep them.
	EventLocs bool
	// Hash, when set, replaces the keyed hash of identifiers: tests use
	// it to make identifiers share hash bits.
	Hash func(id string) uint64
}

// Index is a set of identifiers with their locations. The zero value is
// not usable; call New.
type Index struct {
	key      idhash.Key // of every identifier's hash
	hashFn   func(string) uint64
	ob       uint8 // offset bits of a slot: offBits, or memOffBits with eventLocs
	events   bool  // Options.EventLocs
	minEpoch int
	minLoc   atomic.Uint64 // locations below it are outside the window
	epoch    atomic.Uint64 // the current epoch number (SetEpoch)
	shards   [1 << shardBits]shard
}

type shard struct {
	mu     sync.Mutex // guards the fields below
	epochs []*epoch   // in creation order; the last one is being filled
	// identifiers of the previous epoch number, which sizes the epochs of
	// the current one
	prevTotal int
	// keep holds the slots of the growing epoch (the last one, while no
	// previous number sizes it), each with its hash's bucket bits, in
	// insertion order: what a rebuild into a larger table needs.
	keep []kept
	pend pending
	// confirmation counters: confirm calls, tag matches, and identifiers
	// reserved after at least one confirm call
	reads, candidates, freshRead int64
	_                            [64]byte
}

// epoch is one cuckoo table of 32-bit slots: a tag in the top 32-ob
// bits, a location offset (in units of 1<<shift locations from base) in
// the low ob bits. Buckets hold four slots; a slot of zero is empty.
type epoch struct {
	n           uint64 // epoch number at creation
	base        uint64
	shift       uint8
	ob          uint8  // offset bits
	first, last uint64 // smallest and greatest location inserted
	nb          uint64 // buckets
	slots       []uint32
	count       int // identifiers inserted
	limit       int // count at which the epoch is full
	stash       []stashed
	rnd         uint32 // kick victim choice
	// grows marks the epoch whose shard keeps its slots (shard.keep):
	// when it fills, it is rebuilt twice as large instead of followed by
	// another.
	grows bool
}

// kept is a slot of a growing epoch and the low 32 bits of its
// identifier's hash, which choose its bucket.
type kept struct{ lo, slot uint32 }

// stashed is a slot that found no place in the table.
type stashed struct {
	bucket uint32
	slot   uint32
}

// New returns an empty index with the default options.
func New() *Index { return NewWith(Options{}) }

// NewWith returns an empty index tuned by o.
func NewWith(o Options) *Index {
	x := &Index{key: o.Key, hashFn: o.Hash, ob: offBits, events: o.EventLocs, minEpoch: o.MinEpoch}
	if x.events {
		x.ob = memOffBits
	}
	if x.key.IsZero() {
		x.key = idhash.New()
	}
	if x.minEpoch <= 0 {
		x.minEpoch = DefaultMinEpoch
	}
	return x
}

// hashOf returns id's 64-bit hash: its keyed hash (idhash), the hash
// store format 3 keeps of every event's identifier, so that Open rebuilds
// the index from the stored hashes without the identifiers.
func hashOf[S string | []byte](x *Index, id S) uint64 {
	if x.hashFn != nil {
		return x.hashFn(string(id))
	}
	return idhash.Sum(x.key, id)
}

// shardOf returns the shard of hash h: its top bits.
func (x *Index) shardOf(h uint64) *shard { return &x.shards[h>>(64-shardBits)] }

// tagOf returns the nonzero tag of hash h for slots of ob offset bits:
// the 32-ob bits below the shard bits.
func tagOf(h uint64, ob uint8) uint32 {
	tb := 32 - ob
	t := uint32(h>>(64-shardBits-tb)) & (1<<tb - 1)
	if t == 0 {
		t = 1
	}
	return t
}

// bucket returns the first bucket of hash h: its low 32 bits reduced to
// [0, nb) by a multiply-shift.
func (e *epoch) bucket(h uint64) uint64 { return uint64(uint32(h)) * e.nb >> 32 }

// alt returns the other bucket of a slot with tag t in bucket b:
// (c(t) - b) mod nb, an involution, so that a slot moves between its two
// buckets knowing only its tag, for any number of buckets.
func (e *epoch) alt(b uint64, t uint32) uint64 {
	c := uint64(t*0x9E3779B1) * e.nb >> 32
	if c >= b {
		return c - b
	}
	return c + e.nb - b
}

// SetMinLoc declares every location below loc outside the window, and
// drops the epochs that hold no location at or above it.
func (x *Index) SetMinLoc(loc uint64) {
	for {
		cur := x.minLoc.Load()
		if loc <= cur {
			return
		}
		if x.minLoc.CompareAndSwap(cur, loc) {
			break
		}
	}
	for i := range x.shards {
		sh := &x.shards[i]
		sh.mu.Lock()
		sh.retireLocked(loc)
		sh.mu.Unlock()
	}
}

// SetEpoch declares the current epoch number: the next identifier
// inserted into a shard whose filling epoch has a smaller number starts
// a new epoch there, sized after the identifiers of the previous one.
// Numbers that do not grow are ignored. The database calls it with its
// clock divided by a fraction of the window, so that whole epochs leave
// the window as it moves.
func (x *Index) SetEpoch(n uint64) {
	for {
		cur := x.epoch.Load()
		if n <= cur || x.epoch.CompareAndSwap(cur, n) {
			return
		}
	}
}

func (sh *shard) retireLocked(minLoc uint64) {
	k := 0
	for i, e := range sh.epochs {
		if e.last < minLoc && i < len(sh.epochs)-1 { // the filling epoch stays
			continue
		}
		sh.epochs[k] = e
		k++
	}
	clear(sh.epochs[k:])
	sh.epochs = sh.epochs[:k]
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
// which. Pending identifiers are not found. Candidates are offered newest
// epoch first.
func (x *Index) Find(id string, confirm func(loc uint64) (bool, error)) (loc uint64, found bool, err error) {
	h := hashOf(x, id)
	sh := x.shardOf(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	_, err = sh.findLocked(h, x.minLoc.Load(), x.ob, func(l uint64) (bool, error) {
		ok, err := confirm(l)
		if ok {
			loc, found = l, true
		}
		return ok, err
	})
	return loc, found, err
}

// findLocked calls confirm with every location that may hold an
// identifier of hash h, newest epoch first, until it accepts one.
//
// A fresh identifier (the common case) matches nothing, yet probes two
// buckets in every live epoch: the probe of an epoch is written without
// data-dependent branches (the smallest XOR of a slot with the tag is
// below 1<<ob exactly when a tag matches), so that the processor
// overlaps the cache misses of successive epochs. ob is the index's
// offset bits.
func (sh *shard) findLocked(h, minLoc uint64, ob uint8, confirm func(uint64) (bool, error)) (bool, error) {
	t := tagOf(h, ob)
	tt, mask := t<<ob, uint32(1)<<ob-1
	for k := len(sh.epochs) - 1; k >= 0; k-- {
		e := sh.epochs[k]
		if e.count == 0 || e.last < minLoc {
			continue
		}
		b1 := e.bucket(h)
		b2 := e.alt(b1, t)
		p := e.slots[b1*bucketSlots : b1*bucketSlots+bucketSlots : b1*bucketSlots+bucketSlots]
		q := e.slots[b2*bucketSlots : b2*bucketSlots+bucketSlots : b2*bucketSlots+bucketSlots]
		m := min(p[0]^tt, p[1]^tt, p[2]^tt, p[3]^tt, q[0]^tt, q[1]^tt, q[2]^tt, q[3]^tt)
		if m <= mask {
			for _, b := range [2]uint64{b1, b2} {
				for _, s := range e.slots[b*bucketSlots : b*bucketSlots+bucketSlots] {
					if s>>ob != t {
						continue
					}
					if ok, err := sh.confirmRange(e, s, minLoc, confirm); ok || err != nil {
						return ok, err
					}
				}
				if b2 == b1 {
					break
				}
			}
		}
		for _, st := range e.stash {
			if st.slot>>ob != t || (uint64(st.bucket) != b1 && uint64(st.bucket) != b2) {
				continue
			}
			if ok, err := sh.confirmRange(e, st.slot, minLoc, confirm); ok || err != nil {
				return ok, err
			}
		}
	}
	return false, nil
}

// confirmRange offers confirm the locations that slot s of e stands for:
// one location, or 1<<e.shift of them, within the epoch and the window.
func (sh *shard) confirmRange(e *epoch, s uint32, minLoc uint64, confirm func(uint64) (bool, error)) (bool, error) {
	sh.candidates++
	lo := e.base + uint64(s&(1<<e.ob-1))<<e.shift
	hi := lo + 1<<e.shift - 1
	lo, hi = max(lo, e.first, minLoc), min(hi, e.last)
	for loc := lo; loc <= hi; loc++ {
		sh.reads++
		if ok, err := confirm(loc); ok || err != nil {
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
	h := hashOf(x, id)
	sh := x.shardOf(h)
	sh.mu.Lock()
	x.insertLocked(sh, h, loc)
	sh.mu.Unlock()
}

// insertLocked adds hash h at loc to sh.
func (x *Index) insertLocked(sh *shard, h, loc uint64) {
	if loc < x.minLoc.Load() {
		return
	}
	e := x.epochFor(sh, loc)
	if s := e.insert(h, loc); e.grows {
		sh.keep = append(sh.keep, kept{lo: uint32(h), slot: s})
	}
}

// epochFor returns the epoch of sh that takes an identifier at loc,
// starting a new one when the filling epoch is full, belongs to an
// earlier epoch number, or cannot express loc.
func (x *Index) epochFor(sh *shard, loc uint64) *epoch {
	n := x.epoch.Load()
	var cur *epoch
	if k := len(sh.epochs); k > 0 {
		cur = sh.epochs[k-1]
	}
	if cur != nil && loc >= cur.base && cur.fits(loc) && cur.count < cur.limit && (cur.n >= n || cur.count == 0) {
		if cur.count == 0 {
			cur.n = max(cur.n, n)
		}
		return cur
	}
	if cur != nil && loc < cur.base {
		// A commit that finished after a later one started the filling
		// epoch: an earlier epoch can express loc; a full table keeps
		// it in its stash.
		for k := len(sh.epochs) - 1; k >= 0; k-- {
			if e := sh.epochs[k]; loc >= e.base && e.fits(loc) {
				return e
			}
		}
	}
	if cur != nil && cur.grows {
		// A table whose stash filled holds identifiers that share their
		// buckets (hashes that collide): a larger table would not part
		// them, so the next epoch takes over.
		if cur.n >= n && loc >= cur.base && len(cur.stash) < maxStash {
			if e := sh.grow(cur, loc); e != nil {
				return e
			}
		}
		cur = sh.settle(cur)
	}
	target := x.minEpoch
	if cur != nil {
		sum := 0 // identifiers of cur's epoch number
		for _, e := range sh.epochs {
			if e.n == cur.n {
				sum += e.count
			}
		}
		switch {
		case cur.n < n:
			// A new epoch number: as many identifiers as the last one
			// had, and two standard deviations more.
			sh.prevTotal = sum
			target = withMargin(sum)
		case !cur.fits(loc) && cur.count < cur.limit:
			target = cur.limit
		case sh.prevTotal == 0:
			// The first epoch number (or the first after an idle one)
			// of an EventLocs index: grow geometrically, so that a
			// lookup has few epochs to probe while the window fills, by
			// sixteen, since the offsets cap an epoch anyway (1<<23
			// locations, about 131 k identifiers of a shard, below),
			// which bounds what a table sized ahead can waste. (A
			// file-backed index grows its one epoch instead, below; it
			// gets here only when that epoch could not grow: a loc
			// before it or beyond its offsets' reach, a full stash.)
			target = 4 * cur.limit
			if x.events {
				target = 16 * cur.limit
			}
		default:
			// More than predicted: an eighth of what this number holds.
			target = sum / 8
		}
		target = max(target, x.minEpoch/4)
	}
	// Locations per identifier, from the epoch being closed, with room to
	// spare: the new epoch's offsets must reach its last location.
	shift := shiftFor(2*uint64(target) + 1024)
	if cur != nil && cur.count > 0 {
		shift = spanShift(cur.first, cur.last, cur.count, target)
	}
	if x.events {
		// Offsets are never coarse: an epoch takes no more identifiers
		// than its offsets are expected to reach.
		shift = 0
		if cur != nil && cur.count > 0 {
			room := float64(uint64(1)<<memOffBits) * float64(cur.count) / float64(cur.last-cur.first+1)
			target = max(min(target, int(room-2*math.Sqrt(room))), x.minEpoch/4)
		}
	}
	e := newEpoch(n, loc, shift, x.ob, target)
	// With no previous number to size it, a file-backed index's epoch
	// grows as it fills. (An EventLocs index gains nothing from it: its
	// sixteenfold growth leaves few epochs, the smaller ones in the cache,
	// and rebuilding costs more than probing them.)
	if sh.prevTotal == 0 && !x.events {
		e.grows, e.limit = true, growLimit(e)
	}
	sh.epochs = append(sh.epochs, e)
	return e
}

// grow rebuilds sh's growing epoch cur (file-backed), which cannot
// take an identifier at loc (at or above its base), into a table that
// can: twice as large when cur is full, with offsets as coarse as the
// locations per identifier so far call for. It returns nil when loc lies
// beyond what those offsets reach: a gap in the locations would
// otherwise coarsen the offsets of every identifier stored, and each
// candidate would cost that many more confirm reads; the next epoch
// starts at loc instead.
func (sh *shard) grow(cur *epoch, loc uint64) *epoch {
	target := cur.full()
	if cur.count >= cur.limit {
		target *= 2
	}
	shift := max(cur.shift, spanShift(cur.first, cur.last, cur.count, target))
	if (loc-cur.base)>>shift >= 1<<cur.ob {
		return nil
	}
	e := sh.rebuild(cur, shift, target)
	if cap(sh.keep) < e.limit { // room for every slot the table takes
		sh.keep = append(make([]kept, 0, e.limit), sh.keep...)
	}
	return e
}

// settle ends the growth of sh's growing epoch cur and returns it: a
// table left mostly empty by its last doubling is rebuilt for the
// identifiers it holds, and the kept slots are dropped.
func (sh *shard) settle(cur *epoch) *epoch {
	if fit := withMargin(cur.count); cur.full() > fit+fit/4 {
		cur = sh.rebuild(cur, cur.shift, fit)
	}
	cur.grows = false
	if len(cur.stash) < maxStash {
		cur.limit = cur.full()
	}
	sh.keep = nil
	return cur
}

// growLimit is the number of identifiers at which a growing epoch is
// rebuilt: three quarters of its slots, where a slot's first bucket is
// still mostly free, so that an insert seldom reads its second bucket or
// moves other slots, cache misses all in a large table.
func growLimit(e *epoch) int { return len(e.slots) * 3 / 4 }

// rebuild replaces sh's growing epoch cur, its last, with a table for
// target identifiers whose offsets count 1<<shift locations (shift at
// least cur's), holding cur's identifiers, placed again from sh.keep.
func (sh *shard) rebuild(cur *epoch, shift uint8, target int) *epoch {
	e := newEpoch(cur.n, cur.base, shift, cur.ob, target)
	e.first, e.last, e.grows = cur.first, cur.last, true
	e.limit = growLimit(e)
	omask, d := uint32(1)<<cur.ob-1, shift-cur.shift
	for i := range sh.keep {
		k := &sh.keep[i]
		t, off := k.slot>>cur.ob, k.slot&omask>>d
		k.slot = t<<cur.ob | off
		e.place(k.lo, t, off)
	}
	sh.epochs[len(sh.epochs)-1] = e
	return e
}

// withMargin is what an epoch sized from n identifiers is sized for: n and
// two standard deviations more.
func withMargin(n int) int { return n + 2*int(math.Sqrt(float64(n))) + 16 }

// spanShift returns the offset shift of a table for target identifiers
// whose locations come as densely as count identifiers' did from first to
// last: offsets for twice the span that makes, and some.
func spanShift(first, last uint64, count, target int) uint8 {
	span := (last - first + 1) * uint64(target) / uint64(max(count, 1))
	return shiftFor(2*span + 1024)
}

// shiftFor returns the smallest shift that makes span locations fit the
// offset bits.
func shiftFor(span uint64) uint8 {
	var s uint8
	for span>>s > offMask {
		s++
	}
	return s
}

// newEpoch returns an empty epoch for target identifiers from base, of
// slots with ob offset bits.
func newEpoch(n, base uint64, shift, ob uint8, target int) *epoch {
	nb := uint64(max(1, (target*loadDen/loadNum+bucketSlots-1)/bucketSlots))
	e := &epoch{
		n: n, base: base, shift: shift, ob: ob, first: base, last: base,
		nb: nb, slots: make([]uint32, nb*bucketSlots), rnd: uint32(base) | 1,
	}
	e.limit = e.full()
	return e
}

// full is the number of identifiers e's slots hold at the load where a
// table is full.
func (e *epoch) full() int { return len(e.slots) * loadNum / loadDen }

// fits reports whether e's offsets can express loc (at or above base).
func (e *epoch) fits(loc uint64) bool { return (loc-e.base)>>e.shift < 1<<e.ob }

// insert adds hash h at loc, which e fits, and returns its slot.
func (e *epoch) insert(h, loc uint64) uint32 {
	if e.count == 0 {
		e.first, e.last = loc, loc
	}
	e.first, e.last = min(e.first, loc), max(e.last, loc)
	t, off := tagOf(h, e.ob), uint32((loc-e.base)>>e.shift)
	e.place(uint32(h), t, off)
	return t<<e.ob | off
}

// place stores the slot of an identifier whose hash has low 32 bits lo
// and tag t, at offset off, and counts it; first and last are the
// caller's.
func (e *epoch) place(lo, t, off uint32) {
	e.count++
	s := t<<e.ob | off
	b := uint64(lo) * e.nb >> 32 // e.bucket
	if e.put(b, s) {
		return
	}
	b = e.alt(b, t)
	if e.put(b, s) {
		return
	}
	for range maxKicks {
		// A slot of b whose other bucket has room moves there and s takes
		// its place: one step of lookahead, which shortens the random
		// walk of a nearly full table.
		bs := e.slots[b*bucketSlots : b*bucketSlots+bucketSlots : b*bucketSlots+bucketSlots]
		for i, v := range bs {
			if e.put(e.alt(b, v>>e.ob), v) {
				bs[i] = s
				return
			}
		}
		// xorshift32 picks the victim
		e.rnd ^= e.rnd << 13
		e.rnd ^= e.rnd >> 17
		e.rnd ^= e.rnd << 5
		j := b*bucketSlots + uint64(e.rnd%bucketSlots)
		s, e.slots[j] = e.slots[j], s
		b = e.alt(b, s>>e.ob)
		if e.put(b, s) {
			return
		}
	}
	e.stash = append(e.stash, stashed{bucket: uint32(b), slot: s})
	if len(e.stash) >= maxStash {
		e.limit = e.count // full: the next identifier starts an epoch
	}
}

// put stores s in a free slot of bucket b, if there is one. Slots fill a
// bucket from its start and are never removed, so the bucket's first
// free slot is the count of its used ones, found without a branch per
// slot.
func (e *epoch) put(b uint64, s uint32) bool {
	bs := e.slots[b*bucketSlots : b*bucketSlots+bucketSlots : b*bucketSlots+bucketSlots]
	n := nonzero(bs[0]) + nonzero(bs[1]) + nonzero(bs[2]) + nonzero(bs[3])
	if n == bucketSlots {
		return false
	}
	bs[n] = s
	return true
}

// nonzero returns 1 if v is not zero, else 0.
func nonzero(v uint32) int { return int((uint64(v) + 0xFFFFFFFF) >> 32) }

// bytes is the memory e holds.
func (e *epoch) bytes() int64 {
	return int64(len(e.slots))*4 + int64(cap(e.stash))*8 + 96
}

// Stats describes the index's memory and its confirmation work.
type Stats struct {
	Slots   int64 // table slots, 4 bytes each
	Used    int64 // identifiers in the tables (some may be past the window until their epoch retires)
	Pending int64 // identifiers being committed
	Epochs  int64 // epoch tables, over all shards
	Bytes   int64 // memory of the tables, stashes and pending sets
	// Candidates counts tag matches, ConfirmReads the confirm calls they
	// caused, FreshConfirmed the identifiers reserved after at least one
	// confirm call (fresh identifiers that paid a read).
	Candidates, ConfirmReads, FreshConfirmed int64
}

// Stats returns the index's current sizes and counters.
func (x *Index) Stats() Stats {
	var s Stats
	for i := range x.shards {
		sh := &x.shards[i]
		sh.mu.Lock()
		for _, e := range sh.epochs {
			s.Slots += int64(len(e.slots))
			s.Used += int64(e.count)
			s.Bytes += e.bytes()
		}
		s.Epochs += int64(len(sh.epochs))
		s.Pending += int64(sh.pend.n)
		s.Bytes += int64(len(sh.pend.entries))*24 + int64(cap(sh.keep))*8
		s.Candidates += sh.candidates
		s.ConfirmReads += sh.reads
		s.FreshConfirmed += sh.freshRead
		sh.mu.Unlock()
	}
	return s
}
