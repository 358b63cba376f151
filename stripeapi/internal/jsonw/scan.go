package jsonw

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/meterdb/meterdb/stripeapi/internal/wire"
)

// decoder decodes {"events":[{…},…]} without reflection, in one
// pass over the body. JSON null reads as absent; unknown fields are
// parameter_unknown; anything that is not JSON, or of the wrong type, is a
// 400 naming the offending field.
type decoder struct {
	b     []byte
	i     int
	sb    *Batch
	names *Names
}

func errStream(msg string) *wire.Error {
	return wire.InvalidRequest(http.StatusBadRequest, wire.CodeParameterInvalid, "", "Invalid request body: "+msg)
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
func (d *decoder) peek() byte {
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
func (d *decoder) atEnd() bool {
	d.peek()
	return d.i == len(d.b)
}

func (d *decoder) syntax(what string) *wire.Error {
	return errStream(fmt.Sprintf("malformed JSON at offset %d: %s.", d.i, what))
}

// shape returns e, a value of the wrong kind, unless the body ends where
// the value should be: that is malformed JSON, and said so.
func (d *decoder) shape(e *wire.Error) *wire.Error {
	if d.atEnd() {
		return d.syntax("unexpected end of the body")
	}
	return e
}

func (d *decoder) expect(c byte) error {
	if d.peek() != c {
		return d.syntax(fmt.Sprintf("expected %q", c))
	}
	d.i++
	return nil
}

// null consumes a null literal if one comes next.
func (d *decoder) null() bool {
	if d.peek() == 'n' && bytes.HasPrefix(d.b[d.i:], []byte("null")) {
		d.i += 4
		return true
	}
	return false
}

// str reads the string that starts at d.i. Without escapes, raw is its
// content (a slice of the body, valid until the body is reused) and esc
// is false; with escapes, s is the decoded string and esc is true.
func (d *decoder) str() (raw []byte, s string, esc bool, err error) {
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
func (d *decoder) key() ([]byte, error) {
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
func (d *decoder) next(end byte) (bool, error) {
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
func (d *decoder) open() (bool, error) {
	if err := d.expect('{'); err != nil {
		return false, err
	}
	if d.peek() == '}' {
		d.i++
		return false, nil
	}
	return true, nil
}
