package store

import (
	"encoding/binary"
	"fmt"
)

// Log record layout (see FORMAT.md): a kind byte, then
//
//	kind 1 (events): uvarint n, uvarint firstSeq, varint received, then n times:
//	    uvarint seq-firstSeq, uvarint meter, string customer, string identifier,
//	    varint value, varint timestamp-received
//	kind 2 (cancels): uvarint n, then n times: uvarint seq, varint received,
//	    uvarint meter, string customer, varint value, varint timestamp
//
// where string is a uvarint length and the bytes.

const (
	kindEvents  = 1
	kindCancels = 2
)

// appendGroup encodes g. A group holds events or cancellations, not both.
func appendGroup(b []byte, g *Group) []byte {
	if len(g.Cancels) > 0 {
		b = append(b, kindCancels)
		b = binary.AppendUvarint(b, uint64(len(g.Cancels)))
		for _, c := range g.Cancels {
			b = binary.AppendUvarint(b, c.Seq)
			b = binary.AppendVarint(b, c.Received)
			b = binary.AppendUvarint(b, c.Meter)
			b = appendString(b, c.Customer)
			b = binary.AppendVarint(b, c.Value)
			b = binary.AppendVarint(b, c.Timestamp)
		}
		return b
	}
	b = append(b, kindEvents)
	b = binary.AppendUvarint(b, uint64(len(g.Events)))
	if len(g.Events) == 0 {
		return b
	}
	first, received := g.Events[0].Seq, g.Events[0].Received
	b = binary.AppendUvarint(b, first)
	b = binary.AppendVarint(b, received)
	for i := range g.Events {
		e := &g.Events[i]
		b = binary.AppendUvarint(b, e.Seq-first)
		b = binary.AppendUvarint(b, e.Meter)
		b = appendString(b, e.Customer)
		b = appendString(b, e.Identifier)
		b = binary.AppendVarint(b, e.Value)
		b = binary.AppendVarint(b, e.Timestamp-received)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads the primitives of a record, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or malformed record", ErrCorrupt)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// count reads an element count, refusing counts the remaining bytes
// cannot hold (each element takes at least min bytes).
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if n > uint64(len(d.b)/min) {
		d.fail()
		return 0
	}
	return int(n)
}

// decodeGroup decodes a log record. The result shares nothing with b.
func decodeGroup(b []byte) (*Group, error) {
	d := decoder{b: b}
	g := &Group{}
	switch d.byte() {
	case kindEvents:
		n := d.count(6)
		if n == 0 {
			break
		}
		first, received := d.uvarint(), d.varint()
		g.Events = make([]Event, n)
		for i := range g.Events {
			e := &g.Events[i]
			e.Seq = first + d.uvarint()
			e.Meter = d.uvarint()
			e.Customer = d.string()
			e.Identifier = d.string()
			e.Value = d.varint()
			e.Timestamp = received + d.varint()
			e.Received = received
		}
	case kindCancels:
		n := d.count(6)
		if n == 0 {
			break
		}
		g.Cancels = make([]Cancel, n)
		for i := range g.Cancels {
			c := &g.Cancels[i]
			c.Seq = d.uvarint()
			c.Received = d.varint()
			c.Meter = d.uvarint()
			c.Customer = d.string()
			c.Value = d.varint()
			c.Timestamp = d.varint()
		}
	default:
		d.fail()
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	if d.err != nil {
		return nil, d.err
	}
	return g, nil
}

// scanIdentifiers calls fn with the receipt time and identifier of every
// event of an events record, without allocating.
func scanIdentifiers(b []byte, fn func(received int64, id []byte)) error {
	d := decoder{b: b}
	if d.byte() != kindEvents {
		d.fail()
		return d.err
	}
	n := d.count(6)
	if n == 0 {
		return d.err
	}
	d.uvarint()
	received := d.varint()
	for range n {
		d.uvarint()   // seq
		d.uvarint()   // meter
		d.skipBytes() // customer
		id := d.bytes()
		d.varint() // value
		d.varint() // timestamp
		if d.err != nil {
			return d.err
		}
		fn(received, id)
	}
	if len(d.b) != 0 {
		d.fail()
	}
	return d.err
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	b := d.b[:n:n]
	d.b = d.b[n:]
	return b
}

func (d *decoder) skipBytes() { d.bytes() }
