package aggregate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/meterdb/meterdb/internal/binread"
)

// Checkpoint support. With tracking on, every hour or day bucket that
// changes is remembered until TakeDirty hands it out, encoded. The encoded
// state of an hour bucket is its minute cells and raw entries; of a day
// bucket, its raw entries (day-window meters only). Hour and day cells are
// derived from those on Restore, so a checkpoint holds exactly what
// replaying the events would rebuild.

// ErrCorrupt reports an encoded bucket that cannot be decoded.
var ErrCorrupt = errors.New("aggregate: corrupt checkpoint record")

// dirtyRef is a chunk with changed buckets: its dirty bits say which.
type dirtyRef struct {
	s     *series
	start int64 // the day's
	c     *chunk
}

// TrackDirty turns on dirty tracking. Call it before the table is shared.
func (t *Table) TrackDirty() {
	for i := range t.shards {
		t.shards[i].tracking = true
	}
}

// mark records that the buckets of c named by which (hour and day bits)
// changed; c is the chunk of s at dstart.
func (sh *shard) mark(s *series, dstart int64, c *chunk, which uint32) {
	if !sh.tracking {
		return
	}
	if c.dirty()&queuedBit == 0 {
		sh.dirty = append(sh.dirty, dirtyRef{s: s, start: dstart, c: c})
	}
	c.markDirty(which | queuedBit)
}

// Dirty is one changed bucket, encoded. A nil State means the bucket is
// gone.
type Dirty struct {
	Key   Key
	Start int64
	Day   bool
	State []byte
}

// TakeDirty returns every bucket changed since the last call, encoded,
// and clears the set. Buckets are encoded under their shard's lock, so the
// result is consistent with everything applied before the call as long as
// nothing is applied during it (the caller excludes writers).
func (t *Table) TakeDirty() []Dirty {
	var out []Dirty
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for _, r := range sh.dirty {
			c := r.c
			which := c.dirty()
			c.clearDirty()
			// A bucket that is empty, or whose chunk is no longer in its
			// tree, is gone. A chunk dropped and then created again is
			// listed twice, the newer one last.
			live := r.s.holds(r.start, c)
			for m := which & hourBits; m != 0; m &= m - 1 {
				i := bits.TrailingZeros32(m)
				start := r.start + int64(i)*hourSecs
				var st []byte
				if h := c.hourAt(i); live && h != nil && (h.count > 0 || len(h.rawEntries(&sh.ar)) > 0) {
					st = encodeHour(start, h, &sh.ar)
				}
				out = append(out, Dirty{Key: r.s.key, Start: start, State: st})
			}
			if which&dayBit != 0 {
				var st []byte
				if raw := c.day.rawEntries(&sh.ar); live && c.has()&dayBit != 0 && len(raw) > 0 {
					st = encodeRaw(nil, raw)
				}
				out = append(out, Dirty{Key: r.s.key, Start: r.start, Day: true, State: st})
			}
		}
		clear(sh.dirty)
		sh.dirty = sh.dirty[:0]
		sh.mu.Unlock()
	}
	return out
}

// encodeHour: uvarint minutes; per minute: uvarint minute offset, uvarint
// count, varint sum.Hi, uvarint sum.Lo, entry last; then the raw entries.
// An entry is uvarint seq, varint timestamp, varint value.
func encodeHour(start int64, h *bucket, a *arena) []byte {
	b := make([]byte, 0, 8+h.minuteCount()*24+len(h.rawEntries(a))*12)
	b = binary.AppendUvarint(b, uint64(h.minuteCount()))
	h.eachMinute(start, a, func(minute int64, m Cell) {
		b = binary.AppendUvarint(b, uint64((minute-start)/minuteSecs))
		b = binary.AppendUvarint(b, uint64(m.Count))
		b = binary.AppendVarint(b, m.Sum.Hi)
		b = binary.AppendUvarint(b, m.Sum.Lo)
		b = appendEntry(b, m.Last)
	})
	return encodeRaw(b, h.rawEntries(a))
}

func encodeRaw(b []byte, raw []Entry) []byte {
	b = binary.AppendUvarint(b, uint64(len(raw)))
	for _, e := range raw {
		b = appendEntry(b, e)
	}
	return b
}

