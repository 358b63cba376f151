package aggregate

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"sync/atomic"
	"unsafe"
)

// Frozen history. Events are accepted only within 35 days of receipt and
// cancelled only within a day of it, so a day that ended more than 36 days
// ago never changes again. Freeze moves such days out of a series' chunk
// tree into a packed, read-only form (frozenSeries): per day, its cell and
// the cells of its hours with entries, varint-encoded, about 4 bytes an
// hour instead of a 32-byte bucket, its minute cells and raw entries.
//
// Minute cells, which only a query whose minute-aligned edge falls inside a
// frozen hour needs, are either packed into the frozen day too (a table
// without a minute reader: an in-memory database, which has nowhere else
// to read them from) or read back from the checkpointed hour records
// through the table's MinuteReader (a file-backed database: a frozen
// chunk was checkpointed before it froze, and it never changes, so the
// record on disk is its exact state). Raw entries are dropped: they serve
// only cancellations and new events of their window, and a frozen day
// gets neither.
//
// A series' frozen days all start before frozen.end and every chunk of its
// tree at or after it, so a query splits its range at frozen.end and reads
// each side from its own form. The frozen form is immutable but for
// appends by Freeze under the shard lock; minute reads through the
// MinuteReader happen after the query released the lock.
//
// # Stored blocks
//
// Frozen days are grouped in blocks of blockDays aligned days (the span of
// a block starts at a multiple of blockDays days since 1970-01-01). A
// table with a BlockReader (a file-backed database) keeps a complete block
// (its span ended before the series' frozen end, so it can gain no day)
// in memory only until its caller has stored it: TakeFrozen hands out the
// complete blocks not yet stored, the caller writes them and calls Stored,
// and from then on the block holds only its days' cells. A query that
// needs the hours of a stored day reads the whole block back through the
// BlockReader, after it released the shard lock (pending, deferredBlock),
// and through a small cache of recently read blocks. A stored block never
// changes again; the open block (the last, whose span has not ended) stays
// whole in memory.

// blockDays is the number of days in a frozen block: the unit of the
// binary search that finds a day, of the growth of the packed bytes and of
// what a table with a BlockReader stores (see "Stored blocks").
const blockDays = 32

// blockSpan is the length in seconds of a block's span.
const blockSpan = blockDays * daySecs

// BlockSpan is the length in seconds of the span of a frozen block: 32
// days. Spans start at multiples of it since 1970-01-01 UTC.
const BlockSpan = blockSpan

// spanOf returns the start of the block span that holds t.
func spanOf(t int64) int64 { return floorTo(t, blockSpan) }

// frozenSeries holds the frozen days of a series, oldest first, in blocks.
type frozenSeries struct {
	end     int64 // day aligned: every frozen day starts before it, every live chunk at or after it
	days    int32 // frozen days with entries
	saved   int32 // the blocks, a prefix of blocks, that are stored (only their day cells are in memory)
	minutes bool  // the days hold their minute cells (the table has no MinuteReader)
	queued  bool  // in its shard's toStore list
	blocks  []frozenBlock
}

// complete returns the number of blocks whose span ended at or before f.end:
// a prefix of f.blocks.
func (f *frozenSeries) complete() int32 {
	n := int32(len(f.blocks))
	if n > 0 && spanOf(f.blocks[n-1].first)+blockSpan > f.end {
		n--
	}
	return n
}

