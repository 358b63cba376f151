package meterdb_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

// TestCrossCustomerQueries records known usage for a few customers and
// checks Customers (with paging), Totals and TopCustomers against the
// numbers written out by hand.
func TestCrossCustomerQueries(t *testing.T) {
	db, _ := newDB(t, nil)
	sum := mustMeter(t, db, meter.Params{EventName: "tokens", Formula: meter.Sum})
	other := mustMeter(t, db, meter.Params{EventName: "calls", Formula: meter.Count})
	day := t0.Truncate(24 * time.Hour) // 2026-03-10 00:00
	rec := func(name, customer, value string, ts time.Time) {
		e := ev(name, customer, value, "")
		e.Timestamp = ts
		mustRecord(t, db, e)
	}
	// cus_a: 5 at 01:10 and 7 at 03:05; cus_b: 20 at 01:30; cus_c: 5 the
	// day before; cus_d: only on the other meter.
	rec("tokens", "cus_a", "5", day.Add(time.Hour+10*time.Minute))
	rec("tokens", "cus_a", "7", day.Add(3*time.Hour+5*time.Minute))
	rec("tokens", "cus_b", "20", day.Add(time.Hour+30*time.Minute))
	rec("tokens", "cus_c", "5", day.Add(-time.Hour))
	rec("calls", "cus_d", "", day.Add(time.Hour))

	full := meterdb.CustomersParams{Meter: sum.ID, Start: day.Add(-24 * time.Hour), End: day.Add(24 * time.Hour)}
	page, more, err := db.Customers(ctx, full)
	want := []meterdb.CustomerUsage{{"cus_a", meterdb.Int128Of(12), 2}, {"cus_b", meterdb.Int128Of(20), 1}, {"cus_c", meterdb.Int128Of(5), 1}}
	if err != nil || more || fmt.Sprint(page) != fmt.Sprint(want) {
		t.Fatalf("Customers = %v, more %v, %v; want %v", page, more, err, want)
	}
	// Pages of one.
	var paged []meterdb.CustomerUsage
	p := full
	p.Limit = 1
	for {
		page, more, err := db.Customers(ctx, p)
		if err != nil || len(page) != 1 {
			t.Fatalf("Customers(%+v) = %v, %v", p, page, err)
		}
		paged = append(paged, page...)
		if !more {
			break
		}
		p.After = page[0].Customer
	}
	if fmt.Sprint(paged) != fmt.Sprint(want) {
		t.Fatalf("paged Customers = %v, want %v", paged, want)
	}
	// A partial-hour range: [01:15, 03:06) holds cus_b's 20 and cus_a's 7.
	part := meterdb.CustomersParams{Meter: sum.ID, Start: day.Add(75 * time.Minute), End: day.Add(186 * time.Minute)}
	page, _, err = db.Customers(ctx, part)
	if want := "[{cus_a 7 1} {cus_b 20 1}]"; err != nil || fmt.Sprint(page) != want {
		t.Fatalf("Customers over a partial hour = %v, %v; want %s", page, err, want)
	}

	top, err := db.TopCustomers(ctx, meterdb.TopParams{Meter: sum.ID, Start: full.Start, End: full.End, N: 2})
	if want := "[{cus_b 20 1} {cus_a 12 2}]"; err != nil || fmt.Sprint(top) != want {
		t.Fatalf("TopCustomers = %v, %v; want %s", top, err, want)
	}
	// Ties: cus_a and cus_c both have 5 on [00:00 day-1, 02:00 day).
	top, err = db.TopCustomers(ctx, meterdb.TopParams{Meter: sum.ID, Start: full.Start, End: day.Add(80 * time.Minute)})
	if want := "[{cus_a 5 1} {cus_c 5 1}]"; err != nil || fmt.Sprint(top) != want {
		t.Fatalf("TopCustomers with a tie = %v, %v; want %s", top, err, want)
	}

	tot, err := db.Totals(ctx, meterdb.TotalsParams{Meter: sum.ID, Start: full.Start, End: full.End, Grouping: meterdb.GroupHour})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range tot {
		got = append(got, fmt.Sprintf("%s %s %d", s.Start.Format("02T15"), s.Value, s.Count))
	}
	if want := "[10T03 7 1 10T01 25 2 09T23 5 1]"; fmt.Sprint(got) != want {
		t.Fatalf("hourly Totals = %v, want %s", got, want)
	}
	tot, err = db.Totals(ctx, meterdb.TotalsParams{Meter: sum.ID, Start: day, End: day.Add(2 * time.Minute)})
	if err != nil || len(tot) != 1 || tot[0].Count != 0 || !tot[0].Start.Equal(day) {
		t.Fatalf("empty Totals = %v, %v; want one empty summary", tot, err)
	}
	tot, err = db.Totals(ctx, meterdb.TotalsParams{Meter: other.ID, Start: full.Start, End: full.End, Grouping: meterdb.GroupDay})
	if err != nil || len(tot) != 1 || tot[0].Value != meterdb.Int128Of(1) || !tot[0].Start.Equal(day) {
		t.Fatalf("daily Totals of the other meter = %v, %v", tot, err)
	}
}

