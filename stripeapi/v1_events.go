package stripeapi

import (
	"context"
	"time"

	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/stripeapi/internal/form"
)

// v1MeterEvent is the billing.meter_event object.
type v1MeterEvent struct {
	Object     string            `json:"object"`
	Created    int64             `json:"created"`
	EventName  string            `json:"event_name"`
	Identifier string            `json:"identifier"`
	Livemode   bool              `json:"livemode"`
	Payload    map[string]string `json:"payload"`
	Timestamp  int64             `json:"timestamp"`
}

// v1CreateMeterEvent serves POST /v1/billing/meter_events. Validation is
// synchronous: the engine's rejections come back as 400s carrying its
// codes (no_meter, archived_meter, duplicate_meter_event, …).
func (h *handler) v1CreateMeterEvent(c *call, p *form.Params) (execFunc, error) {
	var ev event.Event
	ev.Name = p.Str("event_name", event.MaxEventNameLength, true)
	p.Expand()
	ev.Identifier = p.Str("identifier", event.MaxIdentifierLength, false)
	ev.Payload = p.StrMap("payload", true, event.MaxPayloadKeys, event.MaxPayloadKeyLength, event.MaxPayloadValueLength)
	if ts, ok := p.Int("timestamp", false); ok {
		ev.Timestamp = time.Unix(ts, 0).UTC()
	}
	if ev.Identifier == "" && c.idemKey != "" {
		ev.Identifier = derivedIdentifier(c)
	}
	return func(ctx context.Context) (any, error) {
		return c.recordKV(ctx, ev, func(rec event.Event) any {
			return &v1MeterEvent{
				Object: "billing.meter_event", Created: c.now.Unix(), EventName: rec.Name,
				Identifier: rec.Identifier, Livemode: c.key.livemode, Payload: ev.Payload, Timestamp: rec.Timestamp.Unix(),
			}
		})
	}, nil
}

// v1MeterEventAdjustment is the billing.meter_event_adjustment object.
type v1MeterEventAdjustment struct {
	Object string `json:"object"`
	Cancel struct {
		Identifier string `json:"identifier"`
	} `json:"cancel"`
	EventName string `json:"event_name"`
	Livemode  bool   `json:"livemode"`
	Status    string `json:"status"`
	Type      string `json:"type"`
}

// v1CreateMeterEventAdjustment serves POST
// /v1/billing/meter_event_adjustments. Cancellation is synchronous, so the
// adjustment comes back with status complete; failures are 400s with the
// codes of event.CodeNotFound, event.CodeCancelExpired and
// event.CodeAlreadyCancelled.
func (h *handler) v1CreateMeterEventAdjustment(c *call, p *form.Params) (execFunc, error) {
	var ident string
	if cn := p.Hash("cancel", true); cn != nil {
		ident = cn.Str("identifier", event.MaxIdentifierLength, true)
	}
	name := p.Str("event_name", event.MaxEventNameLength, true)
	p.Expand()
	typ := p.Enum("type", true, "cancel")
	return func(ctx context.Context) (any, error) {
		if err := h.db.Cancel(ctx, name, ident); err != nil {
			return nil, err
		}
		a := &v1MeterEventAdjustment{Object: "billing.meter_event_adjustment", EventName: name,
			Livemode: c.key.livemode, Status: "complete", Type: typ}
		a.Cancel.Identifier = ident
		return a, nil
	}, nil
}
