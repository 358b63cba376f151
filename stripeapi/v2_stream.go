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
		errs, err := h.combine.record(ctx, sb.Events)
		if err != nil {
			return nil, err
		}
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
