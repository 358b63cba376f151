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
	Known      bool // false when the query failed
}

func totalOf(p period, s []meterdb.Summary, err error) total {
	t := total{Start: p.Start, End: p.End, Known: err == nil, Value: "0"}
	for _, x := range s { // one summary without grouping
		t.Value, t.Count = x.Value.String(), x.Count
	}
	return t
}

// meterRow is a meter on the overview.
type meterRow struct {
	Meter               meter.Meter
	Today, Week, Month  total
}

// health is the store health panel.
type health struct {
	Stats meterdb.Stats
	Rate  ingestRate
}

type overviewPage struct {
	layout
	Periods      []period
	Meters       []meterRow
	Truncated    bool // more meters than shown
	Reports      []stripeapi.ErrorReport
	MoreReports  bool
	Health       health
	QueriesError string
}

// serveOverview shows every meter with its totals, recent error reports,
// the ingest rate and store health.
func (h *handler) serveOverview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	rg := rangesAt(h.opts.Now())
	st := h.db.Stats()
	p := overviewPage{layout: h.layout(r, "Overview"), Periods: []period{rg.today, rg.week, rg.month}}
	p.Health = health{Stats: st, Rate: h.rate.observe(rg.now, st.EventsAccepted)}
	if h.opts.Refresh > 0 {
		p.Refresh = max(1, int(h.opts.Refresh/time.Second))
	}
	ms, err := h.allMeters(ctx)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	p.Truncated = len(ms) >= maxMeters
	for _, m := range ms {
		row := meterRow{Meter: m}
		cells := []*total{&row.Today, &row.Week, &row.Month}
		for i, pd := range p.Periods {
			s, err := h.totals(ctx, m.ID, pd.Start, pd.End, meterdb.GroupNone)
			if err != nil && !errors.Is(err, errPending) {
				h.internal(w, r, err)
				return
			} else if err != nil {
				p.QueriesError = err.Error()
			}
			*cells[i] = totalOf(pd, s, err)
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
	Meter          meter.Meter
	Hourly, Daily  chart
	HourlyRows     []meterdb.Summary
	DailyRows      []meterdb.Summary
	Top            []customerUsage
	TopN           int
	TopStart       time.Time
	TopEnd         time.Time
	QueriesError   string
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
	rg := rangesAt(h.opts.Now())
	p := meterPage{layout: h.layout(r, m.DisplayName), Meter: m, TopN: n, TopStart: rg.topStart, TopEnd: rg.topEnd}
	var errs []error
	var err error
	p.HourlyRows, err = h.totals(ctx, m.ID, rg.hourStart, rg.hourEnd, meterdb.GroupHour)
	errs = append(errs, err)
	p.DailyRows, err = h.totals(ctx, m.ID, rg.dayStart, rg.dayEnd, meterdb.GroupDay)
	errs = append(errs, err)
	p.Top, err = h.topCustomers(ctx, m.ID, rg.topStart, rg.topEnd, n)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		if !errors.Is(err, errPending) {
			h.internal(w, r, err)
			return
		}
		p.QueriesError = errPending.Error()
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
		cm.Month = totalOf(rg.month, month, nil)
		cm.Hourly = newChart("hourly", time.Hour, rg.hourStart, rg.hourEnd, cm.HourlyRows)
		cm.Daily = newChart("daily", 24*time.Hour, rg.dayStart, rg.dayEnd, cm.DailyRows)
		p.Meters = append(p.Meters, cm)
	}
	h.render(w, r, http.StatusOK, "customer", p)
}