// frozenBlock is up to blockDays frozen days. Each day is encoded as
//
//	uvarint days since the previous day of the block (for the first: since
//	        the start of the block's span)
//	uvarint length of the body
//	body: the day's cell,
//	      3 bytes: the mask of the hours with entries (bit i: hour i),
//	      the cell of each of those hours, in hour order,
//	      when the table keeps minute cells: per hour with entries,
//	       0x80 | the minute offset (0-59) when one minute has entries, or
//	       a byte n, n bytes of minute offsets and the n minute cells;
//	      otherwise: uvarint the number of the day's minute cells
//
// and a cell as uvarint count<<3 | hasHi<<2 | sumIsCount<<1 | hasLast;
// unless sumIsCount (every value 1, as in count meters), varint of the low
// 64 bits of the sum and, when hasHi, varint hi - sign extension of lo;
// when hasLast and the count is not 1 (the value is then the sum), varint
// the last entry's value.
//
// A stored block (see "Stored blocks") holds the same day headers, each
// day's body being only its cell; the BlockReader returns the whole
// encoding.
//
// A frozen cell keeps its last entry's value, not its sequence or its
// timestamp: the timestamp reads as the start of the cell's minute, hour
// or day. Frozen cells cover disjoint times, and a query merges a cell
// only with cells of other times (live, frozen, or minute cells read from
// the store), so those starts order them as the real timestamps would.
type frozenBlock struct {
	first, last int64 // start of the block's first and last day; spanOf(first) is the block's span
	n           int32 // days in the block
	stored      bool  // data holds the day cells only; the whole encoding is in the store
	data        []byte
}

// dayCells returns the stored form of a block's whole encoding: the same
// day headers, each body cut to the day's cell.
func dayCells(data []byte) []byte {
	var buf [blockDays * 32]byte
	out := buf[:0]
	for i := 0; i < len(data); {
		delta := uvarint(data, &i)
		n := int(uvarint(data, &i))
		j := i
		skipCell(data, &j)
		out = binary.AppendUvarint(out, delta)
		out = binary.AppendUvarint(out, uint64(j-i))
		out = append(out, data[i:j]...)
		i += n
	}
	return bytes.Clone(out)
}

// appendCell encodes c.
func appendCell(b []byte, c Cell) []byte {
	hi := c.Sum.Hi - int64(c.Sum.Lo)>>63
	hasLast := c.Last != Entry{}
	sumIsCount := c.Sum == Int128Of(c.Count)
	tag := uint64(c.Count) << 3
	switch {
	case sumIsCount:
		tag |= 2
	case hi != 0:
		tag |= 4
	}
	if hasLast {
		tag |= 1
	}
	b = binary.AppendUvarint(b, tag)
	if !sumIsCount {
		b = binary.AppendVarint(b, int64(c.Sum.Lo))
		if hi != 0 {
			b = binary.AppendVarint(b, hi)
		}
	}
	if hasLast && c.Count != 1 {
		b = binary.AppendVarint(b, c.Last.Value)
	}
	return b
}

// uvarint and varint decode at b[*i], advancing *i. The packed form is
// built in memory by appendCell, so a malformed value is a broken
// invariant. tryUvarint and tryVarint are the same for bytes read from a
// store, which checkBlock checks: ok is false when no value decodes there.
func uvarint(b []byte, i *int) uint64 {
	v, ok := tryUvarint(b, i)
	if !ok {
		panic("aggregate: corrupt frozen history")
	}
	return v
}

func varint(b []byte, i *int) int64 {
	v, ok := tryVarint(b, i)
	if !ok {
		panic("aggregate: corrupt frozen history")
	}
	return v
}

func tryUvarint(b []byte, i *int) (uint64, bool) {
	v, n := binary.Uvarint(b[*i:])
	if n <= 0 {
		return 0, false
	}
	*i += n
	return v, true
}

func tryVarint(b []byte, i *int) (int64, bool) {
	v, n := binary.Varint(b[*i:])
	if n <= 0 {
		return 0, false
	}
	*i += n
	return v, true
}

// readCell decodes a cell at b[*i]; start is the start of its minute, hour
// or day: its last entry's timestamp.
func readCell(b []byte, i *int, start int64) Cell {
	tag := uvarint(b, i)
	c := Cell{Count: int64(tag >> 3)}
	if tag&2 != 0 {
		c.Sum = Int128Of(c.Count)
	} else {
		lo := varint(b, i)
		c.Sum = Int128{Hi: lo >> 63, Lo: uint64(lo)}
		if tag&4 != 0 {
			c.Sum.Hi += varint(b, i)
		}
	}
	if tag&1 != 0 {
		c.Last.Timestamp = start
		if c.Count == 1 {
			c.Last.Value = int64(c.Sum.Lo)
		} else {
			c.Last.Value = varint(b, i)
		}
	}
	return c
}

