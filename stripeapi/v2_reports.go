package stripeapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/meterdb/meterdb/stripeapi/internal/form"
	"github.com/meterdb/meterdb/stripeapi/internal/jsonw"
	"github.com/meterdb/meterdb/stripeapi/internal/wire"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

// Event types of error reports, as Stripe names its thin events.
const (
	// EventErrorReportTriggered reports stream events of an existing meter
	// that failed validation.
	EventErrorReportTriggered = "v1.billing.meter.error_report_triggered"
	// EventNoMeterFound reports stream events whose event_name matches no
	// meter.
	EventNoMeterFound = "v1.billing.meter.no_meter_found"
)

// ErrorReportTTL is how long error reports are kept: Stripe lists events of
// the last 30 days.
const ErrorReportTTL = 30 * 24 * time.Hour

// reportNamespace is the DB key-value namespace of error reports.
const reportNamespace = "stripeapi.error_reports"

// ErrorReport is the report of the stream events of one request that
// failed validation and were not counted: one per meter they named, and
// one (of type EventNoMeterFound, without Meter) for those whose event name
// matches no meter. The HTTP API serves it as a Stripe v2 thin event.
type ErrorReport struct {
	ID       string    `json:"-"`        // "evt_…"; sorts newest first
	Type     string    `json:"type"`     // EventErrorReportTriggered or EventNoMeterFound
	Created  time.Time `json:"created"`  // when the request was received
	Livemode bool      `json:"livemode"` // the mode of the session's API key
	Meter    string    `json:"meter,omitempty"`
	// RequestID and IdempotencyKey identify the stream request.
	RequestID      string `json:"request_id"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// ValidationStart and ValidationEnd bound the validation of the
	// request's events.
	ValidationStart time.Time         `json:"validation_start"`
	ValidationEnd   time.Time         `json:"validation_end"`
	ErrorCount      int64             `json:"error_count"`
	ErrorTypes      []ErrorReportType `json:"error_types"`
}

// ErrorReportType counts the failures of one code in a report.
type ErrorReportType struct {
	// Code is one of Stripe's asynchronous codes (no_meter,
	// archived_meter, meter_event_no_customer_defined,
	// meter_event_invalid_value, meter_event_value_too_many_digits,
	// timestamp_in_future, timestamp_too_far_in_past) or
	// duplicate_meter_event.
	Code         string             `json:"code"`
	ErrorCount   int64              `json:"error_count"`
	SampleErrors []ErrorReportError `json:"sample_errors"`
}

// ErrorReportError is one failed event: the engine's message and the
// event's identifier ("" when it had none).
type ErrorReportError struct {
	Message    string `json:"error_message"`
	Identifier string `json:"identifier"`
}

// reportRecord is what the key-value area stores for one request: its reports,
// under a key that sorts newest first.
type reportRecord struct {
	Reports []ErrorReport `json:"reports"`
}

// asyncCode maps an engine code to the code Stripe reports asynchronously.
func asyncCode(code string) string {
	switch code {
	case event.CodeNoCustomer:
		return "meter_event_no_customer_defined"
	case event.CodeNoValue, event.CodeInvalidValue:
		return "meter_event_invalid_value"
	}
	return code
}

var reportSeq atomic.Uint32

// reportDecodes counts decoded report records, for tests of the cost of
// listing.
var reportDecodes atomic.Int64

// newReportKey returns a key-value key that sorts before every key made
// earlier: the complement of the time in nanoseconds, then of a counter
// (for equal times), then a random suffix (across processes).
func newReportKey(now time.Time) string {
	return fmt.Sprintf("%016x%08x", ^uint64(now.UnixNano()), ^reportSeq.Add(1)) + meter.RandomBase62(6)
}

const reportKeyLen = 30

func reportID(key string, i int) string { return fmt.Sprintf("evt_%s%02x", key, i) }

// parseReportID splits an ErrorReport ID into its key-value key and index.
func parseReportID(id string) (key string, i int, ok bool) {
	rest, found := strings.CutPrefix(id, "evt_")
	if !found || len(rest) != reportKeyLen+2 {
		return "", 0, false
	}
	n, err := strconv.ParseUint(rest[reportKeyLen:], 16, 8)
	if err != nil {
		return "", 0, false
	}
	return rest[:reportKeyLen], int(n), true
}

// reportStreamErrors stores the error reports of a stream request whose
// events evs were rejected with errs (nil for accepted events), before
// the request is acknowledged.
func (h *handler) reportStreamErrors(ctx context.Context, c *call, evs []event.Event, errs []error) error {
	end := h.db.Now()
	var reports []ErrorReport
	byMeter := map[string]int{} // meter id ("" for none) -> index in reports
	for i, err := range errs {
		if err == nil {
			continue
		}
		code, msg := "", err.Error()
		var ee *event.Error
		if errors.As(err, &ee) {
			code = asyncCode(ee.Code)
		}
		meterID, typ := "", EventNoMeterFound
		if code != event.CodeNoMeter {
			id, err := h.meterID(ctx, evs[i].Name)
			if err != nil {
				return err
			}
			if id != "" {
				meterID, typ = id, EventErrorReportTriggered
			}
		}
		ri, ok := byMeter[meterID]
		if !ok {
			ri = len(reports)
			byMeter[meterID] = ri
			reports = append(reports, ErrorReport{Type: typ, Created: c.now, Livemode: c.key.livemode, Meter: meterID,
				RequestID: c.id, IdempotencyKey: c.idemKey, ValidationStart: c.now, ValidationEnd: end})
		}
		r := &reports[ri]
		r.ErrorCount++
		ti := slices.IndexFunc(r.ErrorTypes, func(t ErrorReportType) bool { return t.Code == code })
		if ti < 0 {
			ti = len(r.ErrorTypes)
			r.ErrorTypes = append(r.ErrorTypes, ErrorReportType{Code: code})
		}
		t := &r.ErrorTypes[ti]
		t.ErrorCount++
		t.SampleErrors = append(t.SampleErrors, ErrorReportError{Message: msg, Identifier: evs[i].Identifier})
	}
	return h.reports.put(ctx, c.now, reports)
}

// meterID returns the id of the meter with the given event name, or ""
// when there is none.
func (h *handler) meterID(ctx context.Context, name string) (string, error) {
	m, err := h.db.MeterByEventName(ctx, name)
	switch {
	case errors.Is(err, meter.ErrNotFound):
		return "", nil
	case err != nil:
		return "", err
	}
	return m.ID, nil
}

// ErrorReportListParams select error reports. The zero value lists the
// newest ten.
type ErrorReportListParams struct {
	// Limit is the most reports returned, 1 to 100; zero means 10.
	Limit int
	// After is the ID of the last report of the previous page; the page
	// holds the reports after it (older ones). "" starts at the newest.
	After string
	// Meter keeps only the reports about this meter id.
	Meter string
	// Types keeps only reports of these types; empty keeps all.
	Types []string
	// Since (inclusive) and Until (exclusive) bound Created; zero times
	// leave the bound open.
	Since, Until time.Time
}

// ListErrorReports returns error reports of the meter event stream, newest
// first, and whether more follow. Reports are kept for ErrorReportTTL.
// An After that is not a report ID is an error.
func ListErrorReports(ctx context.Context, db *meterdb.DB, p ErrorReportListParams) ([]ErrorReport, bool, error) {
	if p.Limit == 0 {
		p.Limit = 10
	}
	if p.Limit < 0 || p.Limit > 100 {
		return nil, false, fmt.Errorf("stripeapi: ErrorReportListParams.Limit is %d, want 1 to 100", p.Limit)
	}
	var afterKey string
	afterIdx := -1
	if p.After != "" {
		k, i, ok := parseReportID(p.After)
		if !ok {
			return nil, false, fmt.Errorf("stripeapi: %q is not an error report ID", p.After)
		}
		afterKey, afterIdx = k, i
	}
	if prefix, ok, none := indexFor(p); none {
		return nil, false, nil
	} else if ok {
		_, indexed, err := db.GetKV(ctx, reportIndexNamespace, indexMarker)
		if err != nil {
			return nil, false, err
		}
		if indexed {
			return listIndexed(ctx, db, prefix, p, afterKey, afterIdx)
		}
	}
	var out []ErrorReport
	more := false
	var decodeErr error
	// Start just before afterKey so that its later reports are included,
	// or at the first record created before Until.
	start := ""
	if afterKey != "" {
		start = afterKey[:len(afterKey)-1]
	}
	if !p.Until.IsZero() {
		start = max(start, timeKeyPrefix(p.Until.Add(-time.Nanosecond)))
	}
	err := db.ListKV(ctx, reportNamespace, start, func(key string, value []byte) bool {
		if key < afterKey {
			return true
		}
		var rec reportRecord
		reportDecodes.Add(1)
		if err := json.Unmarshal(value, &rec); err != nil {
			decodeErr = fmt.Errorf("stripeapi: error report %s: %w", key, err)
			return false
		}
		for i, r := range rec.Reports {
			if key == afterKey && i <= afterIdx {
				continue
			}
			if !p.Since.IsZero() && r.Created.Before(p.Since) {
				return false // older reports follow
			}
			if !p.Until.IsZero() && !r.Created.Before(p.Until) ||
				p.Meter != "" && r.Meter != p.Meter ||
				len(p.Types) > 0 && !slices.Contains(p.Types, r.Type) {
				continue
			}
			if len(out) == p.Limit {
				more = true
				return false
			}
			r.ID = reportID(key, i)
			out = append(out, r)
		}
		return true
	})
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		return nil, false, err
	}
	return out, more, nil
}

// GetErrorReport returns the error report with the given ID; the second
// result is false when there is none (or it expired).
func GetErrorReport(ctx context.Context, db *meterdb.DB, id string) (ErrorReport, bool, error) {
	key, i, ok := parseReportID(id)
	if !ok {
		return ErrorReport{}, false, nil
	}
	raw, found, err := db.GetKV(ctx, reportNamespace, key)
	if err != nil || !found {
		return ErrorReport{}, false, err
	}
	var rec reportRecord
	reportDecodes.Add(1)
	if err := json.Unmarshal(raw, &rec); err != nil {
		return ErrorReport{}, false, fmt.Errorf("stripeapi: error report %s: %w", key, err)
	}
	if i >= len(rec.Reports) {
		return ErrorReport{}, false, nil
	}
	r := rec.Reports[i]
	r.ID = id
	return r, true, nil
}

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
