package stripeapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

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
// events evs were rejected with errs (nil for accepted events) in a commit
// of their own, before the request is acknowledged: the path of a request
// none of whose events was accepted, whose reports have no events to
// commit with.
func (h *handler) reportStreamErrors(ctx context.Context, c *call, evs []event.Event, errs []error) error {
	reports, err := h.streamReports(c, evs, errs, func(name string) (string, error) { return h.meterID(ctx, name) })
	if err != nil {
		return err
	}
	return h.reports.put(ctx, c.now, reports)
}

// streamReports builds the error reports of a stream request whose events
// evs were rejected with errs (nil for accepted events): one per meter
// named, one for the event names without a meter. meterOf returns the id
// of the meter of an event name, "" when there is none.
func (h *handler) streamReports(c *call, evs []event.Event, errs []error, meterOf func(name string) (string, error)) ([]ErrorReport, error) {
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
			id, err := meterOf(evs[i].Name)
			if err != nil {
				return nil, err
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
	return reports, nil
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
