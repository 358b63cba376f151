package stripeapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/stripeapi/internal/jsonw"
	"github.com/meterdb/meterdb/stripeapi/internal/wire"
)

// MaxStreamEvents is the most events one meter event stream request may
// carry, as Stripe documents it.
const MaxStreamEvents = jsonw.MaxEvents

// v2Stream serves POST /v2/billing/meter_event_stream, authenticated with
// a session token. The request is checked synchronously for its shape (a
// JSON object with 1 to 100 events, each with event_name and payload, and
// strings within Stripe's limits); a request that fails is rejected whole.
// The events are then recorded as one group, and those the engine rejects
// are not counted and are written to an error report (see ErrorReport),
// committed with the accepted events, before the request is acknowledged
// with {}.
func (h *handler) v2Stream(c *call) (execFunc, error) {
	sb := jsonw.GetBatch()
	body, err := c.readV2Body(&sb.Buf)
	if err == nil {
		err = sb.Decode(body, h.names)
	}
	if err != nil {
		sb.Release()
		return nil, err
	}
	c.canonical = body
	for i := range sb.Events {
		ev := &sb.Events[i]
		if err := event.CheckShape(ev); err != nil {
			sb.Release()
			var ee *event.Error
			if errors.As(err, &ee) {
				param := fmt.Sprintf("events[%d][%s]", i, ee.Param)
				if strings.HasPrefix(ee.Param, "payload[") {
					param = fmt.Sprintf("events[%d][payload]%s", i, ee.Param[len("payload"):])
				}
				return nil, wire.InvalidRequest(http.StatusBadRequest, ee.Code, param, fmt.Sprintf("events[%d]: %s", i, ee.Message))
			}
			return nil, err
		}
		if ev.Identifier == "" && c.idemKey != "" {
			ev.Identifier = derivedIdentifier(c) + "_" + strconv.Itoa(i)
		}
	}
	return func(ctx context.Context) (any, error) {
		defer sb.Release()
		// The response is the same whatever happens to each event (their
		// errors go to the error reports): the key's record commits with
		// them, on either path, and so do the error reports, built from
		// meters read beforehand (the callback must not call the DB; the
		// typed path converts with the same), once a first report opened
		// the report store. On a replica of a
		// shared log the callback's records are a second change after the
		// events, which buys no atomicity and would turn a failed report
		// into a failed request: the reports take their own commit there.
		kv := c.idemKV(func([]error) (any, bool) { return emptyObject{}, true })
		var rep *streamReport // set once a first report opened the store
		var meters map[string]meter.Meter
		if h.reports.inited.Load() && !h.db.Replicated() {
			if meters = h.streamMeters(ctx, sb); meters != nil {
				rep = &streamReport{h: h, c: c, evs: sb.Events, meters: meters, idem: kv, size: -1}
				kv = rep.kv
			}
		}
		var errs []error
		var err error
		if us := h.streamUsages(ctx, sb, meters); us != nil {
			errs, err = h.db.RecordUsageKV(ctx, us, kv)
		} else {
			errs, err = h.db.RecordBatchKV(ctx, sb.Events, kv)
		}
		if err != nil {
			return nil, err
		}
		h.stats.streamEvents(errs)
		switch {
		case rep != nil && rep.size >= 0:
			if err := h.reports.stored(ctx, rep.size); err != nil {
				h.log.LogAttrs(ctx, slog.LevelError, "bounding the error reports failed",
					slog.String("request_id", c.id), slog.Any("error", err))
			}
		case slices.ContainsFunc(errs, isError):
			// No event was accepted (or the reports could not be built
			// in the commit): the reports take a commit of their own.
			// The events are committed: whatever happens to their error
			// report, the answer is what happened to them. A 500 here
			// would tell the client that nothing counted.
			if err := h.reportStreamErrors(ctx, c, sb.Events, errs); err != nil {
				h.log.LogAttrs(ctx, slog.LevelError, "storing the error report of a stream request failed; its events were recorded",
					slog.String("request_id", c.id), slog.Any("error", err))
			}
		}
		return emptyObject{}, nil
	}, nil
}

func isError(err error) bool { return err != nil }