// TestCrossCustomerLast checks Totals of a last meter: per window, the sum
// over customers of each one's last value.
func TestCrossCustomerLast(t *testing.T) {
	db, _ := newDB(t, nil)
	m := mustMeter(t, db, meter.Params{EventName: "seats", Formula: meter.Last})
	day := t0.Truncate(24 * time.Hour)
	for _, r := range []struct {
		c, v string
		at   time.Duration
	}{{"cus_a", "3", time.Hour}, {"cus_a", "4", 2 * time.Hour}, {"cus_b", "10", time.Hour + time.Minute}} {
		e := ev("seats", r.c, r.v, "")
		e.Timestamp = day.Add(r.at)
		mustRecord(t, db, e)
	}
	tot, err := db.Totals(ctx, meterdb.TotalsParams{Meter: m.ID, Start: day, End: day.Add(24 * time.Hour)})
	if err != nil || len(tot) != 1 || tot[0].Value != meterdb.Int128Of(14) || tot[0].Count != 3 {
		t.Fatalf("Totals = %v, %v; want value 4+10, count 3", tot, err)
	}
	tot, err = db.Totals(ctx, meterdb.TotalsParams{Meter: m.ID, Start: day, End: day.Add(24 * time.Hour), Grouping: meterdb.GroupHour})
	if err != nil || len(tot) != 2 || tot[0].Value != meterdb.Int128Of(4) || tot[1].Value != meterdb.Int128Of(13) {
		t.Fatalf("hourly Totals = %v, %v; want 4 at 02:00 and 3+10 at 01:00", tot, err)
	}
}

// TestCrossCustomerErrors checks the parameter errors, an unknown meter
// and ErrClosed.
func TestCrossCustomerErrors(t *testing.T) {
	db, _ := newDB(t, nil)
	m := mustMeter(t, db, meter.Params{EventName: "tokens", Formula: meter.Sum})
	day := t0.Truncate(24 * time.Hour)
	wantQueryError := func(what string, err error, code, param string) {
		t.Helper()
		var qe *meterdb.QueryError
		if !errors.As(err, &qe) || !errors.Is(err, meterdb.ErrInvalidQuery) || qe.Code != code || qe.Param != param {
			t.Fatalf("%s: got %v, want %s on %s", what, err, code, param)
		}
	}
	_, _, err := db.Customers(ctx, meterdb.CustomersParams{Meter: m.ID, End: day})
	wantQueryError("Customers without start", err, "parameter_missing", "start_time")
	_, _, err = db.Customers(ctx, meterdb.CustomersParams{Meter: m.ID, Start: day, End: day.Add(time.Minute), Limit: 10_001})
	wantQueryError("Customers limit", err, "parameter_invalid", "limit")
	_, _, err = db.Customers(ctx, meterdb.CustomersParams{Meter: m.ID, Start: day, End: day.Add(time.Minute), Limit: -1})
	wantQueryError("Customers negative limit", err, "parameter_invalid", "limit")
	_, err = db.TopCustomers(ctx, meterdb.TopParams{Meter: m.ID, Start: day, End: day.Add(time.Second)})
	wantQueryError("TopCustomers unaligned", err, "parameter_invalid", "end_time")
	_, err = db.TopCustomers(ctx, meterdb.TopParams{Meter: m.ID, Start: day, End: day.Add(time.Minute), N: 1001})
	wantQueryError("TopCustomers n", err, "parameter_invalid", "n")
	_, err = db.Totals(ctx, meterdb.TotalsParams{Meter: m.ID, Start: day.Add(time.Hour), End: day.Add(25 * time.Hour), Grouping: meterdb.GroupDay})
	wantQueryError("Totals day alignment", err, "parameter_invalid", "start_time")
	_, err = db.Totals(ctx, meterdb.TotalsParams{Meter: m.ID, Start: day, End: day, Grouping: meterdb.GroupHour})
	wantQueryError("Totals empty", err, "parameter_invalid", "end_time")
	_, err = db.Totals(ctx, meterdb.TotalsParams{Meter: m.ID, Start: day, End: day.Add(time.Hour), Grouping: "week"})
	wantQueryError("Totals grouping", err, "parameter_invalid", "value_grouping_window")

	var me *meter.Error
	_, err = db.TopCustomers(ctx, meterdb.TopParams{Meter: "mtr_missing", Start: day, End: day.Add(time.Hour)})
	if !errors.As(err, &me) || !errors.Is(err, meter.ErrNotFound) {
		t.Fatalf("unknown meter: %v", err)
	}
	db.Close()
	if _, _, err := db.Customers(ctx, meterdb.CustomersParams{Meter: m.ID, Start: day, End: day.Add(time.Hour)}); !errors.Is(err, meterdb.ErrClosed) {
		t.Fatalf("Customers after Close: %v", err)
	}
	if _, err := db.Totals(ctx, meterdb.TotalsParams{Meter: m.ID, Start: day, End: day.Add(time.Hour)}); !errors.Is(err, meterdb.ErrClosed) {
		t.Fatalf("Totals after Close: %v", err)
	}
	if _, err := db.TopCustomers(ctx, meterdb.TopParams{Meter: m.ID, Start: day, End: day.Add(time.Hour)}); !errors.Is(err, meterdb.ErrClosed) {
		t.Fatalf("TopCustomers after Close: %v", err)
	}
}

