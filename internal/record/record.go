package record

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/meterdb/meterdb/internal/binread"
)

// Version is the format version this code writes and reads (FORMAT.md).
const Version = 1

// Kind says what a record holds.
type Kind byte

// Record kinds.
const (
	KindEvents      Kind = 1 // Events
	KindCancel      Kind = 2 // Cancel
	KindMeterCreate Kind = 3 // Meter: a new meter, its ID chosen by the writer
	KindMeterName   Kind = 4 // Meter.ID and Meter.DisplayName
	KindMeterStatus Kind = 5 // Meter.ID and Meter.Inactive
	KindKV          Kind = 6 // KV: puts and deletes applied together, in order
	KindClaim       Kind = 7 // KV[0]: a put that takes effect only when no unexpired value exists
)

// Record is one change of a replicated database.
type Record struct {
	Kind Kind
	// Origin identifies the writing process (random, chosen at Open) and
	// Nonce the write within it: a writer finds the outcome of its own
	// records by them. Neither affects how a record is applied.
	Origin, Nonce uint64
	// Stamp is the writer's clock when it built the record, unix seconds.
	// Every time-dependent decision of the apply uses it (see the pipeline).
	Stamp int64

	Events []Event // KindEvents
	Cancel Cancel  // KindCancel
	Meter  Meter   // KindMeterCreate, KindMeterName, KindMeterStatus
	KV     []KV    // KindKV; KindClaim: exactly one put
}

// Event is one validated event as its writer saw it.
type Event struct {
	Meter      uint64 // the meter's Seq
	Customer   string
	Identifier string
	Value      int64 // 1 for count meters
	Timestamp  int64 // unix seconds
}

// Cancel names the event to cancel.
type Cancel struct {
	Meter      uint64 // the meter's Seq
	Identifier string
}

// Meter is a meter change. A create carries every field but Inactive; a
// rename ID and DisplayName; a status change ID and Inactive.
type Meter struct {
	ID, DisplayName, EventName, Formula, CustomerKey, ValueKey, EventTimeWindow string
	Inactive                                                                    bool
}

// KV is one key-value write: a put of Value until Expires (unix seconds),
// or with Delete a removal.
type KV struct {
	NS, Key string
	Value   []byte
	Expires int64
	Delete  bool
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const crcLen = 4

// Append appends the encoding of r to b and returns the extended slice.
func Append(b []byte, r *Record) []byte {
	start := len(b)
	b = append(b, Version, byte(r.Kind))
	b = binary.BigEndian.AppendUint64(b, r.Origin)
	b = binary.AppendUvarint(b, r.Nonce)
	b = binary.AppendVarint(b, r.Stamp)
	switch r.Kind {
	case KindEvents:
		b = binary.AppendUvarint(b, uint64(len(r.Events)))
		for i := range r.Events {
			e := &r.Events[i]
			b = binary.AppendUvarint(b, e.Meter)
			b = appendString(b, e.Customer)
			b = appendString(b, e.Identifier)
			b = binary.AppendVarint(b, e.Value)
			b = binary.AppendVarint(b, e.Timestamp)
		}
	case KindCancel:
		b = binary.AppendUvarint(b, r.Cancel.Meter)
		b = appendString(b, r.Cancel.Identifier)
	case KindMeterCreate:
		m := &r.Meter
		for _, s := range [...]string{m.ID, m.DisplayName, m.EventName, m.Formula, m.CustomerKey, m.ValueKey, m.EventTimeWindow} {
			b = appendString(b, s)
		}
	case KindMeterName:
		b = appendString(b, r.Meter.ID)
		b = appendString(b, r.Meter.DisplayName)
	case KindMeterStatus:
		b = appendString(b, r.Meter.ID)
		b = append(b, boolByte(r.Meter.Inactive))
	case KindKV, KindClaim:
		b = binary.AppendUvarint(b, uint64(len(r.KV)))
		for i := range r.KV {
			w := &r.KV[i]
			b = append(b, boolByte(w.Delete))
			b = appendString(b, w.NS)
			b = appendString(b, w.Key)
			if !w.Delete {
				b = appendString(b, string(w.Value))
				b = binary.AppendVarint(b, w.Expires)
			}
		}
	default:
		panic(fmt.Sprintf("record: Append of unknown kind %d", r.Kind))
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// Decode checks and decodes one record. Errors wrap ErrVersion or
// ErrCorrupt. The result shares nothing with b.
func Decode(b []byte) (*Record, error) {
	if len(b) < 2+8+crcLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrCorrupt, len(b))
	}
	if b[0] != Version {
		return nil, fmt.Errorf("%w: version %d, this build reads %d", ErrVersion, b[0], Version)
	}
	body := b[:len(b)-crcLen]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[len(body):]) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	r := &Record{Kind: Kind(body[1]), Origin: binary.BigEndian.Uint64(body[2:10])}
	d := binread.New(body[10:])
	r.Nonce = d.Uvarint()
	r.Stamp = d.Varint()
	switch r.Kind {
	case KindEvents:
		n := d.Count(5)
		r.Events = make([]Event, n)
		for i := range r.Events {
			e := &r.Events[i]
			e.Meter = d.Uvarint()
			e.Customer = string(d.Bytes())
			e.Identifier = string(d.Bytes())
			e.Value = d.Varint()
			e.Timestamp = d.Varint()
		}
	case KindCancel:
		r.Cancel.Meter = d.Uvarint()
		r.Cancel.Identifier = string(d.Bytes())
	case KindMeterCreate:
		m := &r.Meter
		for _, s := range [...]*string{&m.ID, &m.DisplayName, &m.EventName, &m.Formula, &m.CustomerKey, &m.ValueKey, &m.EventTimeWindow} {
			*s = string(d.Bytes())
		}
	case KindMeterName:
		r.Meter.ID = string(d.Bytes())
		r.Meter.DisplayName = string(d.Bytes())
	case KindMeterStatus:
		r.Meter.ID = string(d.Bytes())
		r.Meter.Inactive = readBool(&d)
	case KindKV, KindClaim:
		n := d.Count(3)
		r.KV = make([]KV, n)
		for i := range r.KV {
			w := &r.KV[i]
			w.Delete = readBool(&d)
			w.NS = string(d.Bytes())
			w.Key = string(d.Bytes())
			if !w.Delete {
				w.Value = append([]byte{}, d.Bytes()...)
				w.Expires = d.Varint()
			}
		}
		if r.Kind == KindClaim && (n != 1 || r.KV[0].Delete) {
			d.Fail()
		}
	default:
		return nil, fmt.Errorf("%w: unknown kind %d", ErrCorrupt, r.Kind)
	}
	if d.Bad() || d.Len() != 0 {
		return nil, fmt.Errorf("%w: malformed %s record", ErrCorrupt, r.Kind)
	}
	return r, nil
}

func readBool(d *binread.Reader) bool {
	switch d.Byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.Fail()
	return false
}

// String names the kind.
func (k Kind) String() string {
	switch k {
	case KindEvents:
		return "events"
	case KindCancel:
		return "cancel"
	case KindMeterCreate:
		return "meter create"
	case KindMeterName:
		return "meter rename"
	case KindMeterStatus:
		return "meter status"
	case KindKV:
		return "key-value"
	case KindClaim:
		return "claim"
	}
	return fmt.Sprintf("kind %d", byte(k))
}
