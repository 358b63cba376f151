package stripeapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/stripeapi/internal/form"
	"github.com/meterdb/meterdb/stripeapi/internal/wire"
)

// call is the state of one request as it moves through the pipeline.
type call struct {
	h       *handler
	w       http.ResponseWriter
	r       *http.Request
	id      string // Request-Id
	api     *apiVersion
	key     apiKey
	now     time.Time
	rt      *route
	matched *route // the route of the method and path, before authentication; nil for none
	idemKey string // Idempotency-Key of a POST, trimmed; "" when absent
	// canonical is a deterministic encoding of the decoded parameters,
	// set by the decoder; idempotency compares it between requests. A
	// form decoder leaves it nil and sets formRoot instead: the encoding is
	// built (params) only for a request with an Idempotency-Key.
	canonical []byte
	formRoot  *form.Node
	form      *v1Form // the pooled decoding state of formRoot, until releaseForm
	// idem, set by the idempotency layer for a request with an
	// Idempotency-Key, builds the key's record for a successful result v;
	// a route that records events commits it with them (recordKV) and the
	// layer then stores nothing more.
	idem       func(v any) (meterdb.KVWrite, error)
	idemStored bool
}

// execute runs the execution step and renders its result.
func (c *call) execute(run execFunc) response {
	if c.h.execHook != nil {
		c.h.execHook(c.r)
	}
	v, err := run(c.r.Context())
	if err != nil {
		return c.errorResponse(err)
	}
	if s, ok := v.(streamed); ok {
		return response{status: http.StatusOK, stream: s}
	}
	// A body that nothing keeps after it is written (no idempotency
	// record holds it) goes into a pooled buffer.
	var pooled *[]byte
	var buf []byte
	if _, ok := v.(jsonAppender); ok && c.idemKey == "" {
		pooled = bodyPool.Get().(*[]byte)
		buf = (*pooled)[:0]
	}
	body, err := appendBody(buf, v)
	if err != nil {
		return c.errorResponse(err)
	}
	if pooled != nil {
		*pooled = body
	}
	return response{status: http.StatusOK, body: body, pooled: pooled}
}

// recordKV records ev and returns it with its identifier and timestamp
// filled in, and the response result builds from it. With an
// Idempotency-Key, the key's record is committed in the same commit as the
// event, so that a crash can keep neither without the other.
func (c *call) recordKV(ctx context.Context, ev event.Event, result func(rec event.Event) any) (any, error) {
	evs := [1]event.Event{ev}
	var out any
	kv := c.idemKV(func(errs []error) (any, bool) {
		if errs[0] != nil {
			return nil, false
		}
		out = result(evs[0])
		return out, true
	})
	errs, err := c.h.db.RecordBatchKV(ctx, evs[:], kv)
	if err != nil {
		return nil, err
	}
	if errs[0] != nil {
		return nil, errs[0]
	}
	if out == nil {
		out = result(evs[0])
	}
	return out, nil
}

// idemKV returns the kv function of a DB.Record…KV call that commits the
// Idempotency-Key's record with the events: result gives the response's
// result once the events' errors are known, or false when the request will
// not succeed. It returns nil for a request without an Idempotency-Key.
// A call that then fails as a whole (its commit, say) is answered with an
// error status, for which the idempotency layer stores nothing and does
// not read idemStored.
func (c *call) idemKV(result func(errs []error) (any, bool)) func(errs []error) []meterdb.KVWrite {
	if c.idem == nil {
		return nil
	}
	return func(errs []error) []meterdb.KVWrite {
		v, ok := result(errs)
		if !ok {
			return nil
		}
		rec, err := c.idem(v)
		if err != nil {
			return nil
		}
		c.idemStored = true
		return []meterdb.KVWrite{rec}
	}
}

// readBody reads the request's body, at most Options.MaxBodyBytes, into
// buf. A body that would exceed the handler's body budget fails with a
// 429, one beyond MaxBodyBytes with a 413.
func (c *call) readBody(buf *bytes.Buffer) error {
	if c.r.Body == nil {
		return nil
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(c.w, c.r.Body, c.h.opts.MaxBodyBytes)); err != nil {
		if errors.Is(err, errBodyBudget) {
			return errBusy()
		}
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return wire.InvalidRequest(http.StatusRequestEntityTooLarge, "", "",
				fmt.Sprintf("Request body too large: the limit is %d bytes.", tooLarge.Limit))
		}
		return wire.InvalidRequest(http.StatusBadRequest, "", "", "Invalid request: the body could not be read.")
	}
	return nil
}

// checkContentType fails a request whose Content-Type, when it has one,
// is not the media type want that the API version api takes.
func (c *call) checkContentType(want, api string) error {
	if ct := c.r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != want {
			return wire.InvalidRequest(http.StatusBadRequest, "", "", fmt.Sprintf(
				"Invalid Content-Type %q: %s requests take %s bodies.", wire.Truncate(ct, 100), api, want))
		}
	}
	return nil
}