// TestCrossCustomerConcurrent runs the cross-customer queries while
// events are recorded and cancelled (for the race detector), then checks
// their final answers against Summaries.
func TestCrossCustomerConcurrent(t *testing.T) {
	db, _ := newDB(t, &meterdb.Options{Shards: 4})
	sum := mustMeter(t, db, meter.Params{EventName: "sum", Formula: meter.Sum})
	last := mustMeter(t, db, meter.Params{EventName: "last", Formula: meter.Last, EventTimeWindow: meter.Day})
	day := t0.Truncate(24 * time.Hour)
	from, to := day.Add(-3*24*time.Hour), day.Add(24*time.Hour)
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range 200 {
				c := fmt.Sprint("c", (i*7+w)%20)
				a, b := ev("sum", c, fmt.Sprint(i), fmt.Sprintf("s-%d-%d", w, i)), ev("last", c, fmt.Sprint(i), fmt.Sprintf("l-%d-%d", w, i))
				a.Timestamp = t0.Add(-time.Duration(i*17) * time.Minute)
				b.Timestamp = a.Timestamp
				if _, err := db.RecordBatch(ctx, []event.Event{a, b}); err != nil {
					t.Error(err)
					return
				}
				if i%9 == 0 {
					if err := db.Cancel(ctx, "sum", a.Identifier); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range 50 {
				for _, m := range []meter.Meter{sum, last} {
					_, _, err1 := db.Customers(ctx, meterdb.CustomersParams{Meter: m.ID, Start: from, End: to, Limit: 5})
					_, err2 := db.TopCustomers(ctx, meterdb.TopParams{Meter: m.ID, Start: from, End: to})
					_, err3 := db.Totals(ctx, meterdb.TotalsParams{Meter: m.ID, Start: from, End: to, Grouping: meterdb.GroupHour})
					if err := errors.Join(err1, err2, err3); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, m := range []meter.Meter{sum, last} {
		page, more, err := db.Customers(ctx, meterdb.CustomersParams{Meter: m.ID, Start: from, End: to})
		if err != nil || more || len(page) != 20 {
			t.Fatalf("Customers of %s: %d, more %v, %v", m.EventName, len(page), more, err)
		}
		var n int64
		for _, u := range page {
			s := total(t, db, m, u.Customer, from, to)
			if s.Value != u.Value || s.Count != u.Count {
				t.Fatalf("%s: Customers gives %v, Summaries %v", m.EventName, u, s)
			}
			n += s.Count
		}
		tot, err := db.Totals(ctx, meterdb.TotalsParams{Meter: m.ID, Start: from, End: to})
		if err != nil || tot[0].Count != n {
			t.Fatalf("%s: Totals %v, %v; want count %d", m.EventName, tot, err, n)
		}
	}
}
