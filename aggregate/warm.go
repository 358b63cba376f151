package aggregate

import (
	"unsafe"

	"github.com/meterdb/meterdb/internal/prefetch"
)

// Warming a batch's cache lines.
//
// An event of a backfill lands in an hour that no recent event touched:
// its series, the series' recent-chunk slot, the day's chunk, the hour's
// bucket and the day's cell are each a cache line away from the last
// one, and each load waits for the one before it. Applied one event after
// the other, a batch pays those latencies end to end. warmLocked walks the
// items of one shard a step at a time instead: each pass names (prefetch)
// the line the next pass reads, for every item, so that the misses of
// different items overlap. The passes change nothing; applyLocked then
// finds the lines in the cache. A prediction gone stale (an earlier item
// of the batch moves a chunk's hours) costs a miss, never a wrong answer.

// warmMin is the smallest group worth the passes.
const warmMin = 2

// warmLocked prefetches, in passes over idx (indices into items), the
// lines that applying those items reads. sc holds the per-item series,
// chunks and hour buckets between passes.
func (sh *shard) warmLocked(items []Item, hashes []uint64, idx []int32, sc *batchScratch) {
	ss := grow(sc.warmSeries, len(idx))
	cs := grow(sc.warmChunks, len(idx))
	// The head of each item's hash chain.
	for j, i := range idx {
		s := sh.series[hashes[i]]
		ss[j] = s
		if s != nil {
			prefetch.Line(unsafe.Pointer(s))
		}
	}
	// The series, then its recent slot and the day's cell.
	for j, i := range idx {
		s := ss[j]
		for s != nil && s.key != items[i].Key {
			s = s.next
		}
		ss[j] = s
		if s == nil {
			continue
		}
		dstart := floorTo(items[i].Entry.Timestamp, daySecs)
		if s.recent != nil {
			prefetch.Line(unsafe.Pointer(&s.recent[recentSlot(dstart)]))
		}
		if g := s.dayGuess(dstart); g >= 0 {
			prefetch.Line(unsafe.Pointer(&s.dayCells[g]))
		}
	}
	// The day's chunk.
	for j, i := range idx {
		cs[j] = nil
		s := ss[j]
		if s == nil {
			continue
		}
		if c := s.cached(floorTo(items[i].Entry.Timestamp, daySecs)); c != nil {
			cs[j] = c
			prefetch.Line(unsafe.Pointer(c))
		}
	}
	// The hour's bucket.
	hs := grow(sc.warmHours, len(idx))
	for j, i := range idx {
		hs[j] = nil
		if c := cs[j]; c != nil {
			ts := items[i].Entry.Timestamp
			if h := c.hourAt(int((ts - floorTo(ts, daySecs)) / hourSecs)); h != nil {
				hs[j] = h
				prefetch.Line(unsafe.Pointer(h))
			}
		}
	}
	// The hour's minute cell, which a plain hour numbers; an extended
	// one's extension, then its minute cell.
	a := &sh.ar
	for j, i := range idx {
		if h := hs[j]; h != nil && h.x != 0 {
			if h.present&plainBit != 0 {
				prefetch.Line(unsafe.Pointer(minuteCellAt(h.minuteCells(a), h, items[i].Entry.Timestamp)))
			} else {
				prefetch.Line(unsafe.Pointer(a.ext(h.x)))
			}
		}
	}
	for j, i := range idx {
		if h := hs[j]; h != nil {
			if x := h.xt(a); x != nil && x.cells != 0 {
				prefetch.Line(unsafe.Pointer(minuteCellAt(h.minuteCells(a), h, items[i].Entry.Timestamp)))
			}
		}
	}
	clear(ss)
	clear(cs)
	clear(hs)
	sc.warmSeries, sc.warmChunks, sc.warmHours = ss, cs, hs
}

// minuteCellAt returns the cell of ms (h's minute cells, not empty) that
// an entry at ts reads: its minute's, or a neighbour's when the minute has
// no cell yet.
func minuteCellAt(ms []minuteCell, h *bucket, ts int64) *minuteCell {
	_, k := h.minuteBit(floorTo(ts, hourSecs), ts)
	return &ms[min(k, len(ms)-1)]
}