// skipCell steps over a cell at b[*i].
func skipCell(b []byte, i *int) {
	if !trySkipCell(b, i) {
		panic("aggregate: corrupt frozen history")
	}
}

// trySkipCell is skipCell for bytes read from a store: it reports whether
// a cell decodes at b[*i].
func trySkipCell(b []byte, i *int) bool {
	tag, ok := tryUvarint(b, i)
	if !ok {
		return false
	}
	vs := 0 // varints after the tag
	if tag&2 == 0 {
		vs++
		if tag&4 != 0 {
			vs++
		}
	}
	if tag&1 != 0 && tag>>3 != 1 {
		vs++
	}
	for range vs {
		if _, ok := tryVarint(b, i); !ok {
			return false
		}
	}
	return true
}

// frozenDay is one decoded day header: its start and body. The body of
// a day of a stored block is only its cell (stored).
type frozenDay struct {
	start  int64
	body   []byte
	stored bool
}

// cell returns the day's cell.
func (d frozenDay) cell() Cell {
	i := 0
	return readCell(d.body, &i, d.start)
}

// hourMask returns the day's mask of hours with entries and the offset of
// its first hour cell.
func (d frozenDay) hourMask() (mask uint32, i int) {
	if d.stored {
		panic("aggregate: the hours of a stored frozen day read from memory")
	}
	skipCell(d.body, &i)
	mask = uint32(d.body[i]) | uint32(d.body[i+1])<<8 | uint32(d.body[i+2])<<16
	return mask, i + 3
}

// hours calls fn with the start and cell of each hour of the day with
// entries in [a, b), in hour order.
func (d frozenDay) hours(a, b int64, fn func(start int64, c Cell)) {
	mask, i := d.hourMask()
	for m := mask; m != 0; m &= m - 1 {
		h := bits.TrailingZeros32(m)
		hs := d.start + int64(h)*hourSecs
		if hs >= b {
			return
		}
		c := readCell(d.body, &i, hs)
		if hs >= a {
			fn(hs, c)
		}
	}
}

// minutes merges into c the minute cells of the hour at hs within [a, b);
// the day must hold packed minute cells.
func (d frozenDay) minutes(hs, a, b int64, c *Cell) {
	mask, i := d.hourMask()
	want := int((hs - d.start) / hourSecs)
	var hourCell Cell
	for m := mask; m != 0; m &= m - 1 {
		h := bits.TrailingZeros32(m)
		if h == want {
			hourCell = readCell(d.body, &i, hs)
		} else {
			skipCell(d.body, &i)
		}
	}
	if mask&(1<<uint(want)) == 0 {
		return
	}
	for m := mask; m != 0; m &= m - 1 {
		h := bits.TrailingZeros32(m)
		n := int(d.body[i])
		var offs []byte
		if n&0x80 != 0 { // one minute
			n, offs = 1, d.body[i:i+1]
			i++
		} else {
			offs = d.body[i+1 : i+1+n]
			i += 1 + n
		}
		if h != want {
			if n > 1 {
				for range n {
					skipCell(d.body, &i)
				}
			}
			continue
		}
		for _, off := range offs {
			t := hs + int64(off&0x7f)*minuteSecs
			mc := hourCell // one minute: its cell is the hour's
			if n > 1 {
				mc = readCell(d.body, &i, t)
			} else if mc.Count > 0 && mc.Last != (Entry{}) {
				mc.Last.Timestamp = t
			}
			if t >= a && t < b {
				c.merge(mc)
			}
		}
		return
	}
}

