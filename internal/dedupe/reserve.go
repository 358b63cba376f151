package dedupe

// pending is a shard's set of identifiers being committed: an
// open-addressing table of (hash, identifier) with linear probing and
// backward-shift deletion, so that reserving and releasing an identifier
// reuse the hash already computed and allocate nothing once the table
// has grown to the shard's share of the batches in flight.
type pending struct {
	entries []pendEntry // power-of-two length; hash 0 is empty
	n       int
}

type pendEntry struct {
	h  uint64 // the identifier's hash with its low bit set
	id string
}

// home is the first slot probed for key k.
func (p *pending) home(k uint64) int { return int(k>>16) & (len(p.entries) - 1) }

// has reports whether id (of hash h) is pending.
func (p *pending) has(h uint64, id string) bool {
	if p.n == 0 {
		return false
	}
	k, mask := h|1, len(p.entries)-1
	for i := p.home(k); p.entries[i].h != 0; i = (i + 1) & mask {
		if p.entries[i].h == k && p.entries[i].id == id {
			return true
		}
	}
	return false
}

// add inserts id, which is not pending.
func (p *pending) add(h uint64, id string) {
	if (p.n+1)*2 > len(p.entries) {
		p.grow()
	}
	k, mask := h|1, len(p.entries)-1
	i := p.home(k)
	for p.entries[i].h != 0 {
		i = (i + 1) & mask
	}
	p.entries[i] = pendEntry{h: k, id: id}
	p.n++
}

func (p *pending) grow() {
	old := p.entries
	p.entries = make([]pendEntry, max(16, 2*len(old)))
	p.n = 0
	for _, e := range old {
		if e.h != 0 {
			p.add(e.h, e.id)
		}
	}
}

// remove deletes id if it is pending, shifting back the entries that
// probed past it.
func (p *pending) remove(h uint64, id string) {
	if p.n == 0 {
		return
	}
	k, mask := h|1, len(p.entries)-1
	i := p.home(k)
	for ; ; i = (i + 1) & mask {
		e := &p.entries[i]
		if e.h == 0 {
			return
		}
		if e.h == k && e.id == id {
			break
		}
	}
	for j := (i + 1) & mask; p.entries[j].h != 0; j = (j + 1) & mask {
		// The entry at j stays unless its home lies cyclically outside
		// (i, j].
		hm := p.home(p.entries[j].h)
		if (i < j && i < hm && hm <= j) || (i > j && (hm > i || hm <= j)) {
			continue
		}
		p.entries[i] = p.entries[j]
		i = j
	}
	p.entries[i] = pendEntry{}
	p.n--
}

