package dashboard

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/stripeapi"
)

// total is one exact number of a table cell.
type total struct {
	Start, End time.Time
	Value      string // exact decimal
	Count      int64
}

func totalOf(p period, s []meterdb.Summary) total {
	t := total{Start: p.Start, End: p.End, Value: "0"}
	for _, x := range s { // one summary without grouping
		t.Value, t.Count = x.Value.String(), x.Count
	}
	return t
}

// meterRow is a meter on the overview.
type meterRow struct {
	Meter              meter.Meter
	Today, Week, Month total
	Events             meterdb.MeterStats // counters since the database was opened
}

// health is the store health panel.
type health struct {
	Stats      meterdb.Stats
	Rate       ingestRate
	Durability string // "sync", "buffered" or "in memory"
	Ready      string // "" when the database accepts writes, else why not
	NoMeter    int64  // events since open whose event name matched no meter
}

func healthOf(db *meterdb.DB, st meterdb.Stats, rate ingestRate) health {
	h := health{Stats: st, Rate: rate, Durability: "sync"}
	switch {
	case st.InMemory:
		h.Durability = "in memory (no file)"
	case st.Durability == meterdb.DurabilityBuffered:
		h.Durability = "buffered"
	}
	if err := db.Ready(); err != nil {
		h.Ready = err.Error()
	}
	for _, m := range st.ByMeter {
		if m.ID == "" {
			h.NoMeter = m.Rejected
		}
	}
	return h
}

type overviewPage struct {
	layout
	Periods     []period
	Meters      []meterRow
	Truncated   bool // more meters than shown
	Reports     []stripeapi.ErrorReport
	MoreReports bool
	MeterNames  map[string]string // display names by meter id, for the reports
	Health      health
}

// serveOverview shows every meter with its totals, recent error reports,
// the ingest rate and store health.
func (h *handler) serveOverview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rg := rangesAt(h.opts.Now())
	st := h.db.Stats()
	p := overviewPage{layout: h.layout(r, "Overview"), Periods: []period{rg.today, rg.week, rg.month}}
	p.Health = healthOf(h.db, st, h.rate.observe(rg.now, st.EventsAccepted))
	if h.opts.Refresh > 0 {
		p.Refresh = max(1, int(h.opts.Refresh/time.Second))
	}
	ms, err := h.allMeters(ctx)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	p.Truncated = len(ms) >= maxMeters
	p.MeterNames = map[string]string{}
	for _, m := range ms {
		p.MeterNames[m.ID] = m.DisplayName
		row := meterRow{Meter: m}
		for _, ms := range st.ByMeter {
			if ms.ID == m.ID {
				row.Events = ms
			}
		}
		cells := []*total{&row.Today, &row.Week, &row.Month}
		for i, pd := range p.Periods {
			s, err := h.totals(ctx, m.ID, pd.Start, pd.End, meterdb.GroupNone)
			if err != nil {
				h.internal(w, r, err)
				return
			}
			*cells[i] = totalOf(pd, s)
		}
		p.Meters = append(p.Meters, row)
	}
	p.Reports, p.MoreReports, err = stripeapi.ListErrorReports(ctx, h.db, stripeapi.ErrorReportListParams{Limit: 10})
	if err != nil {
		h.internal(w, r, err)
		return
	}
	h.render(w, r, http.StatusOK, "overview", p)
}

type meterPage struct {
	layout
	Meter         meter.Meter
	Hourly, Daily chart
	HourlyRows    []meterdb.Summary
	DailyRows     []meterdb.Summary
	Top           []meterdb.CustomerUsage
	TopN          int
	TopStart      time.Time
	TopEnd        time.Time
	// Customers is a page of the meter's customers with usage in the
	// last 30 days, in customer order; Next is the cursor of the next page.
	Customers []meterdb.CustomerUsage
	After     string
	Next      string
}

