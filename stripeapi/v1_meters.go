package stripeapi

import (
	"context"
	"fmt"
	"net/http"

	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/stripeapi/internal/form"
	"github.com/meterdb/meterdb/stripeapi/internal/wire"
)

// v1Meter is the billing.meter object.
type v1Meter struct {
	ID              string `json:"id"`
	Object          string `json:"object"`
	Created         int64  `json:"created"`
	CustomerMapping struct {
		EventPayloadKey string `json:"event_payload_key"`
		Type            string `json:"type"`
	} `json:"customer_mapping"`
	DefaultAggregation struct {
		Formula string `json:"formula"`
	} `json:"default_aggregation"`
	DisplayName       string  `json:"display_name"`
	EventName         string  `json:"event_name"`
	EventTimeWindow   *string `json:"event_time_window"`
	Livemode          bool    `json:"livemode"`
	Status            string  `json:"status"`
	StatusTransitions struct {
		DeactivatedAt *int64 `json:"deactivated_at"`
	} `json:"status_transitions"`
	Updated       int64 `json:"updated"`
	ValueSettings struct {
		EventPayloadKey string `json:"event_payload_key"`
	} `json:"value_settings"`
}

func (c *call) v1Meter(m meter.Meter) *v1Meter {
	o := &v1Meter{
		ID: m.ID, Object: "billing.meter", Created: m.Created.Unix(), DisplayName: m.DisplayName,
		EventName: m.EventName, Livemode: c.key.livemode, Status: string(m.Status), Updated: m.Updated.Unix(),
	}
	o.CustomerMapping.EventPayloadKey, o.CustomerMapping.Type = m.CustomerKey, "by_id"
	o.DefaultAggregation.Formula = string(m.Formula)
	o.ValueSettings.EventPayloadKey = m.ValueKey
	if m.EventTimeWindow != meter.NoWindow {
		w := string(m.EventTimeWindow)
		o.EventTimeWindow = &w
	}
	if !m.DeactivatedAt.IsZero() {
		t := m.DeactivatedAt.Unix()
		o.StatusTransitions.DeactivatedAt = &t
	}
	return o
}

// maxIDLength bounds the object ids the handler looks up, in bytes.
const maxIDLength = 5000

// meterID returns the meter id of the path ({id}).
func (c *call) meterID() (string, error) {
	id := c.r.PathValue("id")
	if len(id) > maxIDLength {
		return "", wire.InvalidRequest(http.StatusNotFound, codeResourceMissing, "id",
			fmt.Sprintf("No such billing.meter: '%s'", wire.Truncate(id, 100)))
	}
	return id, nil
}

// v1ListMeters serves GET /v1/billing/meters.
func (h *handler) v1ListMeters(c *call, p *form.Params) (execFunc, error) {
	p.Expand()
	pg := readV1Page(p)
	status := meter.Status(p.Enum("status", false, "active", "inactive"))
	return func(ctx context.Context) (any, error) {
		ms, more, err := h.db.ListMeters(ctx, meter.ListParams{
			Status: status, Limit: pg.limit, StartingAfter: pg.startingAfter, EndingBefore: pg.endingBefore,
		})
		if err != nil {
			return nil, err
		}
		out := make([]*v1Meter, len(ms))
		for i, m := range ms {
			out[i] = c.v1Meter(m)
		}
		return newV1List("/v1/billing/meters", out, more), nil
	}, nil
}

// v1CreateMeter serves POST /v1/billing/meters.
func (h *handler) v1CreateMeter(c *call, p *form.Params) (execFunc, error) {
	var mp meter.Params
	if cm := p.Hash("customer_mapping", false); cm != nil {
		mp.CustomerKey = cm.Str("event_payload_key", meter.MaxPayloadKeyLength, true)
		cm.Enum("type", true, "by_id")
	}
	if agg := p.Hash("default_aggregation", true); agg != nil {
		mp.Formula = meter.Formula(agg.Enum("formula", true, string(meter.Count), string(meter.Last), string(meter.Sum)))
	}
	mp.DisplayName = p.Str("display_name", meter.MaxDisplayNameLength, true)
	mp.EventName = p.Str("event_name", meter.MaxEventNameLength, true)
	mp.EventTimeWindow = meter.Window(p.Enum("event_time_window", false, string(meter.Day), string(meter.Hour)))
	p.Expand()
	if vs := p.Hash("value_settings", false); vs != nil {
		mp.ValueKey = vs.Str("event_payload_key", meter.MaxPayloadKeyLength, true)
	}
	return func(ctx context.Context) (any, error) {
		m, err := h.db.CreateMeter(ctx, mp)
		if err != nil {
			return nil, err
		}
		return c.v1Meter(m), nil
	}, nil
}

// v1RetrieveMeter serves GET /v1/billing/meters/{id}.
func (h *handler) v1RetrieveMeter(c *call, p *form.Params) (execFunc, error) {
	id, err := c.meterID()
	if err != nil {
		return nil, err
	}
	p.Expand()
	return func(ctx context.Context) (any, error) {
		m, err := h.db.Meter(ctx, id)
		if err != nil {
			return nil, err
		}
		return c.v1Meter(m), nil
	}, nil
}

// v1UpdateMeter serves POST /v1/billing/meters/{id}. Without display_name
// it returns the meter unchanged.
func (h *handler) v1UpdateMeter(c *call, p *form.Params) (execFunc, error) {
	id, err := c.meterID()
	if err != nil {
		return nil, err
	}
	name := ""
	if p.Has("display_name") {
		name = p.Str("display_name", meter.MaxDisplayNameLength, true)
	}
	p.Expand()
	return func(ctx context.Context) (any, error) {
		var m meter.Meter
		var err error
		if name == "" {
			m, err = h.db.Meter(ctx, id)
		} else {
			m, err = h.db.UpdateMeter(ctx, id, name)
		}
		if err != nil {
			return nil, err
		}
		return c.v1Meter(m), nil
	}, nil
}

// v1DeactivateMeter serves POST /v1/billing/meters/{id}/deactivate.
func (h *handler) v1DeactivateMeter(c *call, p *form.Params) (execFunc, error) {
	return h.v1SetStatus(c, p, h.db.DeactivateMeter)
}

// v1ReactivateMeter serves POST /v1/billing/meters/{id}/reactivate.
func (h *handler) v1ReactivateMeter(c *call, p *form.Params) (execFunc, error) {
	return h.v1SetStatus(c, p, h.db.ReactivateMeter)
}

func (h *handler) v1SetStatus(c *call, p *form.Params, set func(context.Context, string) (meter.Meter, error)) (execFunc, error) {
	id, err := c.meterID()
	if err != nil {
		return nil, err
	}
	p.Expand()
	return func(ctx context.Context) (any, error) {
		m, err := set(ctx, id)
		if err != nil {
			return nil, err
		}
		return c.v1Meter(m), nil
	}, nil
}
