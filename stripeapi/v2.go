package stripeapi

import (
	"bytes"
	"net/http"
	"time"

	"github.com/meterdb/meterdb/stripeapi/internal/jsonw"
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

// jsonRequest reads a v2 request's JSON body. prepare reads the
// parameters through p; the request fails with the first unknown
// parameter, or else the first problem p recorded. The body itself is
// what idempotency compares: stripe-go's retries send the same bytes.
func jsonRequest(prepare func(c *call, p *jsonw.Params) (execFunc, error)) func(*call) (execFunc, error) {
	return func(c *call) (execFunc, error) {
		body, err := c.readV2Body(nil)
		if err != nil {
			return nil, err
		}
		c.canonical = body
		p, err := jsonw.NewParams(body)
		if err != nil {
			return nil, err
		}
		return prepareParams(c, p, prepare)
	}
}

// readV2Body reads a v2 request body, at most Options.MaxBodyBytes, into
// buf (which may be nil) and checks its Content-Type.
func (c *call) readV2Body(buf *bytes.Buffer) ([]byte, error) {
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	if err := c.readBody(buf); err != nil {
		return nil, err
	}
	body := buf.Bytes()
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	if err := c.checkContentType("application/json", "v2"); err != nil {
		return nil, err
	}
	return body, nil
}

// v2Time formats t as v2 responses do: RFC 3339 in UTC with milliseconds.
func v2Time(t time.Time) string { return t.UTC().Format(v2TimeLayout) }
