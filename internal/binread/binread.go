// Package binread reads the variable-length binary records that meterdb
// writes (log records, checkpoint records): bytes, uvarints, varints and
// length-prefixed byte strings, remembering the first malformation instead
// of failing each call.
package binread

import "encoding/binary"

// Reader reads from a byte slice. After the first malformed or truncated
// value every read returns a zero value and Bad reports true. The zero
// Reader reads nothing.
type Reader struct {
	b   []byte
	bad bool
}

// New returns a Reader of b.
func New(b []byte) Reader { return Reader{b: b} }

// Bad reports whether a read failed.
func (r *Reader) Bad() bool { return r.bad }

// Len returns the number of unread bytes.
func (r *Reader) Len() int { return len(r.b) }

// Fail marks the input malformed.
func (r *Reader) Fail() { r.bad, r.b = true, nil }

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if len(r.b) == 0 {
		r.Fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.Fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Varint reads a signed varint.
func (r *Reader) Varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.Fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Bytes reads a uvarint length and that many bytes. The result shares the
// input's memory.
func (r *Reader) Bytes() []byte {
	n := r.Uvarint()
	if n > uint64(len(r.b)) {
		r.Fail()
		return nil
	}
	b := r.b[:n:n]
	r.b = r.b[n:]
	return b
}

// Count reads an element count, refusing one that the unread bytes cannot
// hold when every element takes at least min bytes (min ≥ 1).
func (r *Reader) Count(min int) int {
	n := r.Uvarint()
	if n > uint64(len(r.b)/min) {
		r.Fail()
		return 0
	}
	return int(n)
}
