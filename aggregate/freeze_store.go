package aggregate

import (
	"cmp"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sync"
	"unsafe"
)

// Stored blocks: the table's side of keeping complete frozen blocks in the
// store rather than in memory (freeze.go, "Stored blocks"). The order of
// a checkpoint that freezes is
//
//	Freeze(horizon)                  days before horizon frozen, complete blocks queued
//	through := FrozenThrough()       every day before through is frozen, in every series
//	bs, more := TakeFrozen(max)      the complete blocks not stored yet
//	(the caller stores bs, and through once more is false)
//	Stored(bs)                       the blocks keep their day cells only
//
// with no other Freeze in between (the caller serializes them). Once every
// block TakeFrozen returned is stored, every day before through that has
// entries lies in a stored block, so Open reads the stored blocks
// (RestoreBlock) and only the hour and day records from through on.
// A block handed out and not yet Stored stays whole in memory and is
// handed out again by the next TakeFrozen: a failed write loses nothing.

// BlockReader returns the encoding of the stored frozen block of series k
// whose span starts at span, as TakeFrozen handed it out, or nil when
// there is none. The table calls it without holding any lock, and keeps
// the slice (the reader must not reuse it).
type BlockReader func(k Key, span int64) ([]byte, error)

// DefaultBlockCache is the memory, in bytes, of the cache of stored blocks
// read back that SetBlockReader sizes when given 0.
const DefaultBlockCache = 4 << 20

// SetBlockReader makes the table keep complete frozen blocks in the store
// (TakeFrozen, Stored) and read them back through r, keeping up to
// cacheBytes of them (0: DefaultBlockCache) in a cache. It needs a
// MinuteReader too. Call it before the table is shared and before the
// first Freeze.
func (t *Table) SetBlockReader(r BlockReader, cacheBytes int) {
	if cacheBytes <= 0 {
		cacheBytes = DefaultBlockCache
	}
	t.blocks = r
	t.cache.max = cacheBytes
}

// FrozenBlock is a complete block of frozen days of one series.
type FrozenBlock struct {
	Key  Key
	Span int64  // the start of the block's span: a multiple of 32 days since 1970-01-01 UTC
	Data []byte // its encoding (freeze.go); never changed, by the table or by its caller
}

// FrozenThrough returns the start of a block span before which, as of the
// last Freeze, every day of every series is frozen: once the blocks
// TakeFrozen hands out are stored, the stored blocks hold every day before
// it that has entries.
func (t *Table) FrozenThrough() int64 { return t.through.Load() }

// TakeFrozen returns complete frozen blocks that are not stored yet, about
// maxBytes of encoding at most (at least one block), and whether more
// remain. They stay whole in memory until Stored is called with them.
func (t *Table) TakeFrozen(maxBytes int) (bs []FrozenBlock, more bool) {
	size := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for _, s := range sh.toStore {
			f := s.fz
			for j := f.saved; j < f.complete(); j++ {
				bl := &f.blocks[j]
				if bl.stored {
					continue
				}
				if size > 0 && size+len(bl.data) > maxBytes {
					sh.mu.Unlock()
					return bs, true
				}
				bs = append(bs, FrozenBlock{Key: s.key, Span: spanOf(bl.first), Data: bl.data})
				size += len(bl.data)
			}
		}
		sh.mu.Unlock()
	}
	return bs, false
}

// Stored tells the table that the blocks bs, which TakeFrozen returned,
// are stored: from now on they keep their day cells only in memory.
func (t *Table) Stored(bs []FrozenBlock) {
	for i := range bs {
		b := &bs[i]
		sh, h := t.shard(b.Key)
		sh.mu.Lock()
		if s := sh.lookupLocked(h, b.Key); s != nil && s.fz != nil {
			f := s.fz
			if j := f.blockAt(b.Span); j >= 0 && !f.blocks[j].stored && j < int(f.complete()) {
				bl := &f.blocks[j]
				old := cap(bl.data)
				bl.data = dayCells(bl.data)
				bl.stored = true
				sh.n.frozenBytes += int64(cap(bl.data) - old)
				sh.n.storedBlocks++
			}
			for f.saved < int32(len(f.blocks)) && f.blocks[f.saved].stored {
				f.saved++
			}
		}
		sh.mu.Unlock()
	}
	// Series with nothing left to store leave the lists.
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		sh.toStore = slices.DeleteFunc(sh.toStore, func(s *series) bool {
			if s.fz.saved < s.fz.complete() {
				return false
			}
			s.fz.queued = false
			return true
		})
		sh.mu.Unlock()
	}
}

// blockAt returns the index of the block whose span starts at span, or -1.
func (f *frozenSeries) blockAt(span int64) int {
	k, found := slices.BinarySearchFunc(f.blocks, span, func(bl frozenBlock, t int64) int {
		return cmp.Compare(spanOf(bl.first), t)
	})
	if !found {
		return -1
	}
	return k
}

