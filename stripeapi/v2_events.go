package stripeapi

import (
	"context"
	"net/http"
	"time"

	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/stripeapi/internal/jsonw"
	"github.com/meterdb/meterdb/stripeapi/internal/wire"
)

// v2MeterEvent is the v2.billing.meter_event object.
type v2MeterEvent struct {
	Object     string            `json:"object"`
	Created    string            `json:"created"`
	EventName  string            `json:"event_name"`
	Identifier string            `json:"identifier"`
	Livemode   bool              `json:"livemode"`
	Payload    map[string]string `json:"payload"`
	Timestamp  string            `json:"timestamp"`
}

// v2CreateMeterEvent serves POST /v2/billing/meter_events: validation is
// synchronous, and the engine's rejections are 400s with its codes.
func (h *handler) v2CreateMeterEvent(c *call, p *jsonw.Params) (execFunc, error) {
	var ev event.Event
	ev.Name = p.Str("event_name", event.MaxEventNameLength, true)
	ev.Identifier = p.Str("identifier", event.MaxIdentifierLength, false)
	ev.Payload = p.StrMap("payload", true, event.MaxPayloadKeys, event.MaxPayloadKeyLength, event.MaxPayloadValueLength)
	ev.Timestamp = p.Time("timestamp")
	if ev.Identifier == "" && c.idemKey != "" {
		ev.Identifier = derivedIdentifier(c)
	}
	return func(ctx context.Context) (any, error) {
		return c.recordKV(ctx, ev, func(rec event.Event) any {
			return &v2MeterEvent{
				Object: "v2.billing.meter_event", Created: v2Time(c.now), EventName: rec.Name,
				Identifier: rec.Identifier, Livemode: c.key.livemode, Payload: ev.Payload, Timestamp: v2Time(time.Unix(rec.Timestamp.Unix(), 0)),
			}
		})
	}, nil
}

// v2MeterEventAdjustment is the v2.billing.meter_event_adjustment object.
type v2MeterEventAdjustment struct {
	Object string `json:"object"`
	ID     string `json:"id"`
	Cancel struct {
		Identifier string `json:"identifier"`
	} `json:"cancel"`
	Created   string `json:"created"`
	EventName string `json:"event_name"`
	Livemode  bool   `json:"livemode"`
	Status    string `json:"status"`
	Type      string `json:"type"`
}

func errCancelConfig(msg string) *apiError {
	return wire.InvalidRequest(http.StatusBadRequest, codeInvalidCancelConfig, "cancel", msg)
}

// v2CreateMeterEventAdjustment serves POST
// /v2/billing/meter_event_adjustments. A type other than cancel, or a
// cancel object without an identifier, is invalid_cancel_configuration.
// Cancellation is synchronous: the adjustment comes back complete, or
// fails with the engine's codes, as in v1.
func (h *handler) v2CreateMeterEventAdjustment(c *call, p *jsonw.Params) (execFunc, error) {
	name := p.Str("event_name", event.MaxEventNameLength, true)
	typ := p.Str("type", 100, true)
	cn := p.Object("cancel", false)
	var ident string
	if cn != nil {
		ident = cn.Str("identifier", event.MaxIdentifierLength, false)
	}
	if err := p.Done(); err != nil {
		return nil, err
	}
	switch {
	case typ != "cancel":
		return nil, errCancelConfig("The adjustment configuration is invalid for the adjustment type: type must be cancel.")
	case cn == nil:
		return nil, errCancelConfig("The adjustment configuration is invalid for the adjustment type: a cancel adjustment needs cancel.identifier.")
	case ident == "":
		return nil, errCancelConfig("The adjustment configuration is invalid for the adjustment type: cancel.identifier must name the event to cancel.")
	}
	return func(ctx context.Context) (any, error) {
		if err := h.db.Cancel(ctx, name, ident); err != nil {
			return nil, err
		}
		a := &v2MeterEventAdjustment{Object: "v2.billing.meter_event_adjustment", ID: "mtr_event_adj_" + meter.RandomBase62(24),
			Created: v2Time(c.now), EventName: name, Livemode: c.key.livemode, Status: "complete", Type: typ}
		a.Cancel.Identifier = ident
		return a, nil
	}, nil
}
