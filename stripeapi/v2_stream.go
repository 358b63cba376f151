package stripeapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meterdb/meterdb/event"
)

// MaxStreamEvents is the most events one meter event stream request may
// carry, as Stripe documents it.
const MaxStreamEvents = 100

// streamBatch is the decoded body of one stream request. Batches are
// pooled: the body buffer, the events and their payload maps are reused,
// so decoding allocates only the strings the engine may keep (identifiers
// and payload values; event names and the usual payload keys are
// interned).
type streamBatch struct {
	buf  bytes.Buffer
	evs  []event.Event
	maps []map[string]string // payload maps, reused; maps[i] backs evs[i]
	keys []string            // payload keys seen in this batch, for interning
	last struct {            // the previous event name, for interning
		name string
	}
}

var streamPool = sync.Pool{New: func() any { return new(streamBatch) }}

func getStreamBatch() *streamBatch {
	sb := streamPool.Get().(*streamBatch)
	sb.buf.Reset()
	sb.evs = sb.evs[:0]
	sb.keys = sb.keys[:0]
	sb.last.name = ""
	return sb
}

// release returns sb to the pool; nothing may use it, its events or their
// payloads afterwards. Oversized buffers are dropped.
func (sb *streamBatch) release() {
	if sb.buf.Cap() > 256<<10 {
		return
	}
	for i := range sb.evs {
		sb.evs[i] = event.Event{}
	}
	streamPool.Put(sb)
}

// v2Stream serves POST /v2/billing/meter_event_stream, authenticated with
// a session token. The request is checked synchronously for its shape (a
// JSON object with 1 to 100 events, each with event_name and payload, and
// strings within Stripe's limits); a request that fails is rejected whole.
// The events are then recorded as one group, and those the engine rejects
// are not counted and are written to an error report (see ErrorReport)
// before the request is acknowledged with {}.
func (h *handler) v2Stream(c *call) (execFunc, error) {
	sb := getStreamBatch()
	body, err := c.readV2Body(&sb.buf)
	if err == nil {
		err = sb.decode(body, h.names)
	}
	if err != nil {
		sb.release()
		return nil, err
	}
	c.canonical = body
	for i := range sb.evs {
		ev := &sb.evs[i]
		if err := event.CheckShape(ev); err != nil {
			sb.release()
			var ee *event.Error
			if errors.As(err, &ee) {
				param := fmt.Sprintf("events[%d][%s]", i, ee.Param)
				if strings.HasPrefix(ee.Param, "payload[") {
					param = fmt.Sprintf("events[%d][payload]%s", i, ee.Param[len("payload"):])
				}
				return nil, invalidRequest(http.StatusBadRequest, ee.Code, param, fmt.Sprintf("events[%d]: %s", i, ee.Message))
			}
			return nil, err
		}
		if ev.Identifier == "" && c.idemKey != "" {
			ev.Identifier = derivedIdentifier(c) + "_" + strconv.Itoa(i)
		}
	}
	return func(ctx context.Context) (any, error) {
		defer sb.release()
		errs, err := h.combine.record(ctx, sb.evs)
		if err != nil {
			return nil, err
		}
		h.stats.streamEvents(errs)
		// The events are committed: whatever happens to their error
		// report, the answer is what happened to them. A 500 here would
		// tell the client that nothing counted.
		if slices.ContainsFunc(errs, func(e error) bool { return e != nil }) {
			if err := h.reportStreamErrors(ctx, c, sb.evs, errs); err != nil {
				h.log.LogAttrs(ctx, slog.LevelError, "storing the error report of a stream request failed; its events were recorded",
					slog.String("request_id", c.id), slog.Any("error", err))
			}
		}
		return struct{}{}, nil
	}, nil
}

// nameCache interns event names: a stream carries the same few names over
// and over. It is safe for concurrent use and bounded.
type nameCache struct {
	mu sync.RWMutex // guards m
	m  map[string]string
}

const maxInternedNames = 1024

func newNameCache() *nameCache { return &nameCache{m: map[string]string{}} }