// eachDay calls fn with each frozen day starting in [a, b), oldest first,
// until fn returns false. The days of stored blocks hold their cells only.
func (f *frozenSeries) eachDay(a, b int64, fn func(d frozenDay) bool) {
	bs := f.blocks
	// The last block whose first day is at or before a.
	k, found := slices.BinarySearchFunc(bs, a, func(bl frozenBlock, t int64) int {
		switch {
		case bl.first < t:
			return -1
		case bl.first > t:
			return 1
		}
		return 0
	})
	if !found && k > 0 {
		k--
	}
	for ; k < len(bs); k++ {
		bl := &bs[k]
		if bl.first >= b || !blockDaysAsc(spanOf(bl.first), bl.data, bl.stored, a, b, fn) {
			return
		}
	}
}

// blockDaysAsc calls fn with each day of a block's encoding (data, of the
// block whose span starts at span) starting in [a, b), oldest first; it
// returns false when fn did, or when the block goes on past b.
func blockDaysAsc(span int64, data []byte, stored bool, a, b int64, fn func(d frozenDay) bool) bool {
	start := span
	for i := 0; i < len(data); {
		start += int64(uvarint(data, &i)) * daySecs
		n := int(uvarint(data, &i))
		if start >= b {
			return false
		}
		if start >= a && !fn(frozenDay{start: start, body: data[i : i+n], stored: stored}) {
			return false
		}
		i += n
	}
	return true
}

// daysDesc calls fn with each frozen day starting in [a, b), newest first,
// until fn returns false. A stored block in range is not decoded: stored
// gets it instead, when not nil (the days of stored blocks holding their
// cells only, fn gets them when stored is nil).
func (f *frozenSeries) daysDesc(a, b int64, stored func(bl *frozenBlock) bool, fn func(d frozenDay) bool) {
	bs := f.blocks
	for k := len(bs) - 1; k >= 0; k-- {
		bl := &bs[k]
		if bl.first >= b {
			continue
		}
		if bl.stored && stored != nil {
			if !stored(bl) {
				return
			}
		} else if !blockDaysDesc(spanOf(bl.first), bl.data, bl.stored, a, b, fn) {
			return
		}
		if bl.first <= a { // earlier blocks hold only days before a
			return
		}
	}
}

// blockDaysDesc is blockDaysAsc newest first: it decodes the days forward
// and keeps up to blockDays of them on the stack. It returns false when fn
// did.
func blockDaysDesc(span int64, data []byte, stored bool, a, b int64, fn func(d frozenDay) bool) bool {
	var buf [blockDays]frozenDay
	n := 0
	start := span
	for i := 0; i < len(data); {
		start += int64(uvarint(data, &i)) * daySecs
		l := int(uvarint(data, &i))
		if start >= b {
			break
		}
		if start >= a {
			buf[n] = frozenDay{start: start, body: data[i : i+l], stored: stored}
			n++
		}
		i += l
	}
	for j := n - 1; j >= 0; j-- {
		if !fn(buf[j]) {
			return false
		}
	}
	return true
}

// day returns the frozen day starting at dstart.
func (f *frozenSeries) day(dstart int64) (frozenDay, bool) {
	var out frozenDay
	ok := false
	f.eachDay(dstart, dstart+daySecs, func(d frozenDay) bool { out, ok = d, true; return false })
	return out, ok
}

// MinuteReader returns the checkpointed state of the hour starting at
// start of series k, as TakeDirty encoded it, or nil when there is none.
// The table calls it without holding any lock, for the frozen hours at the
// minute-aligned edges of a query range; the slice is only read.
type MinuteReader func(k Key, start int64) ([]byte, error)

// SetMinuteReader makes the table read the minute cells of frozen hours
// through r instead of packing them into its frozen days. Call it before
// the table is shared and before the first Freeze.
func (t *Table) SetMinuteReader(r MinuteReader) { t.minutes = r }

// Horizon returns the start of the first day that is not frozen: no series
// holds a frozen day at or after it, and Apply and Cancel must not be
// given an entry before it (a frozen day never changes).
func (t *Table) Horizon() int64 { return t.horizon.Load() }

// raiseHorizon makes the horizon at least h.
func (t *Table) raiseHorizon(h int64) { raise(&t.horizon, h) }

