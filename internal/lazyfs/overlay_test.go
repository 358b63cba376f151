package lazyfs

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// memFile is a backing file in memory.
type memFile struct{ data []byte }

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.data)) {
		return 0, io.EOF
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.data)) {
		m.data = append(m.data, make([]byte, end-int64(len(m.data)))...)
	}
	return copy(m.data[off:], p), nil
}

func (m *memFile) Truncate(size int64) error {
	if size <= int64(len(m.data)) {
		m.data = m.data[:size]
	} else {
		m.data = append(m.data, make([]byte, size-int64(len(m.data)))...)
	}
	return nil
}

func resize(b []byte, size int64) []byte {
	if size <= int64(len(b)) {
		return b[:size]
	}
	return append(b, make([]byte, size-int64(len(b)))...)
}

// TestOverlayModel runs random writes, truncations, syncs and power cuts
// against the overlay and against a model holding two byte slices, the
// file as readers see it and the file as synced: reads must see the first,
// the backing file must hold the second after every sync and cut.
func TestOverlayModel(t *testing.T) {
	for seed := range uint64(100) {
		rng := rand.New(rand.NewPCG(seed, 1))
		initial := make([]byte, rng.IntN(3*BlockSize))
		for i := range initial {
			initial[i] = byte(rng.IntN(256))
		}
		back := &memFile{data: bytes.Clone(initial)}
		o := newOverlay(int64(len(initial)))
		seen, synced := bytes.Clone(initial), bytes.Clone(initial)
		var log []string
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d after %v: %s", seed, log, fmt.Sprintf(format, args...))
		}
		for range 60 {
			switch op := rng.IntN(10); {
			case op < 5: // write
				off := int64(rng.IntN(4 * BlockSize))
				data := make([]byte, 1+rng.IntN(BlockSize+100))
				for i := range data {
					data[i] = byte(rng.IntN(256))
				}
				log = append(log, fmt.Sprintf("write %d+%d", off, len(data)))
				if err := o.write(back, data, off); err != nil {
					fail("write: %v", err)
				}
				if end := off + int64(len(data)); end > int64(len(seen)) {
					seen = resize(seen, end)
				}
				copy(seen[off:], data)
			case op < 7: // truncate
				size := int64(rng.IntN(5 * BlockSize))
				log = append(log, fmt.Sprintf("truncate %d", size))
				o.truncate(size)
				seen = resize(seen, size)
			case op < 8: // sync
				log = append(log, "sync")
				if _, err := o.sync(back); err != nil {
					fail("sync: %v", err)
				}
				synced = bytes.Clone(seen)
				if !bytes.Equal(back.data, synced) {
					fail("after sync the backing file holds %d bytes, want %d (or differs)", len(back.data), len(synced))
				}
			case op < 9: // power cut, nothing kept
				log = append(log, "cut")
				if _, _, err := o.drop(back, nil); err != nil {
					fail("drop: %v", err)
				}
				seen = bytes.Clone(synced)
				if !bytes.Equal(back.data, synced) {
					fail("after the cut the backing file differs from what was synced")
				}
			default: // power cut, some blocks written back
				log = append(log, "torn cut")
				keepSet := map[int64]bool{}
				keep := func(off int64) bool {
					k := rng.IntN(2) == 0
					keepSet[off] = k
					return k
				}
				// The model: kept blocks of seen, within the synced size.
				want := bytes.Clone(synced)
				before := bytes.Clone(seen)
				if _, _, err := o.drop(back, keep); err != nil {
					fail("drop: %v", err)
				}
				for off, k := range keepSet {
					if k && off < int64(len(want)) {
						end := min(off+BlockSize, int64(len(want)), int64(len(before)))
						copy(want[off:end], before[off:end])
					}
				}
				if !bytes.Equal(back.data, want) {
					fail("after the torn cut the backing file differs from the model")
				}
				synced, seen = bytes.Clone(want), bytes.Clone(want)
			}
			if o.size != int64(len(seen)) {
				fail("size %d, want %d", o.size, len(seen))
			}
			// Read all of it, in random pieces.
			got := make([]byte, 0, len(seen))
			for off := int64(0); ; {
				buf := make([]byte, 1+rng.IntN(2*BlockSize))
				n, err := o.read(back, buf, off)
				if err != nil {
					fail("read: %v", err)
				}
				if n == 0 {
					break
				}
				got = append(got, buf[:n]...)
				off += int64(n)
			}
			if !bytes.Equal(got, seen) {
				i := 0
				for i < min(len(got), len(seen)) && got[i] == seen[i] {
					i++
				}
				fail("read %d bytes, want %d; first difference at %d", len(got), len(seen), i)
			}
		}
	}
}
