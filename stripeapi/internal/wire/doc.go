// Package wire holds what the Stripe API's decoders share: the error a
// decoder or parameter reader returns (an HTTP status and the fields of
// Stripe's error object), its constructors for the parameter codes, and
// the naming of nested parameters in bracket notation.
//
// The decoders themselves live beside it: internal/form reads v1
// form-encoded parameters and internal/jsonw v2 JSON bodies and the meter
// event stream. stripeapi renders an *Error in the shape of the API
// version that answers. Nothing here keeps state; every function is safe
// for concurrent use.
package wire