// raise makes v at least x.
func raise(v *atomic.Int64, x int64) {
	for {
		old := v.Load()
		if x <= old || v.CompareAndSwap(old, x) {
			return
		}
	}
}

// FreezeStats says what a Freeze call did.
type FreezeStats struct {
	Days, Hours int64 // frozen by the call
	// Skipped counts series whose oldest chunk before the horizon was
	// still waiting for a checkpoint: it freezes with a later call.
	Skipped int64
	minStop int64 // the least frozen end of a skipped series
}

// Freeze packs every day of every series that starts before horizon (UTC
// midnight) into the frozen form, except chunks changed since the last
// checkpoint (TakeDirty) and what follows them in their series: the
// caller freezes only what is checkpointed, so that the minute reader
// finds it. The caller guarantees that no entry before horizon is applied
// or cancelled afterwards; Horizon reports the greatest horizon given.
// It locks one shard at a time.
func (t *Table) Freeze(horizon int64) FreezeStats { return t.freeze(horizon, false, 0) }

// FreezeMeter is Freeze for the series of one meter: Open uses it while
// it restores a meter's records, oldest first, so that the history it
// loads is frozen as it goes instead of all held at once.
func (t *Table) FreezeMeter(meter uint64, horizon int64) FreezeStats {
	return t.freeze(horizon, true, meter)
}

func (t *Table) freeze(horizon int64, oneMeter bool, meter uint64) FreezeStats {
	if horizon%daySecs != 0 {
		panic(fmt.Sprintf("aggregate: freeze horizon %d is not a UTC midnight", horizon))
	}
	t.raiseHorizon(horizon)
	fs := FreezeStats{minStop: horizon}
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		if oneMeter {
			if p := sh.meters[meter]; p != nil {
				for _, s := range p.series {
					s.freeze(horizon, t.minutes == nil, t.blocks != nil, sh, &fs)
				}
			}
		} else {
			for _, s := range sh.series {
				for ; s != nil; s = s.next {
					s.freeze(horizon, t.minutes == nil, t.blocks != nil, sh, &fs)
				}
			}
		}
		sh.mu.Unlock()
	}
	if !oneMeter {
		// Every series now holds frozen every day before minStop.
		raise(&t.through, spanOf(fs.minStop))
	}
	return fs
}

// freeze moves the chunks of s before horizon into its frozen form, up to
// the first that is waiting for a checkpoint.
func (s *series) freeze(horizon int64, keepMinutes, store bool, sh *shard, fs *FreezeStats) {
	var done []ref
	stop := horizon
	s.chunks.AscendLessThan(ref{start: horizon}, func(r ref) bool {
		if r.c.dirty() != 0 {
			stop = r.start
			fs.Skipped++
			fs.minStop = min(fs.minStop, stop)
			return false
		}
		done = append(done, r)
		return true
	})
	if len(done) == 0 && (s.fz == nil || stop <= s.fz.end) {
		return
	}
	if s.fz == nil {
		s.fz = &frozenSeries{minutes: keepMinutes}
		sh.n.frozenBytes += int64(unsafe.Sizeof(frozenSeries{}))
	}
	f := s.fz
	for _, r := range done {
		s.freezeChunk(f, r.start, r.c, keepMinutes, sh, fs)
		r.c.release(sh)
		s.chunks.Delete(r)
		sh.n.chunks--
		s.forget(r.start, r.c)
	}
	f.end = max(f.end, stop)
	if store && !f.queued && f.complete() > f.saved {
		f.queued = true
		sh.toStore = append(sh.toStore, s)
	}
	// The day cells of the meter index hold live days only: drop the
	// frozen ones and take their totals out of the running totals.
	k := s.dayIndex(f.end)
	if k > 0 {
		s.dayCells = slices.Delete(s.dayCells, 0, k)
		s.cumValid = 0
		s.lastDay = dayCell{}
		if n := len(s.dayCells); n > 0 {
			s.lastDay.start = s.dayCells[n-1].start
		}
	}
}

