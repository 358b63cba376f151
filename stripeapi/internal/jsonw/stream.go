package jsonw

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/stripeapi/internal/wire"
)

// MaxEvents is the most events one meter event stream request may carry,
// as Stripe documents it.
const MaxEvents = 100

// Batch is the decoded body of one stream request. Batches are
// pooled: the body buffer, the events and their payload maps are reused,
// so decoding allocates only the strings the engine may keep (identifiers
// and payload values; event names and the usual payload keys are
// interned).
type Batch struct {
	Buf    bytes.Buffer  // the request body, read by the caller
	Events []event.Event // the decoded events
	// Usages is room for the caller to convert Events to typed usage,
	// reused with the batch; Decode leaves it empty.
	Usages []event.Usage
	maps   []map[string]string // payload maps, reused; maps[i] backs Events[i]
	keys   []string            // payload keys seen in this batch, for interning
	last   struct {            // the previous event name, for interning
		name string
	}
}

var batchPool = sync.Pool{New: func() any { return new(Batch) }}

// GetBatch returns an empty batch from the pool.
func GetBatch() *Batch {
	sb := batchPool.Get().(*Batch)
	sb.Buf.Reset()
	sb.Events = sb.Events[:0]
	sb.Usages = sb.Usages[:0]
	sb.keys = sb.keys[:0]
	sb.last.name = ""
	return sb
}

// Release returns sb to the pool; nothing may use it, its events or their
// payloads afterwards. Oversized buffers are dropped.
func (sb *Batch) Release() {
	if sb.Buf.Cap() > 256<<10 {
		return
	}
	clear(sb.Events)
	clear(sb.Usages)
	batchPool.Put(sb)
}

// Decode fills sb.Events from body, interning event names in names.
func (sb *Batch) Decode(body []byte, names *Names) error {
	if err := CheckUTF8(body); err != nil {
		return err
	}
	d := &decoder{b: body, sb: sb, names: names}
	return d.top()
}

func (d *decoder) top() error {
	if d.atEnd() {
		return wire.ErrMissingParam("events")
	}
	seen, dup := false, false
	more, err := d.open()
	for more && err == nil {
		var k []byte
		if k, err = d.key(); err != nil {
			break
		}
		if string(k) != "events" {
			return wire.ErrUnknownParam(wire.Truncate(string(k), 100))
		}
		if dup {
			return wire.ErrTwice("events")
		}
		dup = true
		if seen, err = d.events(); err == nil {
			more, err = d.next('}')
		}
	}
	if err != nil {
		return err
	}
	if !d.atEnd() {
		return d.syntax("unexpected data after the top-level object")
	}
	switch {
	case !seen:
		return wire.ErrMissingParam("events")
	case len(d.sb.Events) == 0:
		return wire.ErrInvalidParam("events", fmt.Sprintf("Invalid events: must hold 1 to %d events.", MaxEvents))
	}
	return nil
}

// events reads the events array (or null, which reports false).
func (d *decoder) events() (bool, error) {
	d.sb.Events = d.sb.Events[:0]
	if d.null() {
		return false, nil
	}
	if d.peek() != '[' {
		return false, d.shape(wire.ErrInvalidParam("events", "Invalid events: must be an array of meter events."))
	}
	d.i++
	if d.peek() == ']' {
		d.i++
		return true, nil
	}
	for more := true; more; {
		if len(d.sb.Events) == MaxEvents {
			return false, wire.ErrInvalidParam("events", fmt.Sprintf("Invalid events: at most %d events per request.", MaxEvents))
		}
		if err := d.event(len(d.sb.Events)); err != nil {
			return false, err
		}
		var err error
		if more, err = d.next(']'); err != nil {
			return false, err
		}
	}
	return true, nil
}

// eventFieldBit returns the bit that stands for field k of an event, 0 for
// an unknown field.
func eventFieldBit(k []byte) uint8 {
	switch string(k) {
	case "event_name":
		return 1
	case "identifier":
		return 2
	case "timestamp":
		return 4
	case "payload":
		return 8
	}
	return 0
}

func streamParam(n int, k string) string { return fmt.Sprintf("events[%d][%s]", n, k) }

func errNotString(param string) *wire.Error {
	return wire.ErrInvalidParam(param, "Invalid "+param+": must be a string.")
}