// streamReport commits the error reports of a stream request with its
// accepted events, through the callback of RecordUsageKV or
// RecordBatchKV, which must not call the DB: the meters are read before
// the events are recorded.
type streamReport struct {
	h      *handler
	c      *call
	evs    []event.Event
	meters map[string]meter.Meter // by event name (streamMeters)
	idem   func([]error) []meterdb.KVWrite
	size   int64 // of the report record committed, -1 for none
}

// kv returns the request's Idempotency-Key record and its error reports.
func (r *streamReport) kv(errs []error) []meterdb.KVWrite {
	var ws []meterdb.KVWrite
	if r.idem != nil {
		ws = r.idem(errs)
	}
	if slices.ContainsFunc(errs, isError) {
		if rws, size, ok := r.h.commitReports(r.c, r.evs, errs, r.meters); ok {
			ws, r.size = append(ws, rws...), size
		}
	}
	return ws
}

// streamMeters returns the meter of each event name of sb (the zero
// Meter for a name without one), or nil when one could not be read.
func (h *handler) streamMeters(ctx context.Context, sb *jsonw.Batch) map[string]meter.Meter {
	meters := make(map[string]meter.Meter, 1)
	for i := range sb.Events {
		name := sb.Events[i].Name
		if _, ok := meters[name]; ok {
			continue
		}
		m, err := h.db.MeterByEventName(ctx, name)
		if err != nil && !errors.Is(err, meter.ErrNotFound) {
			return nil
		}
		meters[name] = m
	}
	return meters
}

// commitReports returns the writes that store the error reports of the
// stream events evs rejected with errs, to be committed with the accepted
// ones, and the report record's size. meters holds the meters by event
// name (streamMeters); ok is false when an event was rejected by a meter
// its name had none of when they were read (one created meanwhile), or
// when the record would be too large to commit with the events: the
// reports then take a commit of their own, which reads the ids again.
func (h *handler) commitReports(c *call, evs []event.Event, errs []error, meters map[string]meter.Meter) (ws []meterdb.KVWrite, size int64, ok bool) {
	// streamReports asks only for the meters of events rejected with
	// another code than no_meter, which had a meter when validated.
	reports, err := h.streamReports(c, evs, errs, func(name string) (string, error) {
		if id := meters[name].ID; id != "" {
			return id, nil
		}
		return "", errUnknownMeterName
	})
	if err != nil {
		return nil, 0, false
	}
	ws, size, err = h.reports.records(c.now, reports)
	if err != nil || size > meterdb.MaxKVValue {
		return nil, 0, false
	}
	return ws, size, true
}

// errUnknownMeterName is commitReports' lookup failure: an event name
// that had no meter when the meters were read, yet one rejected an event.
var errUnknownMeterName = errors.New("stripeapi: a meter appeared after the ids were read")

// streamUsages converts the events of sb to typed usage, which the engine
// records without reading payload maps, when every event converts: its
// meter exists and is active, and its payload holds the meter's customer
// and, unless the meter counts, a valid value. Otherwise it returns nil
// and the request takes the map path, whose validation reports each
// problem with its code and param (no_meter, archived_meter,
// payload_no_customer_defined, payload_no_value_defined,
// payload_invalid_value, …); what both paths check alike (timestamps,
// duplicates, a meter deactivated meanwhile) is reported the same way by
// either. One request makes one call either way, so it waits for one
// commit. meters, when not nil, holds the meters by event name
// (streamMeters), which are then not read again.
func (h *handler) streamUsages(ctx context.Context, sb *jsonw.Batch, meters map[string]meter.Meter) []event.Usage {
	us := sb.Usages[:0]
	var m meter.Meter
	for i := range sb.Events {
		ev := &sb.Events[i]
		if ev.Name != m.EventName {
			if meters != nil {
				m = meters[ev.Name]
			} else {
				var err error
				if m, err = h.db.MeterByEventName(ctx, ev.Name); err != nil {
					return nil
				}
			}
			if m.Status != meter.Active {
				return nil
			}
		}
		u := event.Usage{Name: ev.Name, Customer: ev.Payload[m.CustomerKey], Identifier: ev.Identifier, Timestamp: ev.Timestamp}
		if u.Customer == "" {
			return nil
		}
		if m.Formula != meter.Count {
			raw := ev.Payload[m.ValueKey]
			if raw == "" {
				return nil
			}
			v, err := event.ParseValue(raw)
			if err != nil {
				return nil
			}
			u.Value = v
		}
		us = append(us, u)
	}
	sb.Usages = us
	return us
}
