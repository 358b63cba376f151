package dashboard

import (
	"context"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/meter"
)

// Chart ranges.
const (
	hourlyWindows = 48 // hours on the hourly charts
	dailyWindows  = 35 // days on the daily charts
	maxMeters     = 1000
	customersPage = 50 // customers listed per meter page
)

// period is a named range of whole days ending with today (UTC).
type period struct {
	Name       string
	Start, End time.Time
}

// ranges are the time ranges of the pages, fixed by one reading of the clock.
type ranges struct {
	now                time.Time
	hourStart, hourEnd time.Time // the hourly charts: 48 hours ending with the current one
	dayStart, dayEnd   time.Time // the daily charts: 35 days ending with today
	today, week, month period    // today, the last 7 and the last 30 days (today included)
	topStart, topEnd   time.Time // the top customers: the last 30 days
}

func rangesAt(now time.Time) ranges {
	now = now.UTC()
	hour := now.Truncate(time.Hour)
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	tomorrow := day.AddDate(0, 0, 1)
	r := ranges{
		now:       now,
		hourEnd:   hour.Add(time.Hour),
		hourStart: hour.Add(-(hourlyWindows - 1) * time.Hour),
		dayEnd:    tomorrow,
		dayStart:  day.AddDate(0, 0, -(dailyWindows - 1)),
		today:     period{"Today", day, tomorrow},
		week:      period{"7 days", day.AddDate(0, 0, -6), tomorrow},
		month:     period{"30 days", day.AddDate(0, 0, -29), tomorrow},
	}
	r.topStart, r.topEnd = r.month.Start, r.month.End
	return r
}

// allMeters returns every meter, newest first, at most maxMeters.
func (h *handler) allMeters(ctx context.Context) ([]meter.Meter, error) {
	var out []meter.Meter
	p := meter.ListParams{Limit: 100}
	for len(out) < maxMeters {
		page, more, err := h.db.ListMeters(ctx, p)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if !more || len(page) == 0 {
			break
		}
		p.StartingAfter = page[len(page)-1].ID
	}
	return out, nil
}

// totals returns the meter's usage over all customers (DB.Totals).
func (h *handler) totals(ctx context.Context, meterID string, start, end time.Time, g meterdb.Grouping) ([]meterdb.Summary, error) {
	return h.db.Totals(ctx, meterdb.TotalsParams{Meter: meterID, Start: start, End: end, Grouping: g})
}
