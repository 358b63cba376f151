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
// are not counted and are written to an error report (see ErrorReport)
// before the request is acknowledged with {}.
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
		// them, on either path.
		kv := c.idemKV(func([]error) (any, bool) { return emptyObject{}, true })
		var errs []error
		var err error
		if us := h.streamUsages(ctx, sb); us != nil {
			errs, err = h.db.RecordUsageKV(ctx, us, kv)
		} else {
			errs, err = h.db.RecordBatchKV(ctx, sb.Events, kv)
		}
		if err != nil {
			return nil, err
		}
		h.stats.streamEvents(errs)
		// The events are committed: whatever happens to their error
		// report, the answer is what happened to them. A 500 here would
		// tell the client that nothing counted.
		if slices.ContainsFunc(errs, func(e error) bool { return e != nil }) {
			if err := h.reportStreamErrors(ctx, c, sb.Events, errs); err != nil {
				h.log.LogAttrs(ctx, slog.LevelError, "storing the error report of a stream request failed; its events were recorded",
					slog.String("request_id", c.id), slog.Any("error", err))
			}
		}
		return emptyObject{}, nil
	}, nil
}

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
// commit.
func (h *handler) streamUsages(ctx context.Context, sb *jsonw.Batch) []event.Usage {
	us := sb.Usages[:0]
	var m meter.Meter
	for i := range sb.Events {
		ev := &sb.Events[i]
		if ev.Name != m.EventName {
			var err error
			if m, err = h.db.MeterByEventName(ctx, ev.Name); err != nil || m.Status != meter.Active {
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
