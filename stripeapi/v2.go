package stripeapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Error types and codes particular to v2.
const (
	typeRateLimit           = "rate_limit"
	typeSessionExpired      = "temporary_session_expired"
	codeSessionExpired      = "billing_meter_event_session_expired"
	codeNotFound            = "not_found"
	codeInvalidCancelConfig = "invalid_cancel_configuration"
	codeIdempotencyError    = "idempotency_error"
	sessionExpiredDocURL    = "https://docs.stripe.com/billing/subscriptions/usage-based/recording-usage-api"
	v2TimeLayout            = "2006-01-02T15:04:05.000Z"
)

// apiV2 renders errors as v2 does: {"error":{"type","code","message"}}.
var apiV2 = &apiVersion{name: "v2", errorBody: v2ErrorBody}

type v2ErrorObject struct {
	Type    string `json:"type"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
	DocURL  string `json:"doc_url,omitempty"`
}

// v2ErrorBody maps the pipeline's error to v2's shape: 429s have type
// rate_limit (stripe-go's *RateLimitError), idempotency errors the code
// idempotency_error, unknown routes the code not_found; the param, which
// v2 bodies do not carry, is named in the message.
func v2ErrorBody(e *apiError) any {
	o := v2ErrorObject{Type: e.Type, Code: e.Code, Message: e.Message}
	switch {
	case e.Status == http.StatusTooManyRequests && e.Code == codeRateLimit:
		o.Type = typeRateLimit
	case e.Type == typeIdempotency && o.Code == "":
		o.Code = codeIdempotencyError
	case e.Status == http.StatusNotFound && o.Code == "":
		o.Code = codeNotFound
	case e.Type == typeSessionExpired:
		o.DocURL = sessionExpiredDocURL
	}
	return struct {
		Error v2ErrorObject `json:"error"`
	}{o}
}

// v2Routes lists the v2 endpoints.
func (h *handler) v2Routes() []*route {
	stream := &route{
		method: "POST", pattern: splitPattern("/v2/billing/meter_event_stream"), api: apiV2,
		session: true, idemAsync: true, prepare: h.v2Stream,
	}
	return []*route{
		repeatable(v2Route("POST", "/v2/billing/meter_events", h.v2CreateMeterEvent)),
		v2Route("POST", "/v2/billing/meter_event_adjustments", h.v2CreateMeterEventAdjustment),
		v2Route("POST", "/v2/billing/meter_event_session", h.v2CreateSession),
		stream,
		v2QueryRoute("GET", "/v2/core/events", h.v2ListEvents),
		v2QueryRoute("GET", "/v2/core/events/{id}", h.v2RetrieveEvent),
	}
}

func splitPattern(p string) []string { return strings.Split(strings.TrimPrefix(p, "/"), "/") }

// v2Route builds a v2 endpoint with a JSON body. prepare reads the
// parameters through p; the request fails with the first unknown
// parameter, or else the first problem p recorded. The body itself is
// what idempotency compares: stripe-go's retries send the same bytes.
func v2Route(method, pattern string, prepare func(c *call, p *v2Params) (execFunc, error)) *route {
	return &route{
		method: method, pattern: splitPattern(pattern), api: apiV2,
		prepare: func(c *call) (execFunc, error) {
			body, err := c.readV2Body(nil)
			if err != nil {
				return nil, err
			}
			c.canonical = body
			p, err := newV2Params(body)
			if err != nil {
				return nil, err
			}
			return prepareParams(c, p, prepare)
		},
	}
}

// v2QueryRoute builds a v2 GET endpoint: its parameters come form-encoded
// in the query string, as stripe-go sends them, and are read with the v1
// readers; errors take the v2 shape.
func v2QueryRoute(method, pattern string, prepare func(c *call, p *v1Params) (execFunc, error)) *route {
	rt := v1Route(method, pattern, prepare)
	rt.api = apiV2
	return rt
}

// readV2Body reads a v2 request body, at most Options.MaxBodyBytes, into
// buf (which may be nil) and checks its Content-Type.
func (c *call) readV2Body(buf *bytes.Buffer) ([]byte, error) {
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	if c.r.Body != nil {
		if _, err := buf.ReadFrom(http.MaxBytesReader(c.w, c.r.Body, c.h.opts.MaxBodyBytes)); err != nil {
			if errors.Is(err, errBodyBudget) {
				return nil, errBusy()
			}
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				return nil, invalidRequest(http.StatusRequestEntityTooLarge, "", "",
					fmt.Sprintf("Request body too large: the limit is %d bytes.", tooLarge.Limit))
			}
			return nil, invalidRequest(http.StatusBadRequest, "", "", "Invalid request: the body could not be read.")
		}
	}
	body := buf.Bytes()
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	if ct := c.r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, invalidRequest(http.StatusBadRequest, "", "", fmt.Sprintf(
				"Invalid Content-Type %q: v2 requests take application/json bodies.", truncate(ct, 100)))
		}
	}
	return body, nil
}

func errInvalidJSON(err error) *apiError {
	msg := "Invalid JSON body."
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		msg = fmt.Sprintf("Invalid JSON body: %s at offset %d.", se.Error(), se.Offset)
	case errors.As(err, &te):
		msg = "Invalid JSON body: the request must be a JSON object."
	}
	return invalidRequest(http.StatusBadRequest, codeParameterInvalid, "", msg)
}

// v2Params reads typed parameters out of a JSON object and records the
// first problem. JSON null reads as absent. Every reader marks what it
// reads; done reports the first key nobody read as parameter_unknown.
// Nested objects share the error state of the root.
type v2Params struct {
	fields map[string]json.RawMessage
	used   map[string]bool
	prefix string
	st     *v2State
}

type v2State struct {
	problems
	readers []*v2Params
}

// newV2Params decodes body, which must be a JSON object (or empty).
func newV2Params(body []byte) (*v2Params, error) {
	fields := map[string]json.RawMessage{}
	if len(body) > 0 {
		if err := checkJSONUTF8(body); err != nil {
			return nil, err
		}
		d := json.NewDecoder(bytes.NewReader(body))
		if err := d.Decode(&fields); err != nil {
			return nil, errInvalidJSON(err)
		}
		if _, err := d.Token(); err != io.EOF {
			return nil, invalidRequest(http.StatusBadRequest, codeParameterInvalid, "",
				"Invalid JSON body: unexpected data after the top-level object.")
		}
		if fields == nil { // the body was null
			fields = map[string]json.RawMessage{}
		}
		if name, ok := repeatedMember(body); ok {
			return nil, errTwice(name)
		}
	}
	p := &v2Params{fields: fields, used: map[string]bool{}, st: &v2State{}}
	p.st.readers = append(p.st.readers, p)
	return p, nil
}

func (p *v2Params) name(k string) string { return nestedName(p.prefix, k) }

func (p *v2Params) fail(e *apiError) { p.st.fail(e) }

// repeatedMember returns the name of the first member that an object of
// the valid JSON body names twice, if any: encoding/json would keep the
// last silently.
func repeatedMember(body []byte) (string, bool) {
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
					return nestedName(top.name, k), true
				}
				top.keys[k], top.key = true, k
				expectKey = false
				continue
			}
		}
		// tok is a value, or closes the innermost object or array.
		var name string
		if n > 0 {
			switch top := &stack[n-1]; {
			case top.keys != nil:
				name = nestedName(top.name, top.key)
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

// get returns the raw value of k, or nil when it is absent or null.
func (p *v2Params) get(k string) json.RawMessage {
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

// str returns string parameter k, at most max bytes long. An empty string
// counts as given (it is not an unset, as in v1).
func (p *v2Params) str(k string, max int, required bool) string {
	raw := p.get(k)
	if raw == nil {
		if required {
			p.fail(errMissingParam(p.name(k)))
		}
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		p.fail(errInvalidParam(p.name(k), fmt.Sprintf("Invalid %s: must be a string.", p.name(k))))
		return ""
	}
	if required && s == "" {
		p.fail(invalidRequest(http.StatusBadRequest, codeParameterInvalidEmpty, p.name(k),
			fmt.Sprintf("Invalid %s: must not be empty.", p.name(k))))
		return ""
	}
	if len(s) > max {
		p.fail(errTooLong(p.name(k), max))
		return ""
	}
	return s
}

// time returns RFC 3339 timestamp parameter k (fractional seconds and
// offsets accepted), or the zero time when it is absent.
func (p *v2Params) time(k string) time.Time {
	s := p.str(k, 64, false)
	if s == "" {
		return time.Time{}
	}
	t, ok := parseRFC3339([]byte(s))
	if !ok {
		p.fail(errInvalidParam(p.name(k), fmt.Sprintf(
			"Invalid %s: must be an RFC 3339 date-time such as 2024-06-01T12:00:00.000Z.", p.name(k))))
	}
	return t
}

// object returns a reader for object parameter k, or nil when it is
// absent, null or not an object.
func (p *v2Params) object(k string, required bool) *v2Params {
	raw := p.get(k)
	if raw == nil {
		if required {
			p.fail(errMissingParam(p.name(k)))
		}
		return nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		p.fail(errInvalidParam(p.name(k), fmt.Sprintf("Invalid %s: must be an object.", p.name(k))))
		return nil
	}
	c := &v2Params{fields: fields, used: map[string]bool{}, prefix: p.name(k), st: p.st}
	p.st.readers = append(p.st.readers, c)
	return c
}

// strMap returns object parameter k as a map of strings: at most maxKeys
// entries, keys at most maxKey bytes, values at most maxValue bytes.
func (p *v2Params) strMap(k string, required bool, maxKeys, maxKey, maxValue int) map[string]string {
	o := p.object(k, required)
	if o == nil {
		return nil
	}
	for key := range o.fields {
		o.used[key] = true
	}
	if len(o.fields) > maxKeys {
		p.fail(errInvalidParam(o.prefix, fmt.Sprintf("Invalid %s: at most %d keys are allowed.", o.prefix, maxKeys)))
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
			p.fail(invalidRequest(http.StatusBadRequest, codeStringTooLong, o.prefix,
				fmt.Sprintf("Invalid %s: keys must be at most %d characters.", o.prefix, maxKey)))
		case err != nil || string(o.fields[key]) == "null":
			p.fail(errInvalidParam(o.name(key), fmt.Sprintf("Invalid %s: must be a string.", o.name(key))))
		case len(s) > maxValue:
			p.fail(errTooLong(o.name(key), maxValue))
		default:
			m[key] = s
			continue
		}
		return nil
	}
	return m
}

// done returns the first unknown parameter (in sorted order) as
// parameter_unknown, else the first problem recorded, else nil.
func (p *v2Params) done() error {
	var unknown []string
	for _, r := range p.st.readers {
		for k := range r.fields {
			if !r.used[k] {
				unknown = append(unknown, r.name(k))
			}
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return errUnknownParam(truncate(unknown[0], 100))
	}
	if p.st.first != nil {
		return p.st.first
	}
	return nil
}

// v2Time formats t as v2 responses do: RFC 3339 in UTC with milliseconds.
func v2Time(t time.Time) string { return t.UTC().Format(v2TimeLayout) }

// parseRFC3339 parses an RFC 3339 date-time: fractional seconds of any
// length and a Z or ±hh:mm offset. The common UTC forms are parsed
// without allocating.
func parseRFC3339(b []byte) (time.Time, bool) {
	// YYYY-MM-DDTHH:MM:SS[.f…](Z|±hh:mm)
	if len(b) >= 20 && b[4] == '-' && b[7] == '-' && (b[10] == 'T' || b[10] == 't') &&
		b[13] == ':' && b[16] == ':' && (b[len(b)-1] == 'Z' || b[len(b)-1] == 'z') {
		num := func(i, n int) (int, bool) {
			v := 0
			for _, c := range b[i : i+n] {
				if c < '0' || c > '9' {
					return 0, false
				}
				v = v*10 + int(c-'0')
			}
			return v, true
		}
		y, ok1 := num(0, 4)
		mo, ok2 := num(5, 2)
		d, ok3 := num(8, 2)
		h, ok4 := num(11, 2)
		mi, ok5 := num(14, 2)
		s, ok6 := num(17, 2)
		ns, okf := 0, true
		if rest := b[19 : len(b)-1]; len(rest) > 0 {
			okf = len(rest) >= 2 && len(rest) <= 10 && rest[0] == '.'
			if okf {
				f, ok := num(20, len(rest)-1)
				okf = ok
				for i := len(rest) - 1; i < 9; i++ {
					f *= 10
				}
				ns = f
			}
		}
		if ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && okf && mo >= 1 && mo <= 12 && d >= 1 &&
			d <= daysIn(time.Month(mo), y) && h < 24 && mi < 60 && s < 60 {
			return time.Date(y, time.Month(mo), d, h, mi, s, ns, time.UTC), true
		}
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

func daysIn(m time.Month, year int) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