// RestoreBlock loads a stored block of series k, as TakeFrozen handed it
// out, for Open: the series' blocks in span order, before any record of
// the series after them (Restore). The table keeps the block's day cells
// only, and reads the rest back through its BlockReader. The horizon
// becomes at least the end of the block's span: its days were final
// when it was stored, in every series, and stay so.
func (t *Table) RestoreBlock(k Key, span int64, data []byte) error {
	if spanOf(span) != span {
		return fmt.Errorf("%w: frozen block at %d is not a block span", ErrCorrupt, span)
	}
	bi, err := checkBlock(span, data)
	if err != nil {
		return err
	}
	sh, h := t.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s := sh.seriesLocked(h, k)
	if s.chunks.Len() > 0 {
		if r, _ := s.chunks.Min(); r.start < span+blockSpan {
			return fmt.Errorf("%w: frozen block at %d restored after a record of its days", ErrCorrupt, span)
		}
	}
	if s.fz == nil {
		s.fz = &frozenSeries{}
		sh.n.frozenBytes += int64(unsafe.Sizeof(frozenSeries{}))
	}
	f := s.fz
	if nb := len(f.blocks); nb > 0 && spanOf(f.blocks[nb-1].first) >= span || f.saved != int32(nb) {
		return fmt.Errorf("%w: frozen block at %d restored out of order", ErrCorrupt, span)
	}
	oldCap := cap(f.blocks)
	days := dayCells(data)
	f.blocks = append(f.blocks, frozenBlock{first: bi.first, last: bi.last, n: bi.days, stored: true, data: days})
	sh.n.frozenBytes += int64(cap(f.blocks)-oldCap)*int64(unsafe.Sizeof(frozenBlock{})) + int64(cap(days))
	sh.n.storedBlocks++
	f.saved++
	f.days += bi.days
	f.end = max(f.end, span+blockSpan)
	t.raiseHorizon(span + blockSpan)
	// Counts of what the block holds, as freezeChunk keeps them.
	sh.n.frozenDays += int64(bi.days)
	sh.n.frozenHours += bi.hours
	sh.n.frozenMinutes += bi.minutes
	return nil
}

// errBlock is the cause of a malformed block encoding.
var errBlock = errors.New("malformed frozen block")

// blockInfo is what checkBlock finds in a block: the starts of its first
// and last days, and the days, hours and minute cells with entries it
// holds.
type blockInfo struct {
	first, last    int64
	days           int32
	hours, minutes int64
}

// checkBlock checks that data is the whole encoding of a block whose span
// starts at span (freeze.go), without minute cells, and says what it
// holds.
func checkBlock(span int64, data []byte) (blockInfo, error) {
	var bi blockInfo
	bad := func(why string) (blockInfo, error) {
		return blockInfo{}, fmt.Errorf("%w: %w at span %d: %s", ErrCorrupt, errBlock, span, why)
	}
	start := span
	for i := 0; i < len(data); {
		delta, ok := tryUvarint(data, &i)
		if !ok || (bi.days > 0 && delta == 0) || delta >= blockDays {
			return bad("day header")
		}
		start += int64(delta) * daySecs
		l, ok := tryUvarint(data, &i)
		if !ok || l > uint64(len(data)-i) {
			return bad("day length")
		}
		if start >= span+blockSpan {
			return bad("day past the span")
		}
		body := data[i : i+int(l)]
		j := 0
		if !trySkipCell(body, &j) || len(body)-j < 3 {
			return bad("day cell")
		}
		mask := uint32(body[j]) | uint32(body[j+1])<<8 | uint32(body[j+2])<<16
		j += 3
		if mask>>hoursPerDay != 0 {
			return bad("hour mask")
		}
		hours := bits.OnesCount32(mask)
		for range hours {
			if !trySkipCell(body, &j) {
				return bad("hour cell")
			}
		}
		mins, ok := tryUvarint(body, &j)
		if !ok || mins < uint64(hours) || mins > 60*hoursPerDay {
			return bad("minute count")
		}
		if j != len(body) {
			return bad("trailing bytes in a day")
		}
		if bi.days == 0 {
			bi.first = start
		}
		bi.last = start
		bi.days++
		bi.hours += int64(hours)
		bi.minutes += int64(mins)
		i += int(l)
	}
	if bi.days == 0 {
		return bad("no day")
	}
	return bi, nil
}

// storedBlock returns the encoding of the stored block of series k whose
// span starts at span: from the cache, or read and checked.
func (t *Table) storedBlock(k Key, span int64) ([]byte, error) {
	if b := t.cache.get(k, span); b != nil {
		return b, nil
	}
	b, err := t.blocks(k, span)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("%w: frozen block at %d of meter %d, customer %q is not stored", ErrCorrupt, span, k.Meter, k.Customer)
	}
	if _, err := checkBlock(span, b); err != nil {
		return nil, fmt.Errorf("meter %d, customer %q: %w", k.Meter, k.Customer, err)
	}
	t.cache.put(k, span, b)
	return b, nil
}

// deferredBlock is a stored block whose hours a query reads once it
// released the shard lock.
type deferredBlock struct {
	key  Key
	span int64
}

// blockCache keeps stored blocks read back, up to max bytes, evicting the
// oldest first.
type blockCache struct {
	mu    sync.Mutex
	max   int
	size  int
	m     map[deferredBlock][]byte
	order []deferredBlock // insertion order, oldest first
}

func (c *blockCache) get(k Key, span int64) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[deferredBlock{k, span}]
}

func (c *blockCache) put(k Key, span int64, b []byte) {
	if len(b) > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	id := deferredBlock{k, span}
	if c.m == nil {
		c.m = map[deferredBlock][]byte{}
	}
	if _, ok := c.m[id]; ok {
		return
	}
	for c.size+len(b) > c.max && len(c.order) > 0 {
		old := c.order[0]
		c.order = c.order[1:]
		c.size -= len(c.m[old])
		delete(c.m, old)
	}
	c.m[id] = b
	c.order = append(c.order, id)
	c.size += len(b)
}