// serveMeter shows a meter's usage over all customers, hourly and daily,
// and its top customers. ?top=N (1 to 100) sets how many.
func (h *handler) serveMeter(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	m, ok := h.lookupMeter(w, r, r.PathValue("id"))
	if !ok {
		return
	}
	n := h.opts.TopCustomers
	if s := r.URL.Query().Get("top"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > maxTopCustomers {
			h.fail(w, r, http.StatusBadRequest, "top must be a whole number from 1 to 100.")
			return
		}
		n = v
	}
	after := r.URL.Query().Get("after")
	if len(after) > maxCustomerLen {
		h.fail(w, r, http.StatusBadRequest, "after is too long to be a customer id.")
		return
	}
	rg := rangesAt(h.opts.Now())
	p := meterPage{layout: h.layout(r, m.DisplayName), Meter: m, TopN: n, TopStart: rg.topStart, TopEnd: rg.topEnd, After: after}
	var errs [4]error
	var more bool
	p.HourlyRows, errs[0] = h.totals(ctx, m.ID, rg.hourStart, rg.hourEnd, meterdb.GroupHour)
	p.DailyRows, errs[1] = h.totals(ctx, m.ID, rg.dayStart, rg.dayEnd, meterdb.GroupDay)
	p.Top, errs[2] = h.db.TopCustomers(ctx, meterdb.TopParams{Meter: m.ID, Start: rg.topStart, End: rg.topEnd, N: n})
	p.Customers, more, errs[3] = h.db.Customers(ctx, meterdb.CustomersParams{
		Meter: m.ID, Start: rg.topStart, End: rg.topEnd, After: after, Limit: customersPage})
	if err := errors.Join(errs[:]...); err != nil {
		h.internal(w, r, err)
		return
	}
	if more {
		p.Next = p.Customers[len(p.Customers)-1].Customer
	}
	p.Hourly = newChart("hourly", time.Hour, rg.hourStart, rg.hourEnd, p.HourlyRows)
	p.Daily = newChart("daily", 24*time.Hour, rg.dayStart, rg.dayEnd, p.DailyRows)
	h.render(w, r, http.StatusOK, "meter", p)
}

// customerMeter is one meter's usage by one customer.
type customerMeter struct {
	Meter         meter.Meter
	Month         total
	Hourly, Daily chart
	HourlyRows    []meterdb.Summary
	DailyRows     []meterdb.Summary
}

type customerPage struct {
	layout
	Customer string
	Meters   []customerMeter
	Unused   []meter.Meter // meters without usage by the customer in the last 35 days
}

// serveCustomer shows a customer's usage of each meter, hourly and daily:
// the summaries the Stripe API gives for the same ranges.
func (h *handler) serveCustomer(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	cus := r.PathValue("customer")
	if cus == "" || len(cus) > maxCustomerLen {
		h.fail(w, r, http.StatusNotFound, "No such customer.")
		return
	}
	ms, err := h.allMeters(ctx)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	rg := rangesAt(h.opts.Now())
	p := customerPage{layout: h.layout(r, cus), Customer: cus}
	for _, m := range ms {
		cm := customerMeter{Meter: m}
		q := func(start, end time.Time, g meterdb.Grouping) []meterdb.Summary {
			if err != nil {
				return nil
			}
			var s []meterdb.Summary
			s, err = h.db.Summaries(ctx, meterdb.SummaryParams{Meter: m.ID, Customer: cus, Start: start, End: end, Grouping: g})
			return s
		}
		cm.HourlyRows = q(rg.hourStart, rg.hourEnd, meterdb.GroupHour)
		cm.DailyRows = q(rg.dayStart, rg.dayEnd, meterdb.GroupDay)
		month := q(rg.month.Start, rg.month.End, meterdb.GroupNone)
		if err != nil {
			h.internal(w, r, err)
			return
		}
		if len(cm.DailyRows) == 0 {
			p.Unused = append(p.Unused, m)
			continue
		}
		cm.Month = totalOf(rg.month, month)
		cm.Hourly = newChart("hourly", time.Hour, rg.hourStart, rg.hourEnd, cm.HourlyRows)
		cm.Daily = newChart("daily", 24*time.Hour, rg.dayStart, rg.dayEnd, cm.DailyRows)
		p.Meters = append(p.Meters, cm)
	}
	h.render(w, r, http.StatusOK, "customer", p)
}
