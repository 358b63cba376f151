package store

import (
	"encoding/binary"

	"github.com/meterdb/meterdb/internal/binread"
	"github.com/meterdb/meterdb/internal/idhash"
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
	// kindIndexed (format 3) is an events record preceded by the 64-bit
	// hashes of its identifiers: kind 3, uvarint n, n 8-byte big-endian
	// keyed hashes (internal/idhash, under the file's key) in event order, a 4-byte CRC-32C of "ids\0" and the
	// hashes, then the kind 1 record of the same events.
	kindIndexed = 3
)

// scopeIDs is the checksum scope of an indexed record's hashes.
var scopeIDs = newScope("ids")

// isEvents reports whether the log record v holds events.
func isEvents(v []byte) bool { return len(v) > 0 && (v[0] == kindEvents || v[0] == kindIndexed) }

// splitIndexed returns the hash table and the kind 1 record of an indexed
// record b; a record of another kind is returned whole with no table.
func splitIndexed(b []byte) (hashes, rest []byte, err error) {
	if len(b) == 0 || b[0] != kindIndexed {
		return nil, b, nil
	}
	d := binread.New(b[1:])
	n := d.Count(8)
	if d.Bad() {
		return nil, nil, errMalformed
	}
	off := 1 + (len(b) - 1 - d.Len())
	if len(b)-off < 8*n+crcLen+1 {
		return nil, nil, errMalformed
	}
	hashes, rest = b[off:off+8*n], b[off+8*n+crcLen:]
	if binary.BigEndian.Uint32(b[off+8*n:]) != scopeIDs.sum(nil, hashes) {
		return nil, nil, errHashesChecksum
	}
	if rest[0] != kindEvents {
		return nil, nil, errMalformed
	}
	return hashes, rest, nil
}

// mayHold reports whether an indexed record's hash table holds h.
func mayHold(hashes []byte, h uint64) bool {
	for i := 0; i+8 <= len(hashes); i += 8 {
		if binary.BigEndian.Uint64(hashes[i:]) == h {
			return true
		}
	}
	return false
}

// appendGroup encodes g, its identifiers hashed under key. A group holds
// events or cancellations, not both.
func appendGroup(b []byte, g *Group, key idhash.Key) []byte {
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
	if len(g.Events) > 0 {
		b = append(b, kindIndexed)
		b = binary.AppendUvarint(b, uint64(len(g.Events)))
		start := len(b)
		for i := range g.Events {
			b = binary.BigEndian.AppendUint64(b, idhash.Sum(key, g.Events[i].Identifier))
		}
		b = binary.BigEndian.AppendUint32(b, scopeIDs.sum(nil, b[start:]))
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

// finish reports errMalformed unless r read well and to the end.
func finish(r *binread.Reader) error {
	if r.Bad() || r.Len() != 0 {
		return errMalformed
	}
	return nil
}

// decodeGroup decodes a log record. The result shares nothing with b.
func decodeGroup(b []byte) (*Group, error) {
	_, b, err := splitIndexed(b)
	if err != nil {
		return nil, err
	}
	d := binread.New(b)
	g := &Group{}
	switch d.Byte() {
	case kindEvents:
		n := d.Count(6)
		if n == 0 {
			break
		}
		first, received := d.Uvarint(), d.Varint()
		g.Events = make([]Event, n)
		for i := range g.Events {
			e := &g.Events[i]
			e.Seq = first + d.Uvarint()
			e.Meter = d.Uvarint()
			e.Customer = string(d.Bytes())
			e.Identifier = string(d.Bytes())
			e.Value = d.Varint()
			e.Timestamp = received + d.Varint()
			e.Received = received
		}
	case kindCancels:
		n := d.Count(6)
		if n == 0 {
			break
		}
		g.Cancels = make([]Cancel, n)
		for i := range g.Cancels {
			c := &g.Cancels[i]
			c.Seq = d.Uvarint()
			c.Received = d.Varint()
			c.Meter = d.Uvarint()
			c.Customer = string(d.Bytes())
			c.Value = d.Varint()
			c.Timestamp = d.Varint()
		}
	default:
		d.Fail()
	}
	if err := finish(&d); err != nil {
		return nil, err
	}
	return g, nil
}

// scanIdentifiers calls fn with the receipt time and identifier of every
// event of an events record, without allocating.
func scanIdentifiers(b []byte, fn func(received int64, id []byte)) error {
	_, b, err := splitIndexed(b)
	if err != nil {
		return err
	}
	d := binread.New(b)
	if d.Byte() != kindEvents {
		return errMalformed
	}
	n := d.Count(6)
	if n > 0 {
		d.Uvarint() // first seq
		received := d.Varint()
		for range n {
			d.Uvarint() // seq
			d.Uvarint() // meter
			d.Bytes()   // customer
			id := d.Bytes()
			d.Varint() // value
			d.Varint() // timestamp
			if d.Bad() {
				return errMalformed
			}
			fn(received, id)
		}
	}
	return finish(&d)
}

// findEvent returns the event with identifier id of an events record,
// scanning it without decoding the others: nothing is allocated unless
// the event is found (its customer is copied). The result has no
// Identifier: the caller knows it.
func findEvent(b []byte, id string) (Event, bool, error) {
	_, b, err := splitIndexed(b)
	if err != nil {
		return Event{}, false, err
	}
	d := binread.New(b)
	if d.Byte() != kindEvents {
		return Event{}, false, nil
	}
	n := d.Count(6)
	if n == 0 {
		return Event{}, false, finish(&d)
	}
	first, received := d.Uvarint(), d.Varint()
	for range n {
		seq := first + d.Uvarint()
		m := d.Uvarint()
		customer := d.Bytes()
		ident := d.Bytes()
		value := d.Varint()
		ts := received + d.Varint()
		if d.Bad() {
			return Event{}, false, errMalformed
		}
		if string(ident) == id {
			return Event{Seq: seq, Meter: m, Customer: string(customer), Value: value, Timestamp: ts, Received: received}, true, nil
		}
	}
	return Event{}, false, finish(&d)
}
