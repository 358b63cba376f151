package stripeapi

import (
	"bytes"
	"net/http"
	"strings"
	"sync"

	"github.com/meterdb/meterdb/stripeapi/internal/form"
	"github.com/meterdb/meterdb/stripeapi/internal/wire"
)

// apiV1 renders errors as v1 does:
// {"error":{"type","code","message","param","doc_url"}}.
var apiV1 = &apiVersion{name: "v1", errorBody: v1ErrorBody}

type v1ErrorObject struct {
	Code    string `json:"code,omitempty"`
	DocURL  string `json:"doc_url,omitempty"`
	Message string `json:"message"`
	Param   string `json:"param,omitempty"`
	Type    string `json:"type"`
}

func v1ErrorBody(e *apiError) any {
	o := v1ErrorObject{Code: e.Code, Message: e.Message, Param: e.Param, Type: e.Type}
	if documented[e.Code] {
		o.DocURL = "https://stripe.com/docs/error-codes/" + strings.ReplaceAll(e.Code, "_", "-")
	}
	return struct {
		Error v1ErrorObject `json:"error"`
	}{o}
}

// formRequest reads a request's parameters form-encoded from the query
// string and, for POST, the body: the parameters of v1 and of v2 GETs.
// prepare reads them through p; the request fails with the first unknown
// parameter, or else the first problem p recorded, before the returned
// execution step runs.
func formRequest(prepare func(c *call, p *form.Params) (execFunc, error)) func(*call) (execFunc, error) {
	return func(c *call) (execFunc, error) {
		root, err := c.decodeV1Form()
		if err != nil {
			return nil, err
		}
		c.formRoot = root
		p := form.NewParams(root)
		return prepareParams(c, p, prepare)
	}
}

// prepareParams runs a route's prepare step over its parameter reader p,
// then fails with the first unknown parameter or recorded problem.
func prepareParams[P interface{ Done() error }](c *call, p P, prepare func(*call, P) (execFunc, error)) (execFunc, error) {
	run, err := prepare(c, p)
	if err != nil {
		return nil, err
	}
	if err := p.Done(); err != nil {
		return nil, err
	}
	return run, nil
}

// decodeV1Form decodes the query string and, for POST, the form body.
func (c *call) decodeV1Form() (*form.Node, error) {
	f := v1Forms.Get().(*v1Form)
	c.form = f
	root := f.tree.Root()
	pairs, maxPairs := 0, c.h.opts.MaxParams
	if err := form.Decode(root, c.r.URL.RawQuery, &pairs, maxPairs); err != nil {
		return nil, err
	}
	if c.r.Method != http.MethodPost || c.r.Body == nil {
		return root, nil
	}
	if err := c.readBody(&f.body); err != nil {
		return nil, err
	}
	body := f.body.Bytes()
	if len(body) == 0 {
		return root, nil
	}
	if err := c.checkContentType("application/x-www-form-urlencoded", "v1"); err != nil {
		return nil, err
	}
	// The decoded strings are substrings of this copy (or unescaped copies),
	// never of the pooled buffer.
	if err := form.Decode(root, string(body), &pairs, maxPairs); err != nil {
		return nil, err
	}
	return root, nil
}

// v1Form is what decoding a v1 request reuses from one request to the
// next: the parameter tree and the body's buffer. A call holds one from
// its decoding to the end of ServeHTTP (releaseForm).
type v1Form struct {
	tree form.Tree
	body bytes.Buffer
}

var v1Forms = sync.Pool{New: func() any { return new(v1Form) }}

// maxPooledFormNodes is the most nodes of a v1Form returned to v1Forms: a
// form with many parameters does not keep its tree alive.
const maxPooledFormNodes = 64

// releaseForm returns c's v1Form, if it has one, to v1Forms. Nothing may
// use the decoded tree (formRoot, its Params) afterwards; the strings read
// from it stay valid.
func (c *call) releaseForm() {
	f := c.form
	if f == nil {
		return
	}
	c.form, c.formRoot = nil, nil
	f.tree.Reset()
	f.body.Reset()
	if f.tree.Nodes() <= maxPooledFormNodes && f.body.Cap() <= maxPooledBody {
		v1Forms.Put(f)
	}
}

// v1List is Stripe's list object.
type v1List[T any] struct {
	Object  string `json:"object"`
	Data    []T    `json:"data"`
	HasMore bool   `json:"has_more"`
	URL     string `json:"url"`
}

func newV1List[T any](url string, data []T, hasMore bool) v1List[T] {
	if data == nil {
		data = []T{}
	}
	return v1List[T]{Object: "list", Data: data, HasMore: hasMore, URL: url}
}

// v1Page reads the pagination parameters of a v1 list endpoint.
type v1Page struct {
	limit                       int
	startingAfter, endingBefore string
}

func readV1Page(p *form.Params) v1Page {
	var pg v1Page
	if n, ok := p.Int("limit", false); ok {
		if n < 1 || n > 100 {
			p.Fail(wire.ErrInvalidParam("limit", "Invalid limit: must be between 1 and 100."))
		}
		pg.limit = int(n)
	}
	pg.startingAfter = p.Str("starting_after", form.MaxExpandLength, false)
	pg.endingBefore = p.Str("ending_before", form.MaxExpandLength, false)
	if pg.startingAfter != "" && pg.endingBefore != "" {
		p.Fail(wire.InvalidRequest(http.StatusBadRequest, codeParametersExclusive, "ending_before",
			"You may only specify one of these parameters: ending_before, starting_after."))
	}
	if pg.limit == 0 {
		pg.limit = 10
	}
	return pg
}
