package stripeapi

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/stripeapi/internal/form"
	"github.com/meterdb/meterdb/stripeapi/internal/jsonw"
	"github.com/meterdb/meterdb/stripeapi/internal/wire"
)

// v2Event is a v2.core.event carrying an error report.
type v2Event struct {
	ID            string            `json:"id"`
	Object        string            `json:"object"`
	Type          string            `json:"type"`
	Created       string            `json:"created"`
	Livemode      bool              `json:"livemode"`
	Context       *string           `json:"context"`
	Reason        *v2EventReason    `json:"reason"`
	RelatedObject *v2RelatedObject  `json:"related_object"`
	Data          v2ErrorReportData `json:"data"`
}

type v2EventReason struct {
	Type    string `json:"type"`
	Request struct {
		ID             string `json:"id"`
		IdempotencyKey string `json:"idempotency_key"`
	} `json:"request"`
}

type v2RelatedObject struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	URL  string `json:"url"`
}

type v2ErrorReportData struct {
	DeveloperMessageSummary string `json:"developer_message_summary"`
	Reason                  struct {
		ErrorCount int64              `json:"error_count"`
		ErrorTypes []v2EventErrorType `json:"error_types"`
	} `json:"reason"`
	ValidationStart string `json:"validation_start"`
	ValidationEnd   string `json:"validation_end"`
}

type v2EventErrorType struct {
	Code         string          `json:"code"`
	ErrorCount   int64           `json:"error_count"`
	SampleErrors []v2SampleError `json:"sample_errors"`
}

type v2SampleError struct {
	ErrorMessage string `json:"error_message"`
	Request      struct {
		Identifier string `json:"identifier"`
	} `json:"request"`
}

func newV2Event(r ErrorReport) *v2Event {
	e := &v2Event{ID: r.ID, Object: "v2.core.event", Type: r.Type, Created: v2Time(r.Created), Livemode: r.Livemode,
		Reason: &v2EventReason{Type: "request"}}
	e.Reason.Request.ID, e.Reason.Request.IdempotencyKey = r.RequestID, r.IdempotencyKey
	if r.Meter != "" {
		e.RelatedObject = &v2RelatedObject{ID: r.Meter, Type: "billing.meter", URL: "/v1/billing/meters/" + r.Meter}
	}
	d := &e.Data
	noun := "events"
	if r.ErrorCount == 1 {
		noun = "event"
	}
	d.DeveloperMessageSummary = fmt.Sprintf("%d meter %s failed validation and were not recorded.", r.ErrorCount, noun)
	if r.ErrorCount == 1 {
		d.DeveloperMessageSummary = "1 meter event failed validation and was not recorded."
	}
	d.Reason.ErrorCount = r.ErrorCount
	d.Reason.ErrorTypes = make([]v2EventErrorType, len(r.ErrorTypes))
	for i, t := range r.ErrorTypes {
		et := v2EventErrorType{Code: t.Code, ErrorCount: t.ErrorCount, SampleErrors: make([]v2SampleError, len(t.SampleErrors))}
		for j, s := range t.SampleErrors {
			et.SampleErrors[j].ErrorMessage = s.Message
			et.SampleErrors[j].Request.Identifier = s.Identifier
		}
		d.Reason.ErrorTypes[i] = et
	}
	d.ValidationStart, d.ValidationEnd = v2Time(r.ValidationStart), v2Time(r.ValidationEnd)
	return e
}

// eventChunk is how many reports a page of GET /v2/core/events reads at a
// time: a report holds up to 100 sample errors (about 25 KB of JSON), so
// a page of 100 is written in pieces instead of being held whole.
const eventChunk = 3

// eventPage is a page of GET /v2/core/events (a v2 list: data,
// next_page_url, previous_page_url), written to the client as it is read
// from the DB, one chunk of reports at a time, each chunk in its own read
// transaction: a client that does not read its response pins one chunk,
// not the page, and no transaction.
type eventPage struct {
	db    *meterdb.DB
	p     ErrorReportListParams // the next chunk's cursor and the page's filters
	limit int                   // reports in the page at most
	q     url.Values            // the query of next_page_url
	// first is the first chunk, read before the status is written so
	// that a failure still gets an error response.
	first []ErrorReport
	more  bool // whether reports follow first
}

func (pg *eventPage) nextChunk(ctx context.Context, done int) ([]ErrorReport, bool, error) {
	p := pg.p
	p.Limit = min(eventChunk, pg.limit-done)
	reports, more, err := ListErrorReports(ctx, pg.db, p)
	if err == nil && len(reports) > 0 {
		pg.p.After = reports[len(reports)-1].ID
	}
	return reports, more, err
}