// Reservation is the outcome of ReserveBatch: which identifiers were
// reserved, and their hashes for CommitBatch or ReleaseBatch.
type Reservation struct {
	// Reserved[i] reports whether ids[i] was reserved.
	Reserved []bool
	ids      []string
	hs       []uint64 // per identifier
	// For batches larger than smallBatch: the indexes of ids by shard, in
	// order within a shard (order[starts[s]:starts[s+1]] are shard s's).
	// Small batches take their identifiers one at a time.
	order  []int32
	starts []int32
	locs   []uint64 // CommitEach's, per identifier
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
// change until CommitBatch or ReleaseBatch. r is overwritten; its slices
// are reused when they are large enough.
func (x *Index) ReserveBatch(r *Reservation, ids []string, confirm func(i int, loc uint64) (bool, error)) error {
	x.hash(r, ids)
	minLoc := x.minLoc.Load()
	var err error
	x.eachShard(r, false, warmFind(x, r), func(sh *shard, i int32) bool {
		id, h := ids[i], r.hs[i]
		if sh.pend.has(h, id) {
			return true
		}
		reads := sh.reads
		var found bool
		found, err = sh.findLocked(h, minLoc, x.ob, func(loc uint64) (bool, error) { return confirm(int(i), loc) })
		if err != nil {
			return false
		}
		if !found {
			if sh.reads != reads {
				sh.freshRead++
			}
			sh.pend.add(h, id)
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

// hash sets r up for ids, none reserved: their hashes, and for batches
// larger than smallBatch their grouping by shard.
func (x *Index) hash(r *Reservation, ids []string) {
	r.ids = ids
	if len(ids) <= smallBatch {
		r.hs, r.Reserved = r.hsBuf[:len(ids)], r.reservedBuf[:len(ids)]
		r.order = r.order[:0]
	} else {
		if cap(r.hs) < len(ids) || cap(r.Reserved) < len(ids) || len(r.hs) > 0 && &r.hs[0] == &r.hsBuf[0] {
			r.hs, r.Reserved = make([]uint64, len(ids)), make([]bool, len(ids))
		}
		r.hs, r.Reserved = r.hs[:len(ids)], r.Reserved[:len(ids)]
	}
	clear(r.Reserved)
	for i, id := range ids {
		r.hs[i] = hashOf(x, id)
	}
	if len(ids) > smallBatch {
		r.group()
	}
}

// CommitBatch records that the reserved identifiers of r were stored at
// loc.
func (x *Index) CommitBatch(r *Reservation, loc uint64) {
	x.eachShard(r, true, warmInsert(r), func(sh *shard, i int32) bool {
		sh.pend.remove(r.hs[i], r.ids[i])
		x.insertLocked(sh, r.hs[i], loc)
		return true
	})
}

// CommitEach records that the reserved identifiers of r were stored at
// one location each, in their order in the batch: the first at first,
// the next at first+1, and so on. An EventLocs index is committed so.
func (x *Index) CommitEach(r *Reservation, first uint64) {
	if cap(r.locs) < len(r.ids) {
		r.locs = make([]uint64, len(r.ids))
	}
	locs := r.locs[:len(r.ids)]
	next := first
	for i, ok := range r.Reserved {
		if ok {
			locs[i] = next
			next++
		}
	}
	x.eachShard(r, true, warmInsert(r), func(sh *shard, i int32) bool {
		sh.pend.remove(r.hs[i], r.ids[i])
		x.insertLocked(sh, r.hs[i], locs[i])
		return true
	})
}

// Hash returns the hash of the i-th identifier of r.
func (r *Reservation) Hash(i int) uint64 { return r.hs[i] }

// ReleaseBatch drops the reservations of r.
func (x *Index) ReleaseBatch(r *Reservation) {
	x.eachShard(r, true, nil, func(sh *shard, i int32) bool {
		sh.pend.remove(r.hs[i], r.ids[i])
		return true
	})
}

// eachShard calls fn under the shard's lock for every identifier of r (the
// reserved ones only, if reserved is set), in order within each shard,
// until fn returns false. For grouped batches, warm (when set) is called
// under the lock with each identifier warmAhead identifiers before fn
// (warm.go).
func (x *Index) eachShard(r *Reservation, reserved bool, warm func(sh *shard, i int32), fn func(sh *shard, i int32) bool) {
	if len(r.order) == 0 {
		for i := range r.ids {
			if reserved && !r.Reserved[i] {
				continue
			}
			sh := x.shardOf(r.hs[i])
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
		idx := r.order[r.starts[s]:r.starts[s+1]]
		for k, i := range idx {
			if reserved && !r.Reserved[i] {
				continue
			}
			if !locked {
				sh.mu.Lock()
				locked = true
				if warm != nil {
					for _, j := range idx[k:min(k+warmAhead, len(idx))] {
						warm(sh, j)
					}
				}
			}
			if warm != nil && k+warmAhead < len(idx) {
				warm(sh, idx[k+warmAhead])
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
	if cap(r.starts) < 1<<shardBits+1 {
		r.starts = make([]int32, 1<<shardBits+1)
	}
	r.starts = r.starts[:1<<shardBits+1]
	clear(r.starts)
	for _, h := range r.hs {
		r.starts[h>>(64-shardBits)+1]++
	}
	for s := 1; s < len(r.starts); s++ {
		r.starts[s] += r.starts[s-1]
	}
	var next [1 << shardBits]int32
	copy(next[:], r.starts)
	if cap(r.order) < len(r.hs) {
		r.order = make([]int32, len(r.hs))
	}
	r.order = r.order[:len(r.hs)]
	for i, h := range r.hs {
		s := h >> (64 - shardBits)
		r.order[next[s]] = int32(i)
		next[s]++
	}
}

// Reset drops r's references to its identifiers and keeps its slices
// for the next ReserveBatch.
func (r *Reservation) Reset() {
	r.ids = nil
	clear(r.Reserved)
}

// Detach gives r its own copies of the slices it shares with the value it
// was copied from (a small batch's storage lives inside the Reservation,
// a large one's is reused by the next ReserveBatch) and with the caller
// (the identifiers): a copy handed to another goroutine calls Detach
// first.
func (r *Reservation) Detach() {
	r.hs = append([]uint64(nil), r.hs...)
	r.Reserved = append([]bool(nil), r.Reserved...)
	r.ids = append([]string(nil), r.ids...)
	r.order = append([]int32(nil), r.order...)
	r.starts = append([]int32(nil), r.starts...)
	r.locs = nil
}
