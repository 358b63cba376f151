package aggregate

// A shard's arena holds the arrays of minute cells and the bucket
// extensions of its series. A bucket names them by number (bucket.x), so
// that the hours arrays hold no pointer: the collector neither scans them
// nor marks an object per hour with several minutes, which for a table of
// millions of hours was most of its work. The minute cells live in a few
// large blocks and the extensions in one slice, both owned by the shard
// and guarded by its lock.
//
// Invariants:
//   - A cells number x (nonzero) names the array of minuteCaps[class]
//     cells at offset (x-1)&blockMask of block (x-1)>>blockShift. The
//     bucket (or its extension) that holds x is its only owner; the class
//     is kept beside it (the bucket's present bits 60-62).
//   - An array given back (releaseCells) is on its class's free list,
//     chained through its first cell's Count, and no bucket names it. An
//     array handed out is zeroed.
//   - An extension number x (nonzero) names exts[x-1]; a slot given back
//     is nil and on freeExts.
//
// Blocks never move. They are freed only when the shard's last series
// goes: until then, the memory of minute cells a shard once needed stays
// with it, reused by later arrays of the same class.
type arena struct {
	blocks   [][]minuteCell
	used     int                     // cells handed out of the last block
	free     [len(minuteCaps)]uint64 // per class, the first free array's number; 0: none
	exts     []*bucketExt
	freeExts []uint64 // numbers of nil slots of exts
	cells    int64    // cells in blocks, for Stats
	skipped  int64    // cells at the ends of full blocks, too few for the array that opened the next block
}

const (
	blockShift = 16 // a block holds at most 1<<blockShift cells
	blockMask  = 1<<blockShift - 1
	// The first block of a shard holds firstBlock cells, each next one
	// twice as many as the one before, up to maxBlock: a small table takes
	// little, a large one few blocks.
	firstBlock    = 256
	maxBlockShift = 4 // maxBlock is firstBlock<<maxBlockShift
	maxBlock      = firstBlock << maxBlockShift
)

// cellArray returns the array of minute cells numbered x, of its class's
// whole length.
func (a *arena) cellArray(x uint64, class int) []minuteCell {
	r := x - 1
	b := a.blocks[r>>blockShift]
	off := int(r & blockMask)
	n := minuteCaps[class]
	return b[off : off+n : off+n]
}

// allocCells returns the number of a zeroed array of minuteCaps[class]
// cells.
func (a *arena) allocCells(class int) uint64 {
	if x := a.free[class]; x != 0 {
		ms := a.cellArray(x, class)
		a.free[class] = uint64(ms[0].Count)
		clear(ms)
		return x
	}
	n := minuteCaps[class]
	k := len(a.blocks) - 1
	if k < 0 || a.used+n > len(a.blocks[k]) {
		if k >= 0 {
			a.skipped += int64(len(a.blocks[k]) - a.used)
		}
		size := maxBlock
		if k+1 < maxBlockShift { // the shift stays small: a shard may hold thousands of blocks
			size = firstBlock << (k + 1)
		}
		a.blocks = append(a.blocks, make([]minuteCell, size))
		a.cells += int64(size)
		k, a.used = k+1, 0
	}
	x := uint64(k)<<blockShift | uint64(a.used) + 1
	a.used += n
	return x
}

// releaseCells gives back the array numbered x, of class class.
func (a *arena) releaseCells(x uint64, class int) {
	a.cellArray(x, class)[0].Count = int64(a.free[class])
	a.free[class] = x
}

// ext returns the extension numbered x.
func (a *arena) ext(x uint64) *bucketExt { return a.exts[x-1] }

// newExt returns the number of a new empty extension.
func (a *arena) newExt() uint64 {
	if n := len(a.freeExts); n > 0 {
		x := a.freeExts[n-1]
		a.freeExts = a.freeExts[:n-1]
		a.exts[x-1] = new(bucketExt)
		return x
	}
	a.exts = append(a.exts, new(bucketExt))
	return uint64(len(a.exts))
}

// releaseExt gives back the extension numbered x.
func (a *arena) releaseExt(x uint64) {
	a.exts[x-1] = nil
	a.freeExts = append(a.freeExts, x)
}
