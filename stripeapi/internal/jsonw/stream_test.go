package jsonw

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/stripeapi/internal/wire"
)

// refDecode is the stream body decoder written with encoding/json: the
// specification that Batch.Decode must match.
func refDecode(body []byte) ([]event.Event, bool) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, false
	}
	for k := range top {
		if k != "events" {
			return nil, false
		}
	}
	if dupKeys(body) { // a member given twice
		return nil, false
	}
	raw, ok := top["events"]
	if !ok || string(raw) == "null" {
		return nil, false
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || len(items) == 0 || len(items) > MaxEvents {
		return nil, false
	}
	evs := make([]event.Event, len(items))
	for i, it := range items {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(it, &fields); err != nil || fields == nil {
			return nil, false
		}
		ev := &evs[i]
		for k, v := range fields {
			null := string(v) == "null"
			var s string
			switch k {
			case "event_name", "identifier", "timestamp":
				if !null && json.Unmarshal(v, &s) != nil {
					return nil, false
				}
				switch k {
				case "event_name":
					ev.Name = s
				case "identifier":
					ev.Identifier = s
				default:
					if !null {
						t, ok := ParseRFC3339([]byte(s))
						if !ok {
							return nil, false
						}
						ev.Timestamp = t
					}
				}
			case "payload":
				if null {
					continue
				}
				var m map[string]*string
				if json.Unmarshal(v, &m) != nil || m == nil {
					return nil, false
				}
				ev.Payload = map[string]string{}
				for pk, pv := range m {
					if pv == nil {
						return nil, false
					}
					ev.Payload[pk] = *pv
				}
			default:
				return nil, false
			}
		}
	}
	return evs, true
}

// dupKeys reports whether an object anywhere in the valid JSON body names
// a member twice.
func dupKeys(body []byte) bool {
	d := json.NewDecoder(bytes.NewReader(body))
	type frame struct {
		keys   map[string]bool
		object bool
		key    bool // the next token of an object is a key
	}
	var stack []frame
	for {
		tok, err := d.Token()
		if err != nil {
			return false
		}
		if n := len(stack); n > 0 && stack[n-1].object {
			top := &stack[n-1]
			if k, ok := tok.(string); ok && top.key {
				if top.keys[k] {
					return true
				}
				top.keys[k] = true
				top.key = false
				continue
			}
			top.key = true // a value (or the closing brace) follows
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{keys: map[string]bool{}, object: true, key: true})
		case json.Delim('['):
			stack = append(stack, frame{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if n := len(stack); n > 0 && stack[n-1].object {
				stack[n-1].key = true
			}
		}
	}
}

func checkDecode(t *testing.T, body []byte) {
	t.Helper()
	sb := GetBatch()
	defer sb.Release()
	err := sb.Decode(body, NewNames())
	if !utf8.Valid(body) {
		if err == nil {
			t.Fatalf("invalid UTF-8 accepted: %q", body)
		}
		return
	}
	want, ok := refDecode(body)
	if ok != (err == nil) {
		t.Fatalf("decode(%q): error %v; encoding/json says valid: %v", body, err, ok)
	}
	if !ok {
		if _, isAPI := err.(*wire.Error); !isAPI {
			t.Fatalf("decode(%q): error %T is not an *wire.Error", body, err)
		}
		return
	}
	got := sb.Events
	for i := range got {
		if len(got[i].Payload) == 0 && len(want[i].Payload) == 0 {
			got[i].Payload, want[i].Payload = nil, nil
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decode(%q):\n got %+v\nwant %+v", body, got, want)
	}
}

func TestStreamDecode(t *testing.T) {
	for _, body := range streamSeeds {
		checkDecode(t, []byte(body))
	}
	// 100 events decode, 101 do not.
	var b strings.Builder
	b.WriteString(`{"events":[`)
	for i := range 101 {
		if i > 0 {
			b.WriteString(",")
		}
		if i == 100 {
			checkDecode(t, []byte(b.String()[:b.Len()-1]+"]}"))
		}
		fmt.Fprintf(&b, `{"event_name":"e","payload":{"k":"%d"}}`, i)
	}
	b.WriteString("]}")
	checkDecode(t, []byte(b.String()))
}

var streamSeeds = []string{
	`{"events":[{"event_name":"api_call","identifier":"id1","payload":{"stripe_customer_id":"cus_1","value":"25"},"timestamp":"2026-03-01T12:00:00.000Z"}]}`,
	` { "events" : [ { "event_name" : "a" , "payload" : { } } , {"event_name":"a","payload":{"x":"y"}} ] } `,
	`{"events":[{"event_name":"a\u005fb","identifier":"\"q\"\n","payload":{"k\u00e9":"v\\"}}]}`,
	`{"events":[{"event_name":null,"identifier":null,"payload":null,"timestamp":null}]}`,
	`{"events":[{"event_name":"a","timestamp":"2026-03-01T13:00:00.123456789+01:00"}]}`,
	`{"events":[{"event_name":"a","timestamp":"2026-02-30T00:00:00Z"}]}`,
	`{"events":[{"event_name":"a","timestamp":"yesterday"}]}`,
	`{"events":[{"event_name":"a","timestamp":1700000000}]}`,
	`{"events":[{"event_name":"a","payload":{"value":25}}]}`,
	`{"events":[{"event_name":"a","payload":{"value":null}}]}`,
	`{"events":[{"event_name":"a","other":1}]}`,
	`{"events":[{"event_name":"a"}],"more":true}`,
	"{\"events\":[{}]}\x00", "\x00", "{\"events\":[{}]}\n\x00 ",
	`{"events":[]}`, `{"events":null}`, `{}`, `null`, ``, `[]`, `{"events":{}}`, `{"events":[1]}`,
	`{"events":[{"event_name":"a"}]} x`, `{"events":[{"event_name":"a"},]}`, `{"events":[{"event_name":"a"}`,
	`{"events":[{"event_name":"a\x01"}]}`, `{"events":[{"event_name":"a\q"}]}`, "{\"events\":[{\"event_name\":\"\xff\"}]}",
	`{"events":[{"event_name":"a","event_name":"b","payload":{"k":"1","k":"2"}}]}`,
	`{"events":[{"event_name":"a"}],"events":[{"event_name":"b"}]}`, `{"events":null,"events":[{"event_name":"b"}]}`,
	`{"events":[{"":""}],"events":[{}]}`,
	`{"events":[{"event_name":"a","payload":{"k":"1" "j":"2"}}]}`, `{"events":[{"event_name":"a","payload":{"k":"1"]}]}`,
}

func FuzzStreamDecode(f *testing.F) {
	for _, s := range streamSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkDecode(t, body) })
}

