package dedupe

import (
	"hash/maphash"
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
	h := maphash.Bytes(l.x.seed, id)
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
	if !slices.IsSortedFunc(es, func(a, b loadEntry) int { return cmpLoc(a.loc, b.loc) }) {
		slices.SortStableFunc(es, func(a, b loadEntry) int { return cmpLoc(a.loc, b.loc) })
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
			e = newEpoch(0, first, shiftFor(last-first), c)
		} else {
			// The epoch being filled: room for a full epoch or a quarter
			// more, and offsets for twice the locations per identifier.
			target := max(size, c+c/4+16)
			span := (last - first + 1) * uint64(target) / uint64(c)
			e = newEpoch(n, first, shiftFor(2*span+1024), target)
		}
		for _, le := range chunk {
			e.insert(le.h, le.loc)
		}
		sh.epochs = append(sh.epochs, e)
	}
}

func cmpLoc(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// LoadPart is one epoch of a planned load: the identifiers of the
// locations [First, Last], Count of them.
type LoadPart struct {
	First, Last uint64
	Count       int
}

// PlannedLoader rebuilds the index from the log when the number of
// identifiers in each location range is known beforehand (from the log
// records' headers): every part becomes one epoch in every shard, sized
// for its share of the part. Add queues an identifier's hash and location
// in fixed-size chunks by part and shard; Finish fills each epoch's table
// from its queue, one table at a time per goroutine, so that the inserts
// hit a table that fits in the cache. Parts can be added in parallel,
// each by one goroutine at a time. Use it before the Index is shared, on
// an empty Index.
type PlannedLoader struct {
	x      *Index
	parts  []LoadPart
	full   int                             // identifiers of the largest part
	queued [][1 << shardBits][][]loadEntry // by part, then shard: chunks
}

// PlannedLoader returns a loader for parts, which must be in location
// order and not overlap. The last part is the epoch new identifiers fill
// after the load: it is sized for a full part, with offsets for twice its
// locations per identifier.
func (x *Index) PlannedLoader(parts []LoadPart) *PlannedLoader {
	l := &PlannedLoader{x: x, parts: parts, queued: make([][1 << shardBits][][]loadEntry, len(parts))}
	for _, p := range parts {
		l.full = max(l.full, p.Count)
	}
	return l
}

// Add queues id, found at loc within part i. id is not retained.
func (l *PlannedLoader) Add(i int, id []byte, loc uint64) {
	h := maphash.Bytes(l.x.seed, id)
	s := h >> (64 - shardBits)
	cs := l.queued[i][s]
	if n := len(cs); n == 0 || len(cs[n-1]) == cap(cs[n-1]) {
		cs = append(cs, make([]loadEntry, 0, loadChunk))
		l.queued[i][s] = cs
	}
	c := &cs[len(cs)-1]
	*c = append(*c, loadEntry{h: h, loc: loc})
}

// Finish builds every epoch on up to workers goroutines and hands the
// epochs to the shards. Parts without identifiers leave no table behind,
// except the last, which new identifiers fill.
func (l *PlannedLoader) Finish(workers int) {
	n := l.x.epoch.Load()
	built := make([][1 << shardBits]*epoch, len(l.parts))
	next := make(chan int, len(l.parts)<<shardBits)
	for t := range len(l.parts) << shardBits {
		next <- t
	}
	close(next)
	var wg sync.WaitGroup
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range next {
				i, s := t>>shardBits, t&(1<<shardBits-1)
				p, chunks := l.parts[i], l.queued[i][s]
				count := 0
				for _, c := range chunks {
					count += len(c)
				}
				if count == 0 && i < len(l.parts)-1 {
					continue
				}
				var e *epoch
				if i < len(l.parts)-1 {
					// A closed epoch: a table for exactly its identifiers.
					e = newEpoch(0, p.First, shiftFor(p.Last-p.First), count)
				} else {
					// The epoch being filled: room for a shard's share of a
					// full part or a quarter more, offsets for twice its
					// locations per identifier.
					mean := float64(l.full) / (1 << shardBits)
					target := max(l.x.minEpoch, count+count/4+16, int(mean+2*math.Sqrt(mean))+16)
					span := 2*(p.Last-p.First+1)*uint64(target)/uint64(max(1, count)) + 1024
					e = newEpoch(n, p.First, shiftFor(span), target)
				}
				for _, c := range chunks {
					for _, le := range c {
						e.insert(le.h, le.loc)
					}
				}
				l.queued[i][s] = nil
				built[i][s] = e
			}
		}()
	}
	wg.Wait()
	for s := range l.x.shards {
		sh := &l.x.shards[s]
		sh.mu.Lock()
		for i := range l.parts {
			if e := built[i][s]; e != nil {
				sh.epochs = append(sh.epochs, e)
			}
		}
		sh.prevTotal = max(sh.prevTotal, l.full>>shardBits)
		sh.mu.Unlock()
	}
	l.queued = nil
}
