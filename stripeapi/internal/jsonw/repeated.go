package jsonw

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/meterdb/meterdb/stripeapi/internal/wire"
)

// RepeatedMember returns the name of the first member that an object of
// the valid JSON body names twice, if any: encoding/json would keep the
// last silently.
func RepeatedMember(body []byte) (string, bool) {
	type level struct {
		name  string          // the parameter name of this object or array
		keys  map[string]bool // nil for an array
		index int             // arrays: the next element's index
		key   string          // objects: the member being read
	}
	d := json.NewDecoder(bytes.NewReader(body))
	var stack []level
	expectKey := false
	for {
		tok, err := d.Token()
		if err != nil {
			return "", false
		}
		n := len(stack)
		if expectKey {
			if k, ok := tok.(string); ok {
				top := &stack[n-1]
				if top.keys[k] {
					return wire.NestedName(top.name, k), true
				}
				top.keys[k], top.key = true, k
				expectKey = false
				continue
			}
		}
		// tok is a value, or closes the innermost object or array: an
		// empty object closes while a key is still expected, and the
		// enclosing level decides below whether the next token is one.
		expectKey = false
		var name string
		if n > 0 {
			switch top := &stack[n-1]; {
			case top.keys != nil:
				name = wire.NestedName(top.name, top.key)
			default:
				name = fmt.Sprintf("%s[%d]", top.name, top.index)
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, level{name: name, keys: map[string]bool{}})
			expectKey = true
			continue
		case json.Delim('['):
			stack = append(stack, level{name: name})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:n-1]
			n--
		}
		if n > 0 { // a value of the enclosing object or array is complete
			if top := &stack[n-1]; top.keys != nil {
				expectKey = true
			} else {
				top.index++
			}
		}
	}
}