func (n *nameCache) intern(b []byte) string {
	n.mu.RLock()
	s, ok := n.m[string(b)]
	n.mu.RUnlock()
	if ok {
		return s
	}
	s = string(b)
	n.mu.Lock()
	if len(n.m) < maxInternedNames {
		n.m[s] = s
	}
	n.mu.Unlock()
	return s
}

// streamDecoder decodes {"events":[{…},…]} without reflection, in one
// pass over the body. JSON null reads as absent; unknown fields are
// parameter_unknown; anything that is not JSON, or of the wrong type, is a
// 400 naming the offending field.
type streamDecoder struct {
	b     []byte
	i     int
	sb    *streamBatch
	names *nameCache
}

func errStream(msg string) *apiError {
	return invalidRequest(http.StatusBadRequest, codeParameterInvalid, "", "Invalid request body: "+msg)
}

// decode fills sb.evs from body.
func (sb *streamBatch) decode(body []byte, names *nameCache) error {
	if err := checkJSONUTF8(body); err != nil {
		return err
	}
	d := &streamDecoder{b: body, sb: sb, names: names}
	return d.top()
}

// special marks the bytes that end the fast scan of a JSON string.
var special = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// peek skips white space and returns the next byte, or 0 at the end.
// A 0 byte in the body is never valid JSON outside a string, so callers
// that must tell the end apart from such a byte use atEnd.
func (d *streamDecoder) peek() byte {
	for d.i < len(d.b) {
		switch c := d.b[d.i]; c {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return c
		}
	}
	return 0
}

// atEnd skips white space and reports whether the body is exhausted.
func (d *streamDecoder) atEnd() bool {
	d.peek()
	return d.i == len(d.b)
}

func (d *streamDecoder) syntax(what string) *apiError {
	return errStream(fmt.Sprintf("malformed JSON at offset %d: %s.", d.i, what))
}

// shape returns e, a value of the wrong kind, unless the body ends where
// the value should be: that is malformed JSON, and said so.
func (d *streamDecoder) shape(e *apiError) *apiError {
	if d.atEnd() {
		return d.syntax("unexpected end of the body")
	}
	return e
}

func (d *streamDecoder) expect(c byte) error {
	if d.peek() != c {
		return d.syntax(fmt.Sprintf("expected %q", c))
	}
	d.i++
	return nil
}

// null consumes a null literal if one comes next.
func (d *streamDecoder) null() bool {
	if d.peek() == 'n' && bytes.HasPrefix(d.b[d.i:], []byte("null")) {
		d.i += 4
		return true
	}
	return false
}

// str reads the string that starts at d.i. Without escapes, raw is its
// content (a slice of the body, valid until the body is reused) and esc
// is false; with escapes, s is the decoded string and esc is true.
func (d *streamDecoder) str() (raw []byte, s string, esc bool, err error) {
	b := d.b
	start := d.i + 1
	j := start
	for j < len(b) && !special[b[j]] {
		j++
	}
	if j < len(b) && b[j] == '"' {
		d.i = j + 1
		return b[start:j], "", false, nil
	}
	for j < len(b) {
		switch c := b[j]; {
		case c == '"':
			s, ok := unescape(b[start-1 : j+1])
			if !ok {
				d.i = j
				return nil, "", false, d.syntax("invalid string escape")
			}
			d.i = j + 1
			return nil, s, true, nil
		case c == '\\':
			j += 2
		case c < 0x20:
			d.i = j
			return nil, "", false, d.syntax("control character in a string")
		default:
			j++
		}
	}
	d.i = len(b)
	return nil, "", false, d.syntax("unterminated string")
}

// unescape decodes the JSON string token tok (quotes included). It is
// apart from str so that only escaped strings pay for a heap variable.
func unescape(tok []byte) (string, bool) {
	var s string
	err := json.Unmarshal(tok, &s)
	return s, err == nil
}

// key reads an object key and the colon after it.
func (d *streamDecoder) key() ([]byte, error) {
	if d.peek() != '"' {
		return nil, d.syntax("expected a string")
	}
	raw, s, esc, err := d.str()
	if err != nil {
		return nil, err
	}
	if esc {
		raw = []byte(s)
	}
	return raw, d.expect(':')
}

