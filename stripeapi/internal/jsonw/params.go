package jsonw

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/meterdb/meterdb/stripeapi/internal/wire"
)

func errInvalidJSON(err error) *wire.Error {
	msg := "Invalid JSON body."
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		msg = fmt.Sprintf("Invalid JSON body: %s at offset %d.", se.Error(), se.Offset)
	case errors.As(err, &te):
		msg = "Invalid JSON body: the request must be a JSON object."
	}
	return wire.InvalidRequest(http.StatusBadRequest, wire.CodeParameterInvalid, "", msg)
}

// Params reads typed parameters out of a JSON object and records the
// first problem. JSON null reads as absent. Every reader marks what it
// reads; Done reports the first key nobody read as parameter_unknown.
// Nested objects share the error state of the root.
type Params struct {
	fields map[string]json.RawMessage
	used   map[string]bool
	prefix string
	st     *state
}

type state struct {
	wire.Problems
	readers []*Params
}

// NewParams decodes body, which must be a JSON object (or empty).
func NewParams(body []byte) (*Params, error) {
	fields := map[string]json.RawMessage{}
	if len(body) > 0 {
		if err := CheckUTF8(body); err != nil {
			return nil, err
		}
		d := json.NewDecoder(bytes.NewReader(body))
		if err := d.Decode(&fields); err != nil {
			return nil, errInvalidJSON(err)
		}
		if _, err := d.Token(); err != io.EOF {
			return nil, wire.InvalidRequest(http.StatusBadRequest, wire.CodeParameterInvalid, "",
				"Invalid JSON body: unexpected data after the top-level object.")
		}
		if fields == nil { // the body was null
			fields = map[string]json.RawMessage{}
		}
		if name, ok := RepeatedMember(body); ok {
			return nil, wire.ErrTwice(name)
		}
	}
	p := &Params{fields: fields, used: map[string]bool{}, st: &state{}}
	p.st.readers = append(p.st.readers, p)
	return p, nil
}

// Name is parameter k of this object, in bracket notation.
func (p *Params) Name(k string) string { return wire.NestedName(p.prefix, k) }

// Fail records e unless an earlier problem was recorded.
func (p *Params) Fail(e *wire.Error) { p.st.Fail(e) }

// get returns the raw value of k, or nil when it is absent or null.
func (p *Params) get(k string) json.RawMessage {
	raw, ok := p.fields[k]
	if !ok {
		return nil
	}
	p.used[k] = true
	if string(raw) == "null" {
		return nil
	}
	return raw
}

// Str returns string parameter k, at most max bytes long. An empty string
// counts as given (it is not an unset, as in v1).
func (p *Params) Str(k string, max int, required bool) string {
	raw := p.get(k)
	if raw == nil {
		if required {
			p.Fail(wire.ErrMissingParam(p.Name(k)))
		}
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		p.Fail(wire.ErrInvalidParam(p.Name(k), fmt.Sprintf("Invalid %s: must be a string.", p.Name(k))))
		return ""
	}
	if required && s == "" {
		p.Fail(wire.InvalidRequest(http.StatusBadRequest, wire.CodeParameterInvalidEmpty, p.Name(k),
			fmt.Sprintf("Invalid %s: must not be empty.", p.Name(k))))
		return ""
	}
	if len(s) > max {
		p.Fail(wire.ErrTooLong(p.Name(k), max))
		return ""
	}
	return s
}

// Time returns RFC 3339 timestamp parameter k (fractional seconds and
// offsets accepted), or the zero time when it is absent.
func (p *Params) Time(k string) time.Time {
	s := p.Str(k, 64, false)
	if s == "" {
		return time.Time{}
	}
	t, ok := ParseRFC3339([]byte(s))
	if !ok {
		p.Fail(wire.ErrInvalidParam(p.Name(k), fmt.Sprintf(
			"Invalid %s: must be an RFC 3339 date-time such as 2024-06-01T12:00:00.000Z.", p.Name(k))))
	}
	return t
}

// Object returns a reader for object parameter k, or nil when it is
// absent, null or not an object.
func (p *Params) Object(k string, required bool) *Params {
	raw := p.get(k)
	if raw == nil {
		if required {
			p.Fail(wire.ErrMissingParam(p.Name(k)))
		}
		return nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		p.Fail(wire.ErrInvalidParam(p.Name(k), fmt.Sprintf("Invalid %s: must be an object.", p.Name(k))))
		return nil
	}
	c := &Params{fields: fields, used: map[string]bool{}, prefix: p.Name(k), st: p.st}
	p.st.readers = append(p.st.readers, c)
	return c
}

// StrMap returns object parameter k as a map of strings: at most maxKeys
// entries, keys at most maxKey bytes, values at most maxValue bytes.
func (p *Params) StrMap(k string, required bool, maxKeys, maxKey, maxValue int) map[string]string {
	o := p.Object(k, required)
	if o == nil {
		return nil
	}
	for key := range o.fields {
		o.used[key] = true
	}
	if len(o.fields) > maxKeys {
		p.Fail(wire.ErrInvalidParam(o.prefix, fmt.Sprintf("Invalid %s: at most %d keys are allowed.", o.prefix, maxKeys)))
		return nil
	}
	keys := make([]string, 0, len(o.fields))
	for key := range o.fields {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	m := make(map[string]string, len(keys))
	for _, key := range keys {
		var s string
		switch err := json.Unmarshal(o.fields[key], &s); {
		case len(key) > maxKey:
			p.Fail(wire.InvalidRequest(http.StatusBadRequest, wire.CodeStringTooLong, o.prefix,
				fmt.Sprintf("Invalid %s: keys must be at most %d characters.", o.prefix, maxKey)))
		case err != nil || string(o.fields[key]) == "null":
			p.Fail(wire.ErrInvalidParam(o.Name(key), fmt.Sprintf("Invalid %s: must be a string.", o.Name(key))))
		case len(s) > maxValue:
			p.Fail(wire.ErrTooLong(o.Name(key), maxValue))
		default:
			m[key] = s
			continue
		}
		return nil
	}
	return m
}

// Done returns the first unknown parameter (in sorted order) as
// parameter_unknown, else the first problem recorded, else nil.
func (p *Params) Done() error {
	var unknown []string
	for _, r := range p.st.readers {
		for k := range r.fields {
			if !r.used[k] {
				unknown = append(unknown, r.Name(k))
			}
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return wire.ErrUnknownParam(wire.Truncate(unknown[0], 100))
	}
	if p.st.First != nil {
		return p.st.First
	}
	return nil
}