func appendEntry(b []byte, e Entry) []byte {
	b = binary.AppendUvarint(b, e.Seq)
	b = binary.AppendVarint(b, e.Timestamp)
	return binary.AppendVarint(b, e.Value)
}

func readEntry(r *binread.Reader) Entry {
	return Entry{Seq: r.Uvarint(), Timestamp: r.Varint(), Value: r.Varint()}
}

func readRaw(r *binread.Reader) []Entry {
	n := r.Count(3) // an entry takes at least three bytes
	if n == 0 {
		return nil
	}
	raw := make([]Entry, n)
	for i := range raw {
		raw[i] = readEntry(r)
	}
	return raw
}

// Restore loads one encoded bucket of series k, whose meter aggregates
// under mode m, as TakeDirty produced it. Restoring the same bucket twice
// is an error; buckets may come in any order. A bucket of a day that a
// stored block restored before it holds (RestoreBlock) is skipped.
func (t *Table) Restore(k Key, m Mode, start int64, day bool, state []byte) error {
	sh, hash := t.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s := sh.seriesLocked(hash, k)
	if f := s.fz; f != nil && start < f.end {
		if f.saved > 0 && start < spanOf(f.blocks[f.saved-1].first)+blockSpan {
			return nil // a day of a stored block (RestoreBlock), which holds it
		}
		return fmt.Errorf("%w: record at %d restored into a frozen day (frozen before %d)", ErrCorrupt, start, s.fz.end)
	}
	r := binread.New(state)
	if day {
		if start%daySecs != 0 {
			return fmt.Errorf("%w: day record at %d", ErrCorrupt, start)
		}
		d := s.day(start, true, sh)
		if len(d.rawEntries(&sh.ar)) > 0 {
			return fmt.Errorf("%w: day %d restored twice", ErrCorrupt, start)
		}
		if raw := readRaw(&r); len(raw) > 0 {
			d.ext(sh).raw = raw
			sh.n.raw += int64(len(raw))
		}
		if r.Bad() || r.Len() > 0 {
			return fmt.Errorf("%w: day record at %d", ErrCorrupt, start)
		}
		return nil
	}
	if start%hourSecs != 0 {
		return fmt.Errorf("%w: hour record at %d", ErrCorrupt, start)
	}
	if s.hour(start, false, sh) != nil {
		return fmt.Errorf("%w: hour %d restored twice", ErrCorrupt, start)
	}
	h := s.hour(start, true, sh)
	n := r.Count(7)  // a minute cell takes at least seven bytes
	var buf [60]Cell // a minute's cell each, in minute order
	cells := buf[:0]
	var hc Cell
	for i := 0; i < n && !r.Bad(); i++ {
		off, mc := readMinuteCell(&r)
		if off >= 60 || mc.Count <= 0 || h.present&minuteMask >= 1<<off {
			r.Fail() // out of range, empty, or not after the previous minute
			break
		}
		cells = append(cells, mc)
		h.present |= 1 << off
		hc.merge(mc)
	}
	h.count = hc.Count
	h.setSum(hc.Sum, sh)
	if m.Last && hc.Count > 0 {
		h.ext(sh).last = hc.Last
	}
	if len(cells) > 1 {
		ms := h.newCells(len(cells), &sh.ar)
		for i, c := range cells {
			ms[i] = minuteCell{Count: c.Count, Sum: c.Sum}
		}
		sh.n.minuteSlots += int64(cap(ms))
	}
	sh.n.minutes += int64(len(cells))
	if raw := readRaw(&r); len(raw) > 0 {
		h.ext(sh).raw = raw
	}
	if r.Bad() || r.Len() > 0 {
		return fmt.Errorf("%w: hour record at %d", ErrCorrupt, start)
	}
	sh.n.raw += int64(len(h.rawEntries(&sh.ar)))
	dstart := floorTo(start, daySecs)
	d := s.day(dstart, true, sh)
	d.merge(h.cell(&sh.ar), m.Last, sh)
	s.syncDay(dstart, d)
	return nil
}

// readMinuteCell reads one minute cell of an encoded hour (encodeHour):
// its minute's offset in the hour and the cell.
func readMinuteCell(r *binread.Reader) (off uint64, c Cell) {
	off = r.Uvarint()
	c.Count = int64(r.Uvarint())
	c.Sum.Hi = r.Varint()
	c.Sum.Lo = r.Uvarint()
	c.Last = readEntry(r)
	return off, c
}
