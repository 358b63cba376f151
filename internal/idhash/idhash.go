// Package idhash hashes event identifiers with a secret key: SipHash-1-3,
// a keyed hash built so that whoever does not know the key cannot find
// inputs that collide. The dedupe index places identifiers by this hash
// and the store keeps it of every event (format 3), so a client that sends
// identifiers made to collide under a hash everyone can compute gains
// nothing: it would have to know the key of the database it writes to.
//
// A Key is created at random with the database (store.DB keeps it in its
// file; an in-memory database draws one when it opens) and never leaves
// it. Sum is safe for concurrent use.
package idhash

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"math/bits"
)

// Size is the length of a key in bytes.
const Size = 16

// Key is a secret 128-bit hash key. The zero Key is valid but not secret;
// use New.
type Key struct{ k0, k1 uint64 }

// ErrKeySize reports a stored key of the wrong length.
var ErrKeySize = errors.New("idhash: key is not 16 bytes")

// New returns a random key.
func New() Key {
	var b [Size]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	k, _ := Parse(b[:])
	return k
}

// Parse returns the key whose bytes are b (Bytes' form).
func Parse(b []byte) (Key, error) {
	if len(b) != Size {
		return Key{}, ErrKeySize
	}
	return Key{binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])}, nil
}

// Bytes returns the key's 16 bytes.
func (k Key) Bytes() []byte {
	b := binary.LittleEndian.AppendUint64(make([]byte, 0, Size), k.k0)
	return binary.LittleEndian.AppendUint64(b, k.k1)
}

// IsZero reports whether k is the zero Key.
func (k Key) IsZero() bool { return k == Key{} }

// Sum returns the SipHash-1-3 of s under k: one compression round per
// 8-byte word, three finalization rounds.
func Sum[S string | []byte](k Key, s S) uint64 { return sip(k, s, 1, 3) }

// sip is SipHash-c-d.
func sip[S string | []byte](k Key, s S, c, d int) uint64 {
	v0 := k.k0 ^ 0x736f6d6570736575
	v1 := k.k1 ^ 0x646f72616e646f6d
	v2 := k.k0 ^ 0x6c7967656e657261
	v3 := k.k1 ^ 0x7465646279746573
	n := len(s)
	for len(s) >= 8 {
		m := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
			uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
		v3 ^= m
		for range c {
			v0, v1, v2, v3 = round(v0, v1, v2, v3)
		}
		v0 ^= m
		s = s[8:]
	}
	m := uint64(n) << 56
	for i := len(s) - 1; i >= 0; i-- {
		m |= uint64(s[i]) << (8 * uint(i))
	}
	v3 ^= m
	for range c {
		v0, v1, v2, v3 = round(v0, v1, v2, v3)
	}
	v0 ^= m
	v2 ^= 0xff
	for range d {
		v0, v1, v2, v3 = round(v0, v1, v2, v3)
	}
	return v0 ^ v1 ^ v2 ^ v3
}

// round is one SipRound.
func round(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13)
	v1 ^= v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16)
	v3 ^= v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21)
	v3 ^= v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17)
	v1 ^= v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}