// next consumes the separator after an object member or array element:
// it reports true for ',' and false for the closing byte end.
func (d *streamDecoder) next(end byte) (bool, error) {
	switch d.peek() {
	case ',':
		d.i++
		return true, nil
	case end:
		d.i++
		return false, nil
	}
	return false, d.syntax(fmt.Sprintf("expected ',' or %q", end))
}

// open consumes '{' and reports whether the object has members.
func (d *streamDecoder) open() (bool, error) {
	if err := d.expect('{'); err != nil {
		return false, err
	}
	if d.peek() == '}' {
		d.i++
		return false, nil
	}
	return true, nil
}

func (d *streamDecoder) top() error {
	if d.atEnd() {
		return errMissingParam("events")
	}
	seen, dup := false, false
	more, err := d.open()
	for more && err == nil {
		var k []byte
		if k, err = d.key(); err != nil {
			break
		}
		if string(k) != "events" {
			return errUnknownParam(truncate(string(k), 100))
		}
		if dup {
			return errTwice("events")
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
		return errMissingParam("events")
	case len(d.sb.evs) == 0:
		return errInvalidParam("events", fmt.Sprintf("Invalid events: must hold 1 to %d events.", MaxStreamEvents))
	}
	return nil
}

// events reads the events array (or null, which reports false).
func (d *streamDecoder) events() (bool, error) {
	d.sb.evs = d.sb.evs[:0]
	if d.null() {
		return false, nil
	}
	if d.peek() != '[' {
		return false, d.shape(errInvalidParam("events", "Invalid events: must be an array of meter events."))
	}
	d.i++
	if d.peek() == ']' {
		d.i++
		return true, nil
	}
	for more := true; more; {
		if len(d.sb.evs) == MaxStreamEvents {
			return false, errInvalidParam("events", fmt.Sprintf("Invalid events: at most %d events per request.", MaxStreamEvents))
		}
		if err := d.event(len(d.sb.evs)); err != nil {
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

// errTwice reports an object member given more than once: taking the last
// would drop the first without a word.
func errTwice(param string) *apiError {
	return errInvalidParam(param, "Invalid "+param+": given more than once.")
}

func streamParam(n int, k string) string { return fmt.Sprintf("events[%d][%s]", n, k) }

func errNotString(param string) *apiError {
	return errInvalidParam(param, "Invalid "+param+": must be a string.")
}

// text reads a string or null for parameter k of events[n].
func (d *streamDecoder) text(n int, k string) (raw []byte, s string, esc, null bool, err error) {
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

// event decodes events[n] into a new element of sb.evs.
func (d *streamDecoder) event(n int) error {
	sb := d.sb
	sb.evs = append(sb.evs, event.Event{})
	ev := &sb.evs[n]
	if d.peek() != '{' {
		return d.shape(errInvalidParam(fmt.Sprintf("events[%d]", n), fmt.Sprintf("Invalid events[%d]: must be an object.", n)))
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
				return errTwice(streamParam(n, string(k)))
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
			t, ok := parseRFC3339(raw)
			if !ok {
				p := streamParam(n, "timestamp")
				return errInvalidParam(p, "Invalid "+p+": must be an RFC 3339 date-time such as 2024-06-01T12:00:00.000Z.")
			}
			ev.Timestamp = t
		case "payload":
			if err := d.payload(n, ev); err != nil {
				return err
			}
		default:
			return errUnknownParam(truncate(streamParam(n, string(k)), 100))
		}
		more, err = d.next('}')
	}
	return err
}

// payload reads events[n][payload] into a reused map.
func (d *streamDecoder) payload(n int, ev *event.Event) error {
	sb := d.sb
	ev.Payload = nil
	if d.null() {
		return nil
	}
	if d.peek() != '{' {
		p := streamParam(n, "payload")
		return d.shape(errInvalidParam(p, "Invalid "+p+": must be an object of strings."))
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
			return errTwice(streamParam(n, "payload") + "[" + key + "]")
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
func (sb *streamBatch) internKey(k []byte) string {
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
