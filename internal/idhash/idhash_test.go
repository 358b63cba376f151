package idhash

import (
	"fmt"
	"testing"
)

// TestSipHashVector checks the rounds and the padding against the
// reference vectors of SipHash-2-4 (key 00..0f; messages 00, 00 01, ...),
// of which Sum is the 1-3 variant.
func TestSipHashVector(t *testing.T) {
	k := make([]byte, Size)
	for i := range k {
		k[i] = byte(i)
	}
	key, err := Parse(k)
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 64)
	for i := range msg {
		msg[i] = byte(i)
	}
	for n, want := range map[int]uint64{0: 0x726fdb47dd0e0e31, 7: 0xab0200f58b01d137, 8: 0x93f5f5799a932462, 15: 0xa129ca6149be45e5} {
		if got := sip(key, msg[:n], 2, 4); got != want {
			t.Errorf("SipHash-2-4 of %d bytes: %#x, want %#x", n, got, want)
		}
		if got := sip(key, string(msg[:n]), 2, 4); got != want {
			t.Errorf("SipHash-2-4 of %d bytes as a string: %#x, want %#x", n, got, want)
		}
	}
}

// TestKeyed checks that the hash depends on the key, and that a key
// survives Bytes and Parse.
func TestKeyed(t *testing.T) {
	a, b := New(), New()
	if a == b || a.IsZero() {
		t.Fatalf("two random keys: %v %v", a, b)
	}
	same := 0
	for i := range 1000 {
		id := fmt.Sprintf("id-%d", i)
		if Sum(a, id) == Sum(b, id) {
			same++
		}
		if Sum(a, id) != Sum(a, []byte(id)) {
			t.Fatalf("%q hashes differently as bytes", id)
		}
	}
	if same > 0 {
		t.Fatalf("%d of 1000 identifiers hash alike under two keys", same)
	}
	c, err := Parse(a.Bytes())
	if err != nil || c != a {
		t.Fatalf("Parse(Bytes()): %v %v", c, err)
	}
	if _, err := Parse(make([]byte, 15)); err != ErrKeySize {
		t.Fatalf("Parse of 15 bytes: %v", err)
	}
}

func BenchmarkSum36(b *testing.B) {
	k := New()
	id := "5f0c6a1e-8d2b-4c3f-9a7e-2b1d4e6f8a90"
	var h uint64
	for b.Loop() {
		h += Sum(k, id)
	}
	_ = h
}