// text reads a string or null for parameter k of events[n].
func (d *decoder) text(n int, k string) (raw []byte, s string, esc, null bool, err error) {
	switch d.peek() {
	case '"':
		raw, s, esc, err = d.str()
		return raw, s, esc, false, err
	case 'n':
		if d.null() {
			return nil, "", false, true, nil
		}
	}
	return nil, "", false, false, d.shape(errNotString(streamParam(n, k)))
}

// event decodes events[n] into a new element of sb.Events.
func (d *decoder) event(n int) error {
	sb := d.sb
	sb.Events = append(sb.Events, event.Event{})
	ev := &sb.Events[n]
	if d.peek() != '{' {
		return d.shape(wire.ErrInvalidParam(fmt.Sprintf("events[%d]", n), fmt.Sprintf("Invalid events[%d]: must be an object.", n)))
	}
	var seen uint8 // the fields read so far, one bit each
	more, err := d.open()
	for more && err == nil {
		var k []byte
		if k, err = d.key(); err != nil {
			return err
		}
		if bit := eventFieldBit(k); bit != 0 {
			if seen&bit != 0 {
				return wire.ErrTwice(streamParam(n, string(k)))
			}
			seen |= bit
		}
		switch string(k) {
		case "event_name":
			raw, s, esc, null, err := d.text(n, "event_name")
			switch {
			case err != nil:
				return err
			case null:
				ev.Name = ""
			case esc:
				ev.Name = s
			case sb.last.name != "" && string(raw) == sb.last.name:
				ev.Name = sb.last.name
			default:
				ev.Name = d.names.intern(raw)
				sb.last.name = ev.Name
			}
		case "identifier":
			raw, s, esc, null, err := d.text(n, "identifier")
			switch {
			case err != nil:
				return err
			case null:
				ev.Identifier = ""
			case esc:
				ev.Identifier = s
			default:
				ev.Identifier = string(raw)
			}
		case "timestamp":
			raw, s, esc, null, err := d.text(n, "timestamp")
			if err != nil {
				return err
			}
			ev.Timestamp = time.Time{}
			if null {
				break
			}
			if esc {
				raw = []byte(s)
			}
			t, ok := ParseRFC3339(raw)
			if !ok {
				p := streamParam(n, "timestamp")
				return wire.ErrInvalidParam(p, "Invalid "+p+": must be an RFC 3339 date-time such as 2024-06-01T12:00:00.000Z.")
			}
			ev.Timestamp = t
		case "payload":
			if err := d.payload(n, ev); err != nil {
				return err
			}
		default:
			return wire.ErrUnknownParam(wire.Truncate(streamParam(n, string(k)), 100))
		}
		more, err = d.next('}')
	}
	return err
}

// payload reads events[n][payload] into a reused map.
func (d *decoder) payload(n int, ev *event.Event) error {
	sb := d.sb
	ev.Payload = nil
	if d.null() {
		return nil
	}
	if d.peek() != '{' {
		p := streamParam(n, "payload")
		return d.shape(wire.ErrInvalidParam(p, "Invalid "+p+": must be an object of strings."))
	}
	for len(sb.maps) <= n {
		sb.maps = append(sb.maps, make(map[string]string, 4))
	}
	m := sb.maps[n]
	clear(m)
	ev.Payload = m
	more, err := d.open()
	for more && err == nil {
		var k []byte
		if k, err = d.key(); err != nil {
			return err
		}
		key := sb.internKey(k)
		if _, dup := m[key]; dup {
			return wire.ErrTwice(streamParam(n, "payload") + "[" + key + "]")
		}
		if d.peek() != '"' {
			return d.shape(errNotString(streamParam(n, "payload") + "[" + key + "]"))
		}
		var raw []byte
		var s string
		var esc bool
		if raw, s, esc, err = d.str(); err != nil {
			return err
		}
		if !esc {
			s = string(raw)
		}
		m[key] = s
		more, err = d.next('}') // the loop condition sees its error
	}
	return err
}

// internKey returns payload key k as a string, shared by the events of a
// batch and, for the default keys, by every batch.
func (sb *Batch) internKey(k []byte) string {
	switch string(k) {
	case "stripe_customer_id":
		return "stripe_customer_id"
	case "value":
		return "value"
	}
	for _, s := range sb.keys {
		if s == string(k) {
			return s
		}
	}
	s := string(k)
	if len(sb.keys) < 16 {
		sb.keys = append(sb.keys, s)
	}
	return s
}
