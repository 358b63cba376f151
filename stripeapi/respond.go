package stripeapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
)

// response is a rendered response: what is written, and what an
// idempotency record stores.
type response struct {
	status   int
	body     []byte
	stream   streamed // writes the body instead of body, for large GET responses
	retry    *bool    // Stripe-Should-Retry, when set
	replayed bool
	// pooled, when set, holds body, from bodyPool: release returns it
	// once the body is written.
	pooled *[]byte
}

// release returns the response's buffer to bodyPool; nothing may use its
// body afterwards.
func (res *response) release() {
	if res.pooled != nil && cap(*res.pooled) <= maxPooledBody {
		bodyPool.Put(res.pooled)
	}
	res.pooled, res.body = nil, nil
}

// encodeBody renders a successful result: the bytes sent and stored for a
// replay.
func encodeBody(v any) ([]byte, error) { return appendBody(nil, v) }

// appendBody appends the rendering of v to b: by its own encoder when it
// has one (a jsonAppender), else by json.MarshalIndent; the bytes are the
// same either way.
func appendBody(b []byte, v any) ([]byte, error) {
	if a, ok := v.(jsonAppender); ok {
		return append(a.appendJSON(b), '\n'), nil
	}
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("stripeapi: encoding response: %w", err)
	}
	if b == nil {
		return append(body, '\n'), nil
	}
	return append(append(b, body...), '\n'), nil
}

// errorResponse renders err in the shape of the call's API version.
func (c *call) errorResponse(err error) response {
	ae, internal := toAPIError(err)
	if internal {
		c.h.log.LogAttrs(c.r.Context(), slog.LevelError, "request failed",
			slog.String("request_id", c.id), slog.String("method", c.r.Method),
			slog.String("path", c.r.URL.Path), slog.Any("error", err))
	}
	body, mErr := json.MarshalIndent(c.api.errorBody(ae), "", "  ")
	if mErr != nil {
		panic(fmt.Sprintf("stripeapi: encoding an error body: %v", mErr)) // the body holds strings only
	}
	return response{status: ae.Status, body: append(body, '\n'), retry: ae.Retry}
}

// write is the one place responses are written.
func (c *call) write(res response) {
	hd := c.w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-cache, no-store")
	if c.idemKey != "" {
		hd.Set("Idempotency-Key", c.idemKey)
	}
	if res.replayed {
		hd.Set("Idempotent-Replayed", "true")
	}
	if res.retry != nil {
		hd.Set("Stripe-Should-Retry", fmt.Sprint(*res.retry))
	}
	if v := c.r.Header.Get("Stripe-Version"); v != "" && len(v) <= 64 {
		hd.Set("Stripe-Version", v)
	}
	if res.status == http.StatusUnauthorized {
		hd.Set("WWW-Authenticate", `Basic realm="meterdb"`)
		// A client without a valid key keeps no connection open.
		hd.Set("Connection", "close")
	}
	c.w.WriteHeader(res.status)
	if res.stream != nil {
		// The status is sent: a failure can only cut the body short.
		if err := res.stream(c.r.Context(), c.w); err != nil {
			c.h.log.LogAttrs(c.r.Context(), slog.LevelWarn, "writing a response failed",
				slog.String("request_id", c.id), slog.String("path", c.r.URL.Path), slog.Any("error", err))
		}
		return
	}
	c.w.Write(res.body)
}

// streamed is an execution result written in pieces as it is produced,
// for responses too large to hold whole while a slow client reads them
// (pages of error reports). Only GET routes return one: the idempotency
// layer stores bodies. A write deadline on the connection (the server's
// WriteTimeout) drops a client that stops reading.
type streamed func(ctx context.Context, w io.Writer) error
