package stripeapi

import (
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"
)

// The hot responses (billing.meter_event, v2.billing.meter_event, the
// event summary list, the stream's {}) are written by append-style
// encoders into pooled buffers instead of through encoding/json's
// reflection. Their bytes are exactly what json.MarshalIndent(v, "", "  ")
// writes for the same value (TestAppendJSON compares them on random
// values, strings that need escaping and invalid UTF-8 included), so
// idempotency records and replays are unchanged.

// jsonAppender is a result that appends its own JSON, in the layout of
// json.MarshalIndent(v, "", "  ").
type jsonAppender interface {
	appendJSON(b []byte) []byte
}

// bodyPool holds response buffers of results written by a jsonAppender
// for requests whose body is not kept after it is written (no
// Idempotency-Key).
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledBody is the largest buffer returned to bodyPool.
const maxPooledBody = 64 << 10

// jsonEnc appends indented JSON to b.
type jsonEnc struct {
	b     []byte
	depth int
	empty bool // the innermost open object or array has no member yet
}

func (e *jsonEnc) newline() {
	e.b = append(e.b, '\n')
	for range e.depth {
		e.b = append(e.b, ' ', ' ')
	}
}

// open starts an object ('{') or array ('[') as the current value.
func (e *jsonEnc) open(c byte) {
	e.b = append(e.b, c)
	e.depth++
	e.empty = true
}

// close ends the innermost object ('}') or array (']').
func (e *jsonEnc) close(c byte) {
	e.depth--
	if !e.empty {
		e.newline()
	}
	e.b = append(e.b, c)
	e.empty = false
}

// key starts member k of the current object; its value comes next.
func (e *jsonEnc) key(k string) {
	e.elem()
	e.b = appendJSONString(e.b, k)
	e.b = append(e.b, ':', ' ')
}

// elem starts the next element of the current array.
func (e *jsonEnc) elem() {
	if !e.empty {
		e.b = append(e.b, ',')
	}
	e.newline()
	e.empty = false
}

func (e *jsonEnc) str(k, v string) {
	e.key(k)
	e.b = appendJSONString(e.b, v)
}

func (e *jsonEnc) int(k string, v int64) {
	e.key(k)
	e.b = strconv.AppendInt(e.b, v, 10)
}

func (e *jsonEnc) bool(k string, v bool) {
	e.key(k)
	e.b = strconv.AppendBool(e.b, v)
}

// raw writes member k with v, valid JSON, as it is.
func (e *jsonEnc) raw(k, v string) {
	e.key(k)
	e.b = append(e.b, v...)
}

// strMap writes member k, a map of strings, keys sorted as encoding/json
// sorts them; a nil map is null.
func (e *jsonEnc) strMap(k string, m map[string]string) {
	e.key(k)
	if m == nil {
		e.b = append(e.b, "null"...)
		return
	}
	var arr [16]string
	keys := arr[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	e.open('{')
	for _, k := range keys {
		e.str(k, m[k])
	}
	e.close('}')
}

const hexDigits = "0123456789abcdef"

// htmlSafe marks the ASCII bytes encoding/json writes unescaped in a
// string: not control characters, '"', '\\', '<', '>' or '&'.
var htmlSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	t['"'], t['\\'], t['<'], t['>'], t['&'] = false, false, false, false, false
	return t
}()

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it: HTML characters as \u00XX, invalid UTF-8 as \ufffd, U+2028
// and U+2029 escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if htmlSafe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// emptyObject is the {} that acknowledges a meter event stream request.
type emptyObject struct{}

func (emptyObject) encodeJSON(e *jsonEnc) {
	e.open('{')
	e.close('}')
}

func (m *v1MeterEvent) encodeJSON(e *jsonEnc) {
	e.open('{')
	e.str("object", m.Object)
	e.int("created", m.Created)
	e.str("event_name", m.EventName)
	e.str("identifier", m.Identifier)
	e.bool("livemode", m.Livemode)
	e.strMap("payload", m.Payload)
	e.int("timestamp", m.Timestamp)
	e.close('}')
}

func (m *v2MeterEvent) encodeJSON(e *jsonEnc) {
	e.open('{')
	e.str("object", m.Object)
	e.str("created", m.Created)
	e.str("event_name", m.EventName)
	e.str("identifier", m.Identifier)
	e.bool("livemode", m.Livemode)
	e.strMap("payload", m.Payload)
	e.str("timestamp", m.Timestamp)
	e.close('}')
}

func (s *v1MeterEventSummary) encodeJSON(e *jsonEnc) {
	e.open('{')
	e.str("id", s.ID)
	e.str("object", s.Object)
	e.raw("aggregated_value", string(s.AggregatedValue))
	e.int("end_time", s.EndTime)
	e.bool("livemode", s.Livemode)
	e.str("meter", s.Meter)
	e.int("start_time", s.StartTime)
	e.close('}')
}

// v1SummaryList is the list of billing.meter_event_summary objects.
type v1SummaryList struct {
	v1List[v1MeterEventSummary]
}

func (l *v1SummaryList) encodeJSON(e *jsonEnc) {
	e.open('{')
	e.str("object", l.Object)
	e.key("data")
	if l.Data == nil {
		e.b = append(e.b, "null"...)
	} else {
		e.open('[')
		for i := range l.Data {
			e.elem()
			l.Data[i].encodeJSON(e)
		}
		e.close(']')
	}
	e.bool("has_more", l.HasMore)
	e.str("url", l.URL)
	e.close('}')
}

// The jsonAppenders: each appends its value at the top level. (A generic
// helper, or one taking the encoder through an interface, would move the
// encoder to the heap.)

func (v emptyObject) appendJSON(b []byte) []byte {
	e := jsonEnc{b: b}
	v.encodeJSON(&e)
	return e.b
}

func (v *v1MeterEvent) appendJSON(b []byte) []byte {
	e := jsonEnc{b: b}
	v.encodeJSON(&e)
	return e.b
}

func (v *v2MeterEvent) appendJSON(b []byte) []byte {
	e := jsonEnc{b: b}
	v.encodeJSON(&e)
	return e.b
}

func (v *v1SummaryList) appendJSON(b []byte) []byte {
	e := jsonEnc{b: b}
	v.encodeJSON(&e)
	return e.b
}
