package jsonw

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/meterdb/meterdb/stripeapi/internal/wire"
)

// CheckUTF8 checks a JSON body and, when it is not valid UTF-8,
// returns the error naming the first parameter (object member or array
// element, in bracket notation) whose key or value holds a bad byte.
func CheckUTF8(body []byte) *wire.Error {
	if utf8.Valid(body) {
		return nil
	}
	bad := int64(len(body))
	for i := 0; i < len(body); {
		r, n := utf8.DecodeRune(body[i:])
		if r == utf8.RuneError && n <= 1 {
			bad = int64(i)
			break
		}
		i += n
	}
	param := ""
	walkJSON(body, func(name string, end int64) bool {
		if end > bad {
			param = name
			return false
		}
		return true
	})
	return wire.ErrInvalidUTF8(param)
}

// walkJSON calls visit with the bracket name of each object key and each
// scalar value of body, in order, and the offset just past its token, until
// visit returns false or the body ends (or stops being JSON).
func walkJSON(body []byte, visit func(name string, end int64) bool) {
	d := json.NewDecoder(bytes.NewReader(body))
	type level struct {
		name   string
		object bool
		index  int    // arrays: the next element's index
		key    string // objects: the member being read
		atKey  bool   // objects: a key comes next
	}
	var stack []level
	for {
		tok, err := d.Token()
		if err != nil {
			return
		}
		n := len(stack)
		if n > 0 && stack[n-1].object && stack[n-1].atKey {
			top := &stack[n-1]
			if k, ok := tok.(string); ok {
				top.key, top.atKey = k, false
				if !visit(wire.NestedName(top.name, k), d.InputOffset()) {
					return
				}
				continue
			}
		}
		var name string
		if n > 0 {
			if top := &stack[n-1]; top.object {
				name = wire.NestedName(top.name, top.key)
			} else {
				name = fmt.Sprintf("%s[%d]", top.name, top.index)
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, level{name: name, object: true, atKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, level{name: name})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:n-1]
			n--
		default:
			if !visit(name, d.InputOffset()) {
				return
			}
		}
		if n > 0 { // a value of the enclosing object or array is complete
			if top := &stack[n-1]; top.object {
				top.atKey = true
			} else {
				top.index++
			}
		}
	}
}