// freezeChunk appends the day of c, starting at dstart, to f and takes its
// buckets out of the shard's live counts.
func (s *series) freezeChunk(f *frozenSeries, dstart int64, c *chunk, keepMinutes bool, sh *shard, fs *FreezeStats) {
	has := c.has()
	hs := c.hourSlice()
	// Live counts out.
	a := &sh.ar
	for j := range hs {
		h := &hs[j]
		sh.n.raw -= int64(len(h.rawEntries(a)))
		sh.n.minuteSlots -= int64(cap(h.minuteCells(a)))
		sh.n.minutes -= int64(h.minuteCount())
	}
	sh.n.hours -= int64(len(hs))
	if has&dayBit != 0 {
		sh.n.days--
		sh.n.raw -= int64(len(c.day.rawEntries(a)))
	}
	if has&dayBit == 0 || c.day.count == 0 {
		return // nothing counts in this day
	}
	// Encode.
	var mask uint32
	for m := has & hourBits; m != 0; m &= m - 1 {
		if i := bits.TrailingZeros32(m); hs[c.slot[i]].count > 0 {
			mask |= 1 << uint(i)
		}
	}
	body := make([]byte, 0, 16+bits.OnesCount32(mask)*6)
	body = appendCell(body, c.day.cell(a))
	body = append(body, byte(mask), byte(mask>>8), byte(mask>>16))
	for m := mask; m != 0; m &= m - 1 {
		i := bits.TrailingZeros32(m)
		body = appendCell(body, hs[c.slot[i]].cell(a))
	}
	var minutes int64
	for m := mask; m != 0; m &= m - 1 {
		i := bits.TrailingZeros32(m)
		h := &hs[c.slot[i]]
		minutes += int64(h.minuteCount())
		if !keepMinutes {
			continue
		}
		start := dstart + int64(i)*hourSecs
		n := h.minuteCount()
		if n == 1 {
			body = append(body, 0x80|byte(bits.TrailingZeros64(h.present&minuteMask)))
			continue
		}
		body = append(body, byte(n))
		for p := h.present & minuteMask; p != 0; p &= p - 1 {
			body = append(body, byte(bits.TrailingZeros64(p)))
		}
		h.eachMinute(start, a, func(_ int64, mc Cell) { body = appendCell(body, mc) })
	}
	if !keepMinutes {
		body = binary.AppendUvarint(body, uint64(minutes))
	}
	// Append to the block of the day's span, or open it.
	if n := len(f.blocks); n == 0 || spanOf(f.blocks[n-1].first) != spanOf(dstart) {
		if n > 0 { // the previous block is complete: into an allocation of its size, the growth slack freed
			prev := &f.blocks[n-1]
			old := cap(prev.data)
			prev.data = bytes.Clone(prev.data)
			sh.n.frozenBytes += int64(cap(prev.data) - old)
		}
		oldCap := cap(f.blocks)
		f.blocks = append(f.blocks, frozenBlock{first: dstart, last: spanOf(dstart)})
		sh.n.frozenBytes += int64(cap(f.blocks)-oldCap) * int64(unsafe.Sizeof(frozenBlock{}))
	}
	bl := &f.blocks[len(f.blocks)-1]
	if bl.stored {
		panic(fmt.Sprintf("aggregate: day %d frozen into a stored block", dstart))
	}
	oldCap := cap(bl.data)
	bl.data = binary.AppendUvarint(bl.data, uint64((dstart-bl.last)/daySecs))
	bl.data = binary.AppendUvarint(bl.data, uint64(len(body)))
	bl.data = append(bl.data, body...)
	sh.n.frozenBytes += int64(cap(bl.data) - oldCap)
	bl.last = dstart
	bl.n++
	f.days++
	nh := int64(bits.OnesCount32(mask))
	sh.n.frozenDays++
	sh.n.frozenHours += nh
	sh.n.frozenMinutes += minutes
	fs.Days++
	fs.Hours += nh
}
