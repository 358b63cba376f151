package dedupe

import (
	"cmp"
	"encoding/binary"
	"math"
	"slices"
	"sync"
)

// Loader adds many identifiers at once, as Open does when it rebuilds the
// index from the log: it cuts each shard's identifiers into epochs of
// equal counts, sizes each epoch's table for exactly its identifiers, and
// fills the shards in parallel. Queued entries live in fixed-size chunks,
// so queueing never copies what is queued. Several Loaders can queue in
// parallel (one goroutine each) and be joined with Merge. Use it before
// the Index is shared.
type Loader struct {
	x      *Index
	chunks [1 << shardBits][][]loadEntry
}

type loadEntry struct {
	h   uint64
	loc uint64
}

const loadChunk = 4096 // entries per chunk

// LoadEpochs is the number of epochs a Loader cuts a shard's identifiers
// into (the last one is left room to fill).
const LoadEpochs = 8

// Loader returns a new Loader for x.
func (x *Index) Loader() *Loader { return &Loader{x: x} }

// Add queues id at loc. id is not retained. Identifiers are expected in
// location order, as the log replays them.
func (l *Loader) Add(id []byte, loc uint64) {
	h := hashOf(l.x, id)
	s := h >> (64 - shardBits)
	cs := l.chunks[s]
	if n := len(cs); n == 0 || len(cs[n-1]) == cap(cs[n-1]) {
		cs = append(cs, make([]loadEntry, 0, loadChunk))
		l.chunks[s] = cs
	}
	c := &cs[len(cs)-1]
	*c = append(*c, loadEntry{h: h, loc: loc})
}

// Merge queues everything o queued after what l queued (o's locations
// follow l's), and empties o.
func (l *Loader) Merge(o *Loader) {
	for s := range l.chunks {
		l.chunks[s] = append(l.chunks[s], o.chunks[s]...)
		o.chunks[s] = nil
	}
}

// Finish inserts everything queued, using up to workers goroutines.
func (l *Loader) Finish(workers int) {
	var wg sync.WaitGroup
	next := make(chan int, len(l.chunks))
	for i := range l.chunks {
		next <- i
	}
	close(next)
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				sh := &l.x.shards[i]
				sh.mu.Lock()
				l.x.loadLocked(sh, l.chunks[i])
				sh.mu.Unlock()
				l.chunks[i] = nil
			}
		}()
	}
	wg.Wait()
}

// loadLocked inserts the entries of chunks into sh.
func (x *Index) loadLocked(sh *shard, chunks [][]loadEntry) {
	minLoc := x.minLoc.Load()
	var es []loadEntry
	if len(chunks) == 1 {
		es = chunks[0]
	} else {
		n := 0
		for _, c := range chunks {
			n += len(c)
		}
		es = make([]loadEntry, 0, n)
		for _, c := range chunks {
			es = append(es, c...)
		}
	}
	k := 0
	for _, e := range es {
		if e.loc >= minLoc {
			es[k] = e
			k++
		}
	}
	es = es[:k]
	if len(es) == 0 {
		return
	}
	if len(sh.epochs) > 0 {
		for _, e := range es {
			x.insertLocked(sh, e.h, e.loc)
		}
		return
	}
	if !slices.IsSortedFunc(es, func(a, b loadEntry) int { return cmp.Compare(a.loc, b.loc) }) {
		slices.SortStableFunc(es, func(a, b loadEntry) int { return cmp.Compare(a.loc, b.loc) })
	}
	size := max(x.minEpoch, (len(es)+LoadEpochs-1)/LoadEpochs)
	sh.prevTotal = size
	n := x.epoch.Load()
	for len(es) > 0 {
		c := min(size, len(es))
		chunk := es[:c]
		es = es[c:]
		first, last := chunk[0].loc, chunk[c-1].loc
		var e *epoch
		if len(es) > 0 {
			// A closed epoch: a table for exactly its identifiers, offsets
			// for exactly its locations.
			e = newEpoch(0, first, shiftFor(last-first), offBits, c)
		} else {
			// The epoch being filled: room for a full epoch or a quarter
			// more, and offsets for twice the locations per identifier.
			target := max(size, c+c/4+16)
			e = newEpoch(n, first, spanShift(first, last, c, target), offBits, target)
		}
		for _, le := range chunk {
			e.insert(le.h, le.loc)
		}
		sh.epochs = append(sh.epochs, e)
	}
}

// LoadPart is one epoch of a planned load: the identifiers of the
// locations [First, Last], Count of them.
type LoadPart struct {
	First, Last uint64
	Count       int
}

// PlannedLoader rebuilds the index from the hashes of the identifiers that
// the log keeps (their keyed hash, store format 3), when the number of
// identifiers in each location range is known beforehand (from the log
// records' headers): every part becomes one epoch in every shard.
//
// A part is loaded in two passes over its records and a build: Count
// counts its identifiers per shard; Fill sorts them by shard into one
// buffer of 8 bytes per identifier (the slot and the hash bits that
// choose its bucket), reused by the next part; Build fills each shard's
// table, sized for exactly its identifiers, from that shard's run of the
// buffer, one table at a time, so that the inserts hit a table that fits
// in the cache. Each part is loaded by one goroutine at a time; different
// parts can be loaded in parallel. Finish hands the epochs to the shards.
// Use it before the Index is shared, on an empty Index.
type PlannedLoader struct {
	x     *Index
	parts []LoadPart
	full  int    // identifiers of the largest part
	n     uint64 // the epoch number of the last part
	loads []partLoad
	bufs  sync.Pool // of *[]uint64: the sort buffers of finished parts
}

