package dedupe

import (
	"hash/maphash"
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
			// The epoch being filled: room for a full epoch, and offsets for
			// twice the locations per identifier seen so far.
			span := (last - first + 1) * uint64(size) / uint64(c)
			e = newEpoch(n, first, shiftFor(2*span+1024), size)
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