func TestParseRFC3339(t *testing.T) {
	for in, want := range map[string]string{
		"2026-03-01T12:00:00Z":                 "2026-03-01T12:00:00Z",
		"2026-03-01t12:00:00z":                 "2026-03-01T12:00:00Z",
		"2026-03-01T12:00:00.5Z":               "2026-03-01T12:00:00.5Z",
		"2026-03-01T12:00:00.123456789Z":       "2026-03-01T12:00:00.123456789Z",
		"2026-03-01T12:00:00.000+02:00":        "2026-03-01T10:00:00Z",
		"2024-02-29T23:59:59.999Z":             "2024-02-29T23:59:59.999Z",
		"2026-03-01T12:00:00.1234567891Z":      "2026-03-01T12:00:00.123456789Z",
		"2026-02-29T00:00:00Z":                 "",
		"2026-03-01T24:00:00Z":                 "",
		"2026-03-01 12:00:00Z":                 "",
		"2026-03-01T12:00:00":                  "",
		"2026-03-01T12:00:00.Z":                "",
		"1700000000":                           "",
		"2026-13-01T00:00:00Z":                 "",
		"+2026-03-01T12:00:00Z":                "",
		"2026-03-01T12:00:00.000000000000000Z": "2026-03-01T12:00:00Z",
	} {
		got, ok := ParseRFC3339([]byte(in))
		switch {
		case want == "" && ok:
			t.Errorf("ParseRFC3339(%q) = %v, want an error", in, got)
		case want != "" && (!ok || !got.Equal(mustTime(want))):
			t.Errorf("ParseRFC3339(%q) = %v, %v; want %s", in, got, ok, want)
		}
	}
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestStreamDecodeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	var b strings.Builder
	b.WriteString(`{"events":[`)
	for i := range 100 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"event_name":"api_call","identifier":"id-%d","payload":{"stripe_customer_id":"cus_%d","value":"%d"},"timestamp":"2026-03-01T12:00:00.000Z"}`, i, i%7, i)
	}
	b.WriteString("]}")
	body := []byte(b.String())
	names := NewNames()
	sb := GetBatch()
	if err := sb.Decode(body, names); err != nil {
		t.Fatal(err)
	}
	sb.Release()
	allocs := testing.AllocsPerRun(20, func() {
		sb := GetBatch()
		if err := sb.Decode(body, names); err != nil {
			t.Fatal(err)
		}
		sb.Release()
	})
	// The identifier, customer and value strings of each event; nothing
	// else per event.
	if allocs > 3*100+5 {
		t.Errorf("%.0f allocations to decode 100 events", allocs)
	}
}

// repeatedMember (v2 bodies) and dupKeys (the stream's specification)
// agree on every valid JSON body.
func FuzzRepeatedMember(f *testing.F) {
	for _, s := range streamSeeds {
		f.Add([]byte(s))
	}
	for _, s := range []string{
		`{"a":{"b":1,"b":2}}`, `{"a":[{"b":1},{"b":2}],"c":{"a":1}}`, `{"a":1,"b":{"a":1},"a":2}`,
		`[{"a":1},{"a":1,"a":1}]`, `{"a":[[],{}],"a":null}`, `{"":1,"":2}`, `{"a\u0062":1,"ab":2}`,
		`[{},"a"]`, `{"a":[{},"b","b"],"c":[{}],"c":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) {
			return
		}
		name, got := RepeatedMember(body)
		if want := dupKeys(body); got != want {
			t.Fatalf("RepeatedMember(%q) = %q, %v; want %v", body, name, got, want)
		}
	})
}

func TestRepeatedMemberNames(t *testing.T) {
	for body, want := range map[string]string{
		`{"a":{"b":1,"b":2}}`:                        "a[b]",
		`{"a":[{"b":1},{"b":2,"b":3}]}`:              "a[1][b]",
		`{"x":1,"a":{"b":{"c":1}},"a":2}`:            "a",
		`{"events":[{"payload":{"k":"1","k":"2"}}]}`: "events[0][payload][k]",
		`{"a":[{},"b",{}],"a":1}`:                    "a",
	} {
		if got, ok := RepeatedMember([]byte(body)); !ok || got != want {
			t.Errorf("RepeatedMember(%s) = %q, %v; want %q", body, got, ok, want)
		}
	}
	if got, ok := RepeatedMember([]byte(`{"a":{"b":1},"b":{"a":1}}`)); ok {
		t.Errorf("no member repeats, got %q", got)
	}
}