// partLoad is the state of one part's load.
type partLoad struct {
	counts [1 << shardBits]int // identifiers per shard (Count)
	// Set by the first Fill: the tables, and the buffer with each shard's
	// run, next[s] being where shard s's next identifier goes and end[s]
	// where its run ends; first and last are each shard's smallest and
	// greatest location.
	epochs      *[1 << shardBits]*epoch
	buf         *[]uint64
	next, end   [1 << shardBits]int
	first, last [1 << shardBits]uint64
}

// PlannedLoader returns a loader for parts, which must be in location
// order and not overlap. The last part is the epoch new identifiers fill
// after the load: it is sized for a full part, with offsets for twice its
// locations per identifier.
func (x *Index) PlannedLoader(parts []LoadPart) *PlannedLoader {
	l := &PlannedLoader{x: x, parts: parts, n: x.epoch.Load(), loads: make([]partLoad, len(parts))}
	for _, p := range parts {
		l.full = max(l.full, p.Count)
	}
	return l
}

// Count counts identifiers of part i: hashes holds their keyed hashes
// (under the index's Key), 8 bytes each, big-endian, as a format 3 log record keeps them.
// Every identifier that Fill will add to part i must be counted first.
// hashes is not retained.
func (l *PlannedLoader) Count(i int, hashes []byte) {
	c := &l.loads[i].counts
	for k := 0; k+8 <= len(hashes); k += 8 {
		c[binary.BigEndian.Uint64(hashes[k:])>>(64-shardBits)]++
	}
}

// Fill adds the identifiers of part i whose hashes are hashes (as for
// Count), found at loc, in location order. The first Fill of a part sizes
// its tables from the counts. hashes is not retained.
func (l *PlannedLoader) Fill(i int, hashes []byte, loc uint64) {
	pl := &l.loads[i]
	if pl.epochs == nil {
		l.start(i)
	}
	buf := *pl.buf
	for k := 0; k+8 <= len(hashes); k += 8 {
		h := binary.BigEndian.Uint64(hashes[k:])
		s := h >> (64 - shardBits)
		e := pl.epochs[s]
		if pl.next[s] == pl.end[s] {
			// More than Count saw: straight into the table.
			e.insert(h, loc)
			continue
		}
		if pl.next[s] == pl.end[s]-pl.counts[s] {
			pl.first[s] = loc
		}
		pl.last[s] = loc
		off := (loc - e.base) >> e.shift
		buf[pl.next[s]] = uint64(uint32(h)) | uint64(tagOf(h, offBits))<<32 | off<<(32+tagBits)
		pl.next[s]++
	}
}

// start sizes the tables of part i and gives it a buffer with one run per
// shard: closed epochs for exactly their identifiers; the last part's
// with room to fill.
func (l *PlannedLoader) start(i int) {
	p, pl, last := l.parts[i], &l.loads[i], i == len(l.parts)-1
	pl.epochs = new([1 << shardBits]*epoch)
	total := 0
	for s, count := range pl.counts {
		pl.next[s] = total
		total += count
		pl.end[s] = total
		switch {
		case !last:
			pl.epochs[s] = newEpoch(0, p.First, shiftFor(p.Last-p.First), offBits, count)
		default:
			// The epoch being filled: room for a shard's share of a full
			// part or a quarter more, offsets for twice its locations per
			// identifier.
			mean := float64(l.full) / (1 << shardBits)
			target := max(l.x.minEpoch, count+count/4+16, int(mean+2*math.Sqrt(mean))+16)
			span := 2*(p.Last-p.First+1)*uint64(target)/uint64(max(1, count)) + 1024
			pl.epochs[s] = newEpoch(l.n, p.First, shiftFor(span), offBits, target)
		}
	}
	pl.buf, _ = l.bufs.Get().(*[]uint64)
	if pl.buf == nil {
		pl.buf = new([]uint64)
	}
	if cap(*pl.buf) < total {
		*pl.buf = make([]uint64, total)
	}
	*pl.buf = (*pl.buf)[:total]
}

// Build fills the tables of part i from what Fill added, one shard at a
// time, and frees the part's buffer for the next part. A part is built
// once, after its last Fill.
func (l *PlannedLoader) Build(i int) {
	pl := &l.loads[i]
	if pl.epochs == nil {
		l.start(i)
	}
	buf := *pl.buf
	for s, e := range pl.epochs {
		run := buf[pl.end[s]-pl.counts[s] : pl.next[s]]
		if len(run) == 0 {
			continue
		}
		if e.count == 0 {
			e.first, e.last = pl.first[s], pl.last[s]
		} else {
			e.first, e.last = min(e.first, pl.first[s]), max(e.last, pl.last[s])
		}
		for _, v := range run {
			e.place(uint32(v), uint32(v>>32)&(1<<tagBits-1), uint32(v>>(32+tagBits)))
		}
	}
	l.bufs.Put(pl.buf)
	pl.buf = nil
}

// Finish builds the parts not built yet and hands the epochs to the
// shards. A shard without identifiers in a part gets no table for it,
// except in the last part, which new identifiers fill.
func (l *PlannedLoader) Finish() {
	for i := range l.loads {
		if l.loads[i].epochs == nil || l.loads[i].buf != nil {
			l.Build(i)
		}
	}
	for s := range l.x.shards {
		sh := &l.x.shards[s]
		sh.mu.Lock()
		for i := range l.parts {
			if e := l.loads[i].epochs[s]; e.count > 0 || i == len(l.parts)-1 {
				sh.epochs = append(sh.epochs, e)
			}
		}
		sh.prevTotal = max(sh.prevTotal, l.full>>shardBits)
		sh.mu.Unlock()
	}
	l.loads = nil
}
