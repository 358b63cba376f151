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
)

// Error types, as Stripe names them.
const (
	typeInvalidRequest = "invalid_request_error"
	typeIdempotency    = "idempotency_error"
	typeAPI            = "api_error"
)

// Error codes the handler itself produces. Codes of validation failures in
// the engine come from the meter and event packages and meterdb.QueryError.
const (
	codeParameterUnknown        = "parameter_unknown"
	codeParameterMissing        = "parameter_missing"
	codeParameterInvalid        = "parameter_invalid"
	codeParameterInvalidInteger = "parameter_invalid_integer"
	codeParameterInvalidEmpty   = "parameter_invalid_empty"
	codeParametersExclusive     = "parameters_exclusive"
	codeStringTooLong           = "string_too_long"
	codeResourceMissing         = "resource_missing"
	codeIdempotencyKeyInUse     = "idempotency_key_in_use"
	codeRateLimit               = "rate_limit"
)

// documented lists the codes Stripe documents under
// https://stripe.com/docs/error-codes; only these get a doc_url.
var documented = map[string]bool{
	codeParameterUnknown: true, codeParameterMissing: true, codeParameterInvalidInteger: true,
	codeParameterInvalidEmpty: true, codeParametersExclusive: true, codeResourceMissing: true,
	codeIdempotencyKeyInUse: true, codeRateLimit: true,
}

// apiError is a failure as the API reports it: an HTTP status and the
// fields of Stripe's error object. Each API version renders it in its own
// shape.
type apiError struct {
	Status  int
	Type    string
	Code    string // may be empty
	Param   string // may be empty
	Message string
	// Retry, when set, becomes the Stripe-Should-Retry response header.
	Retry *bool
}

func (e *apiError) Error() string { return e.Message }

func invalidRequest(status int, code, param, msg string) *apiError {
	return &apiError{Status: status, Type: typeInvalidRequest, Code: code, Param: param, Message: msg}
}

func errUnknownParam(param string) *apiError {
	return invalidRequest(http.StatusBadRequest, codeParameterUnknown, param, "Received unknown parameter: "+param)
}

func errMissingParam(param string) *apiError {
	return invalidRequest(http.StatusBadRequest, codeParameterMissing, param, "Missing required param: "+param+".")
}

func errInvalidParam(param, msg string) *apiError {
	return invalidRequest(http.StatusBadRequest, codeParameterInvalid, param, msg)
}

func errInvalidInteger(param, value string) *apiError {
	if len(value) > 64 {
		value = value[:64] + "…"
	}
	return invalidRequest(http.StatusBadRequest, codeParameterInvalidInteger, param, "Invalid integer: "+value)
}

func errInvalidEmpty(param string) *apiError {
	return invalidRequest(http.StatusBadRequest, codeParameterInvalidEmpty, param, fmt.Sprintf(
		"You passed an empty string for '%s'. We assume empty values are an attempt to unset a parameter; "+
			"however '%s' cannot be unset. You should remove '%s' from your request or supply a non-empty value.",
		param, param, param))
}

func errTooLong(param string, max int) *apiError {
	return invalidRequest(http.StatusBadRequest, codeStringTooLong, param,
		fmt.Sprintf("Invalid %s: must be at most %d characters.", param, max))
}

// errRateLimited is a 429: nothing was done, and a retry after a pause
// may succeed, which Stripe-Should-Retry tells the client.
func errRateLimited() *apiError {
	e := invalidRequest(http.StatusTooManyRequests, codeRateLimit, "",
		"Request rate limit exceeded. Slow down, or retry after a short pause.")
	retry := true
	e.Retry = &retry
	return e
}

func errNotFoundRoute(method, path string) *apiError {
	return invalidRequest(http.StatusNotFound, "", "",
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
		return invalidRequest(status, me.Code, me.Param, me.Message), false
	case errors.As(err, &ee):
		return invalidRequest(http.StatusBadRequest, ee.Code, ee.Param, ee.Message), false
	case errors.As(err, &qe):
		return invalidRequest(http.StatusBadRequest, qe.Code, qe.Param, qe.Message), false
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
