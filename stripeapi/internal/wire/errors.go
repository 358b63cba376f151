package wire

import (
	"fmt"
	"net/http"
	"strings"
)

// TypeInvalidRequest is Stripe's error type for a request that cannot be
// served as sent.
const TypeInvalidRequest = "invalid_request_error"

// Error codes of parameter problems, as Stripe names them.
const (
	CodeParameterUnknown        = "parameter_unknown"
	CodeParameterMissing        = "parameter_missing"
	CodeParameterInvalid        = "parameter_invalid"
	CodeParameterInvalidInteger = "parameter_invalid_integer"
	CodeParameterInvalidEmpty   = "parameter_invalid_empty"
	CodeStringTooLong           = "string_too_long"
)

// Error is a failure as the API reports it: an HTTP status and the fields
// of Stripe's error object. Each API version renders it in its own shape.
type Error struct {
	Status  int
	Type    string
	Code    string // may be empty
	Param   string // may be empty
	Message string
	// Retry, when set, becomes the Stripe-Should-Retry response header.
	Retry *bool
}

func (e *Error) Error() string { return e.Message }

// InvalidRequest returns an error of type invalid_request_error.
func InvalidRequest(status int, code, param, msg string) *Error {
	return &Error{Status: status, Type: TypeInvalidRequest, Code: code, Param: param, Message: msg}
}

// ErrUnknownParam reports a parameter the endpoint does not take.
func ErrUnknownParam(param string) *Error {
	return InvalidRequest(http.StatusBadRequest, CodeParameterUnknown, param, "Received unknown parameter: "+param)
}

// ErrMissingParam reports a required parameter that is absent.
func ErrMissingParam(param string) *Error {
	return InvalidRequest(http.StatusBadRequest, CodeParameterMissing, param, "Missing required param: "+param+".")
}

// ErrInvalidParam reports a parameter whose value is not acceptable.
func ErrInvalidParam(param, msg string) *Error {
	return InvalidRequest(http.StatusBadRequest, CodeParameterInvalid, param, msg)
}

// ErrInvalidInteger reports an integer parameter that does not parse.
func ErrInvalidInteger(param, value string) *Error {
	if len(value) > 64 {
		value = value[:64] + "…"
	}
	return InvalidRequest(http.StatusBadRequest, CodeParameterInvalidInteger, param, "Invalid integer: "+value)
}

// ErrInvalidEmpty reports an empty value for a parameter that cannot be
// unset.
func ErrInvalidEmpty(param string) *Error {
	return InvalidRequest(http.StatusBadRequest, CodeParameterInvalidEmpty, param, fmt.Sprintf(
		"You passed an empty string for '%s'. We assume empty values are an attempt to unset a parameter; "+
			"however '%s' cannot be unset. You should remove '%s' from your request or supply a non-empty value.",
		param, param, param))
}

// ErrTooLong reports a string parameter longer than max bytes.
func ErrTooLong(param string, max int) *Error {
	return InvalidRequest(http.StatusBadRequest, CodeStringTooLong, param,
		fmt.Sprintf("Invalid %s: must be at most %d characters.", param, max))
}

// ErrTwice reports an object member given more than once: taking the last
// would drop the first without a word.
func ErrTwice(param string) *Error {
	return ErrInvalidParam(param, "Invalid "+param+": given more than once.")
}

// ErrInvalidUTF8 reports parameter param as not valid UTF-8; bad bytes of
// the name show as U+FFFD. An empty param names the whole body.
func ErrInvalidUTF8(param string) *Error {
	param = strings.ToValidUTF8(param, "\uFFFD")
	if param == "" {
		return ErrInvalidParam("", "Invalid request body: it is not valid UTF-8.")
	}
	return ErrInvalidParam(param, "Invalid "+param+": must be valid UTF-8.")
}

// Truncate cuts s to n bytes and marks the cut with an ellipsis, for
// echoing client input in messages.
func Truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// NestedName is parameter k inside prefix, in Stripe's bracket notation.
func NestedName(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "[" + k + "]"
}

// Problems keeps the first problem a parameter reader records; readers
// report it once every parameter was read.
type Problems struct {
	First *Error
}

// Fail records e unless an earlier problem was recorded.
func (p *Problems) Fail(e *Error) {
	if p.First == nil {
		p.First = e
	}
}
