package lazyfs

import (
	"errors"
	"io"
	"maps"
	"math"
	"slices"
)

// BlockSize is the unit in which the overlay keeps unsynced data, and in
// which a partial power cut (FS.PowerCutKeeping) decides what reached the
// disk: a disk sector of 4 KiB, which is also bbolt's page size here.
const BlockSize = 4096

const noTrunc = math.MaxInt64

// backing is what the overlay needs of a backing file: os.File has it.
type backing interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
}

// overlay is what a file holds beyond its backing file: the blocks written
// since the last sync, the size readers see, and a shrink not yet synced.
// The backing file holds exactly what was synced; reads see the overlay
// over it. The zero value is not usable: see newOverlay.
type overlay struct {
	size    int64            // the size readers see
	durable int64            // the size of the backing file (what was synced)
	trunc   int64            // backing bytes at or past trunc read as zeros: a shrink not yet synced, else noTrunc
	blocks  map[int64][]byte // written blocks by index, BlockSize bytes each, zero past size
}

func newOverlay(size int64) *overlay {
	return &overlay{size: size, durable: size, trunc: noTrunc, blocks: map[int64][]byte{}}
}

// dirty reports whether anything was written, truncated or extended since
// the last sync.
func (o *overlay) dirty() bool {
	return len(o.blocks) > 0 || o.trunc != noTrunc || o.size != o.durable
}

// backingBlock reads block i of the backing file as it looks through the
// overlay's pending shrink: zeros past the backing file's end and past trunc.
func (o *overlay) backingBlock(b backing, i int64, buf []byte) error {
	clear(buf)
	off := i * BlockSize
	limit := min(o.durable, o.trunc)
	if off >= limit {
		return nil
	}
	n := min(int64(BlockSize), limit-off)
	if _, err := b.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// read fills dest from off as a reader of the file sees it and returns
// the number of bytes read: short at the end of the file.
func (o *overlay) read(b backing, dest []byte, off int64) (int, error) {
	if off >= o.size {
		return 0, nil
	}
	n := int(min(int64(len(dest)), o.size-off))
	var tmp []byte
	for done := 0; done < n; {
		pos := off + int64(done)
		i, in := pos/BlockSize, int(pos%BlockSize)
		chunk := min(BlockSize-in, n-done)
		if blk, ok := o.blocks[i]; ok {
			copy(dest[done:done+chunk], blk[in:])
		} else {
			if tmp == nil {
				tmp = make([]byte, BlockSize)
			}
			if err := o.backingBlock(b, i, tmp); err != nil {
				return done, err
			}
			copy(dest[done:done+chunk], tmp[in:])
		}
		done += chunk
	}
	return n, nil
}

// write puts data at off into the overlay, growing the file if it ends
// past its size.
func (o *overlay) write(b backing, data []byte, off int64) error {
	for done := 0; done < len(data); {
		pos := off + int64(done)
		i, in := pos/BlockSize, int(pos%BlockSize)
		chunk := min(BlockSize-in, len(data)-done)
		blk, ok := o.blocks[i]
		if !ok {
			blk = make([]byte, BlockSize)
			if in != 0 || chunk != BlockSize {
				// Past the size, this reads zeros: a shrink set trunc.
				if err := o.backingBlock(b, i, blk); err != nil {
					return err
				}
			}
			o.blocks[i] = blk
		}
		copy(blk[in:], data[done:done+chunk])
		done += chunk
	}
	o.size = max(o.size, off+int64(len(data)))
	return nil
}

// truncate sets the size: a shrink drops what lies past it (and hides the
// backing file's bytes past it until the next sync), a growth reads as
// zeros.
func (o *overlay) truncate(size int64) {
	if size < o.size {
		for i, blk := range o.blocks {
			switch start := i * BlockSize; {
			case start >= size:
				delete(o.blocks, i)
			case start+BlockSize > size:
				clear(blk[size-start:])
			}
		}
		o.trunc = min(o.trunc, size)
	}
	o.size = size
}

// sync writes the overlay to the backing file (the caller then fsyncs it)
// and empties it. It returns the bytes written.
func (o *overlay) sync(b backing) (int64, error) {
	if o.trunc < o.durable {
		if err := b.Truncate(o.trunc); err != nil {
			return 0, err
		}
		o.durable = o.trunc
	}
	var written int64
	for _, i := range slices.Sorted(maps.Keys(o.blocks)) {
		start := i * BlockSize
		n := min(int64(BlockSize), o.size-start)
		if n <= 0 {
			continue
		}
		if _, err := b.WriteAt(o.blocks[i][:n], start); err != nil {
			return written, err
		}
		written += n
		o.durable = max(o.durable, start+n)
	}
	if o.durable != o.size {
		if err := b.Truncate(o.size); err != nil {
			return written, err
		}
	}
	o.durable, o.trunc = o.size, noTrunc
	clear(o.blocks)
	return written, nil
}

// drop forgets the overlay, as a power cut does: the file is what was
// synced. Blocks for which keep returns true reached the disk anyway, as
// far as they lie within the synced size (a disk writes back cached blocks
// in any order, but the size is file system metadata that only a sync
// makes durable). It returns the bytes dropped and the bytes kept.
func (o *overlay) drop(b backing, keep func(off int64) bool) (dropped, kept int64, err error) {
	for _, i := range slices.Sorted(maps.Keys(o.blocks)) {
		start := i * BlockSize
		n := min(int64(BlockSize), o.size-start)
		if n <= 0 {
			continue
		}
		if keep != nil && keep(start) && start < o.durable {
			k := min(n, o.durable-start)
			if _, err := b.WriteAt(o.blocks[i][:k], start); err != nil {
				return dropped, kept, err
			}
			kept += k
			n -= k
		}
		dropped += n
	}
	o.size, o.trunc = o.durable, noTrunc
	clear(o.blocks)
	return dropped, kept, nil
}
