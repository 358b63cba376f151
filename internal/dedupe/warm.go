package dedupe

import (
	"unsafe"

	"github.com/meterdb/meterdb/internal/prefetch"
)

// Warming a batch's slots.
//
// A fresh identifier probes two buckets in every live epoch and lands in
// one bucket of the filling epoch; in a window of millions of
// identifiers each of those is a cache miss. Under a shard's lock, while
// its identifiers are reserved or committed one by one, warmFind and
// warmInsert name (prefetch) the buckets and pending slot that an
// identifier a few places ahead will read, so that the misses of
// successive identifiers overlap. They change nothing.

// warmAhead is how many identifiers ahead of the one being reserved or
// committed a shard's loop warms: enough to overlap their misses, few
// enough that the lines of a dozen epochs are still in the cache when
// their turn comes.
const warmAhead = 3

// warmSlots is the table size (in slots) below which an epoch stays in
// the cache and is not warmed.
const warmSlots = 1 << 12

// warmFind returns the warm function of ReserveBatch: the pending slot of
// an identifier and its two buckets in every large live epoch.
func warmFind(x *Index, r *Reservation) func(sh *shard, i int32) {
	minLoc := x.minLoc.Load()
	return func(sh *shard, i int32) {
		h := r.hs[i]
		sh.pend.warm(h)
		t := tagOf(h, x.ob)
		for _, e := range sh.epochs {
			if len(e.slots) < warmSlots || e.count == 0 || e.last < minLoc {
				continue
			}
			b1 := e.bucket(h)
			prefetch.Line(unsafe.Pointer(&e.slots[b1*bucketSlots]))
			prefetch.Line(unsafe.Pointer(&e.slots[e.alt(b1, t)*bucketSlots]))
		}
	}
}

// warmInsert returns the warm function of CommitBatch and CommitEach: the
// pending slot of an identifier and its first bucket in the filling
// epoch.
func warmInsert(r *Reservation) func(sh *shard, i int32) {
	return func(sh *shard, i int32) {
		h := r.hs[i]
		sh.pend.warm(h)
		if k := len(sh.epochs); k > 0 {
			if e := sh.epochs[k-1]; len(e.slots) >= warmSlots {
				prefetch.Line(unsafe.Pointer(&e.slots[e.bucket(h)*bucketSlots]))
			}
		}
	}
}

// warm prefetches the first slot that has, add and remove probe for hash h.
func (p *pending) warm(h uint64) {
	if p.n > 0 {
		prefetch.Line(unsafe.Pointer(&p.entries[p.home(h|1)]))
	}
}
