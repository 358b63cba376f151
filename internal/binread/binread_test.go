package binread

import (
	"encoding/binary"
	"testing"
)

func TestReader(t *testing.T) {
	b := []byte{7}
	b = binary.AppendUvarint(b, 300)
	b = binary.AppendVarint(b, -5)
	b = binary.AppendUvarint(b, 3)
	b = append(b, "abc"...)
	b = binary.AppendUvarint(b, 2)
	r := New(b)
	if r.Byte() != 7 || r.Uvarint() != 300 || r.Varint() != -5 || string(r.Bytes()) != "abc" || r.Bad() {
		t.Fatal("well-formed input misread")
	}
	if n := r.Count(1); n != 0 || !r.Bad() {
		t.Fatalf("count 2 with no bytes left: %d, bad %v", n, r.Bad())
	}
	if r.Uvarint() != 0 || r.Len() != 0 {
		t.Fatal("reads after a failure must return zero")
	}
	for _, in := range [][]byte{{}, {0x80}, {5, 'a'}} {
		r := New(in)
		r.Bytes()
		if !r.Bad() {
			t.Fatalf("Bytes of %v did not fail", in)
		}
	}
}
