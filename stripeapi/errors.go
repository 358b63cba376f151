package stripeapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"syscall"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/stripeapi/internal/wire"
)

// Error types, as Stripe names them.
const (
	typeIdempotency = "idempotency_error"
	typeAPI         = "api_error"
)

// Error codes the handler itself produces. Codes of validation failures in
// the engine come from the meter and event packages and meterdb.QueryError.
const (
	codeParametersExclusive = "parameters_exclusive"
	codeResourceMissing     = "resource_missing"
	codeIdempotencyKeyInUse = "idempotency_key_in_use"
	codeRateLimit           = "rate_limit"
)

// documented lists the codes Stripe documents under
// https://stripe.com/docs/error-codes; only these get a doc_url.
var documented = map[string]bool{
	wire.CodeParameterUnknown: true, wire.CodeParameterMissing: true, wire.CodeParameterInvalidInteger: true,
	wire.CodeParameterInvalidEmpty: true, codeParametersExclusive: true, codeResourceMissing: true,
	codeIdempotencyKeyInUse: true, codeRateLimit: true,
}

// apiError is a failure as the API reports it (see wire.Error).
type apiError = wire.Error

// errRateLimited is a 429: nothing was done, and a retry after a pause
// may succeed, which Stripe-Should-Retry tells the client.
func errRateLimited() *apiError {
	e := wire.InvalidRequest(http.StatusTooManyRequests, codeRateLimit, "",
		"Request rate limit exceeded. Slow down, or retry after a short pause.")
	retry := true
	e.Retry = &retry
	return e
}

func errNotFoundRoute(method, path string) *apiError {
	return wire.InvalidRequest(http.StatusNotFound, "", "",
		fmt.Sprintf("Unrecognized request URL (%s: %s).", method, path))
}

// toAPIError maps any error from decoding or the engine to an *apiError.
// The second result reports whether err was unexpected (an internal
// failure worth logging).
func toAPIError(err error) (*apiError, bool) {
	var ae *apiError
	var me *meter.Error
	var ee *event.Error
	var qe *meterdb.QueryError
	switch {
	case errors.As(err, &ae):
		return ae, false
	case errors.As(err, &me):
		status := http.StatusBadRequest
		if errors.Is(me, meter.ErrNotFound) && me.Param == "id" {
			status = http.StatusNotFound
		}
		return wire.InvalidRequest(status, me.Code, me.Param, me.Message), false
	case errors.As(err, &ee):
		return wire.InvalidRequest(http.StatusBadRequest, ee.Code, ee.Param, ee.Message), false
	case errors.As(err, &qe):
		return wire.InvalidRequest(http.StatusBadRequest, qe.Code, qe.Param, qe.Message), false
	case errors.Is(err, meterdb.ErrClosed):
		return &apiError{Status: http.StatusServiceUnavailable, Type: typeAPI,
			Message: "The server is shutting down; retry the request shortly."}, false
	case errors.Is(err, meterdb.ErrUnavailable):
		// Nothing was recorded and the identifiers stay free: the same
		// request, retried, is recorded once. The store logs the cause
		// (once per episode), not every request.
		retry := true
		return &apiError{Status: http.StatusServiceUnavailable, Type: typeAPI, Retry: &retry,
			Message: "The server could not store the request (" + unavailableCause(err) + "); nothing was recorded. Retry the request shortly."}, false
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &apiError{Status: http.StatusServiceUnavailable, Type: typeAPI,
			Message: "The request was cancelled before it completed."}, false
	}
	return &apiError{Status: http.StatusInternalServerError, Type: typeAPI,
		Message: "An internal error occurred while processing the request."}, true
}

// unavailableCause names why a write could not be stored, in words a
// client can act on.
func unavailableCause(err error) string {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return "its disk is full"
	}
	return "its storage is recovering from a write error"
}
