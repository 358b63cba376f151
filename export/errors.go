package export

import "errors"

// ErrInvalid is what every parameter error of this package unwraps to.
var ErrInvalid = errors.New("export: invalid parameter")

// ParamError reports an export parameter that breaks a rule.
type ParamError struct {
	Param   string // meter, from, to, grouping or format
	Message string // a sentence
}

func (e *ParamError) Error() string { return "export: " + e.Param + ": " + e.Message }
func (e *ParamError) Unwrap() error { return ErrInvalid }
