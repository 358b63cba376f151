package export

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/meter"
)

// Path is where cmd/meterd serves Handler.
const Path = "/v1/meterdb/export"

// Handler returns an http.Handler that answers GET requests with
// query parameters meter, from, to (RFC 3339 or unix seconds), grouping
// (hour, day or none) and format (csv or ndjson) with the rows Write
// writes, streamed. A bad parameter gets 400 and an unknown meter 404,
// with a JSON body {"error": {"type", "code", "param", "message"}} in the
// shape of the Stripe API's errors; an error after the first row aborts
// the response, so that the client sees a truncated body rather than a
// complete-looking one. The handler does no authentication: mount it
// behind stripeapi.RequireAPIKey (as cmd/meterd does) or your own. It does
// not own db. Safe for concurrent use.
func Handler(db *meterdb.DB) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "", "", "Use GET.")
			return
		}
		p, err := paramsFromQuery(r.URL.Query())
		if err != nil {
			writeErr(w, err)
			return
		}
		ct := "text/csv; charset=utf-8"
		if p.Format == NDJSON {
			ct = "application/x-ndjson"
		}
		sw := &startWriter{w: w, contentType: ct}
		if err := Write(r.Context(), db, sw, p); err != nil {
			if !sw.started {
				writeErr(w, err)
				return
			}
			panic(http.ErrAbortHandler) // the status is sent: cut the body short
		}
		if !sw.started { // nothing was written (impossible for CSV, which has a header)
			sw.start()
		}
	})
}

func paramsFromQuery(q url.Values) (Params, error) {
	var p Params
	var err error
	p.Meter = q.Get("meter")
	if p.From, err = ParseTime("from", q.Get("from")); err != nil {
		return p, err
	}
	if p.To, err = ParseTime("to", q.Get("to")); err != nil {
		return p, err
	}
	if p.Grouping, err = ParseGrouping(q.Get("grouping")); err != nil {
		return p, err
	}
	p.Format, err = ParseFormat(q.Get("format"))
	return p, err
}

// startWriter sends the success header on the first write.
type startWriter struct {
	w           http.ResponseWriter
	contentType string
	started     bool
}

func (s *startWriter) start() {
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", s.contentType)
	h.Set("Cache-Control", "no-cache, no-store")
	s.w.WriteHeader(http.StatusOK)
}

func (s *startWriter) Write(b []byte) (int, error) {
	if !s.started {
		s.start()
	}
	return s.w.Write(b)
}

// writeErr answers err: 400 for a bad parameter, 404 for an unknown
// meter, 500 otherwise.
func writeErr(w http.ResponseWriter, err error) {
	var pe *ParamError
	var qe *meterdb.QueryError
	var me *meter.Error
	switch {
	case errors.As(err, &pe):
		writeError(w, http.StatusBadRequest, "parameter_invalid", pe.Param, pe.Message)
	case errors.As(err, &qe):
		writeError(w, http.StatusBadRequest, qe.Code, qe.Param, qe.Message)
	case errors.As(err, &me) && errors.Is(err, meter.ErrNotFound):
		writeError(w, http.StatusNotFound, me.Code, "meter", me.Message)
	case errors.Is(err, meterdb.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "", "", "The database is closed.")
	default:
		writeError(w, http.StatusInternalServerError, "", "", "The export failed: "+err.Error())
	}
}

// ErrorBody is the JSON body of an error response.
type ErrorBody struct {
	Error struct {
		Type    string `json:"type"`
		Code    string `json:"code,omitempty"`
		Param   string `json:"param,omitempty"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, param, msg string) {
	var b ErrorBody
	b.Error.Type, b.Error.Code, b.Error.Param, b.Error.Message = "invalid_request_error", code, param, msg
	if status >= 500 {
		b.Error.Type = "api_error"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(b)
}

func urlEscape(s string) string { return url.QueryEscape(s) }
