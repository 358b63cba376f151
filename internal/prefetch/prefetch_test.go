package prefetch

import (
	"testing"
	"unsafe"
)

// Line is a hint: any address is accepted, none is read or changed.
func TestLine(t *testing.T) {
	b := make([]byte, 1<<20)
	for i := 0; i < len(b); i += 4096 {
		Line(unsafe.Pointer(&b[i]))
	}
	Line(nil)
	for i, v := range b {
		if v != 0 {
			t.Fatalf("byte %d is %d after prefetching", i, v)
		}
	}
}