// writeJSON writes the page to w. An error after the first chunk leaves
// the body truncated (and is returned for the log).
func (pg *eventPage) writeJSON(ctx context.Context, w io.Writer) error {
	if _, err := io.WriteString(w, "{\n  \"data\": ["); err != nil {
		return err
	}
	reports, more, n := pg.first, pg.more, 0
	pg.first = nil
	for {
		for _, r := range reports {
			b, err := json.MarshalIndent(newV2Event(r), "    ", "  ")
			if err != nil {
				return err
			}
			sep := ",\n    "
			if n == 0 {
				sep = "\n    "
			}
			if _, err := io.WriteString(w, sep); err != nil {
				return err
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
			n++
		}
		if !more || n >= pg.limit {
			break
		}
		var err error
		if reports, more, err = pg.nextChunk(ctx, n); err != nil {
			return err
		}
	}
	next := "null"
	if more && n > 0 {
		pg.q.Set("page", pg.p.After)
		b, err := json.Marshal("/v2/core/events?" + pg.q.Encode())
		if err != nil {
			return err
		}
		next = string(b)
	}
	tail := "\n  ],\n"
	if n == 0 {
		tail = "],\n"
	}
	_, err := io.WriteString(w, tail+"  \"next_page_url\": "+next+",\n  \"previous_page_url\": null\n}\n")
	return err
}

// v2ListEvents serves GET /v2/core/events: error reports as thin events,
// newest first. Parameters: limit (1 to 100, default 10), page (the
// cursor from next_page_url), object_id (a meter id), types (a list),
// created[gt|gte|lt|lte] (unix seconds or RFC 3339).
func (h *handler) v2ListEvents(c *call, p *form.Params) (execFunc, error) {
	var lp ErrorReportListParams
	q := url.Values{}
	if n, ok := p.Int("limit", false); ok {
		if n < 1 || n > 100 {
			p.Fail(wire.ErrInvalidParam("limit", "Invalid limit: must be between 1 and 100."))
		}
		lp.Limit = int(n)
		q.Set("limit", strconv.FormatInt(n, 10))
	}
	lp.After = p.Str("page", form.MaxExpandLength, false)
	if lp.After != "" {
		if _, _, ok := parseReportID(lp.After); !ok {
			p.Fail(wire.ErrInvalidParam("page", "Invalid page: use the next_page_url of a previous page."))
		}
	}
	if lp.Meter = p.Str("object_id", form.MaxExpandLength, false); lp.Meter != "" {
		q.Set("object_id", lp.Meter)
	}
	lp.Types = p.StringList("types")
	for i, t := range lp.Types {
		q.Set(fmt.Sprintf("types[%d]", i), t)
	}
	if cr := p.Hash("created", false); cr != nil {
		bound := func(k string, inclusive bool, set *time.Time) {
			s := cr.Str(k, 64, false)
			if s == "" {
				return
			}
			t, ok := parseBound(s)
			if !ok {
				p.Fail(wire.ErrInvalidParam("created["+k+"]", "Invalid created["+k+"]: must be unix seconds or an RFC 3339 date-time."))
				return
			}
			if inclusive == (k == "gte") { // gte and lt: as is; gt and lte: just after
				*set = t
			} else {
				*set = t.Add(time.Nanosecond)
			}
			q.Set("created["+k+"]", s)
		}
		bound("gt", false, &lp.Since)
		bound("gte", true, &lp.Since)
		bound("lt", false, &lp.Until)
		bound("lte", true, &lp.Until)
	}
	return func(ctx context.Context) (any, error) {
		if err := h.reports.init(ctx); err != nil {
			return nil, err
		}
		pg := &eventPage{db: h.db, p: lp, limit: cmp.Or(lp.Limit, 10), q: q}
		var err error
		if pg.first, pg.more, err = pg.nextChunk(ctx, 0); err != nil {
			return nil, err
		}
		return streamed(pg.writeJSON), nil
	}, nil
}

// parseBound reads unix seconds or an RFC 3339 date-time.
func parseBound(s string) (time.Time, bool) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), true
	}
	return jsonw.ParseRFC3339([]byte(s))
}

// v2RetrieveEvent serves GET /v2/core/events/{id}.
func (h *handler) v2RetrieveEvent(c *call, p *form.Params) (execFunc, error) {
	id := c.r.PathValue("id")
	return func(ctx context.Context) (any, error) {
		r, ok, err := GetErrorReport(ctx, h.db, id)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, wire.InvalidRequest(http.StatusNotFound, codeNotFound, "id",
				fmt.Sprintf("No such v2.core.event: '%s'. The resource wasn't found.", wire.Truncate(id, 100)))
		}
		return newV2Event(r), nil
	}, nil
}
