package meterdb_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

// A sum meter, three events for one customer, and hourly summaries.
func Example() {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC)
	db, err := meterdb.Open("", &meterdb.Options{Now: func() time.Time { return now }})
	if err != nil {
		panic(err)
	}
	defer db.Close()

	m, err := db.CreateMeter(ctx, meter.Params{DisplayName: "API calls", EventName: "api_call", Formula: meter.Sum})
	if err != nil {
		panic(err)
	}
	for i, v := range []string{"5", "7", "-2"} {
		_, err := db.Record(ctx, event.Event{
			Name:      "api_call",
			Payload:   map[string]string{"stripe_customer_id": "cus_1", "value": v},
			Timestamp: now.Add(-time.Duration(i) * time.Hour),
		})
		if err != nil {
			panic(err)
		}
	}
	sums, err := db.Summaries(ctx, meterdb.SummaryParams{
		Meter: m.ID, Customer: "cus_1",
		Start: now.Truncate(24 * time.Hour), End: now.Truncate(24 * time.Hour).Add(24 * time.Hour),
		Grouping: meterdb.GroupHour,
	})
	if err != nil {
		panic(err)
	}
	for _, s := range sums {
		fmt.Println(s.Start.Format("15:04"), s.Value)
	}
	// Output:
	// 12:00 5
	// 11:00 7
	// 10:00 -2
}

// RecordBatch checks every event and records the valid ones together; each
// event gets its own error.
func ExampleDB_RecordBatch() {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC)
	db, _ := meterdb.Open("", &meterdb.Options{Now: func() time.Time { return now }})
	defer db.Close()
	db.CreateMeter(ctx, meter.Params{DisplayName: "Tokens", EventName: "tokens", Formula: meter.Sum})

	evs := []event.Event{
		{Name: "tokens", Identifier: "req_1", Payload: map[string]string{"stripe_customer_id": "cus_1", "value": "120"}},
		{Name: "tokens", Identifier: "req_1", Payload: map[string]string{"stripe_customer_id": "cus_1", "value": "120"}},
		{Name: "tokens", Identifier: "req_2", Payload: map[string]string{"stripe_customer_id": "cus_1", "value": "1.5"}},
		{Name: "tokenz", Identifier: "req_3", Payload: map[string]string{"stripe_customer_id": "cus_1", "value": "7"}},
		{Name: "tokens", Payload: map[string]string{"stripe_customer_id": "cus_2", "value": "30"}},
	}
	errs, err := db.RecordBatch(ctx, evs)
	if err != nil {
		panic(err)
	}
	for i, err := range errs {
		var ee *event.Error
		if errors.As(err, &ee) {
			fmt.Printf("%d: %s\n", i, ee.Code)
		} else {
			fmt.Printf("%d: recorded at %s\n", i, evs[i].Timestamp.Format(time.TimeOnly))
		}
	}
	fmt.Println("generated identifier:", evs[4].Identifier != "")
	// Output:
	// 0: recorded at 12:30:00
	// 1: duplicate_meter_event
	// 2: payload_invalid_value
	// 3: no_meter
	// 4: recorded at 12:30:00
	// generated identifier: true
}

// Cancel removes an event received within the last 24 hours.
func ExampleDB_Cancel() {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC)
	db, _ := meterdb.Open("", &meterdb.Options{Now: func() time.Time { return now }})
	defer db.Close()
	m, _ := db.CreateMeter(ctx, meter.Params{DisplayName: "Tokens", EventName: "tokens", Formula: meter.Sum})
	for i, v := range []string{"100", "5"} {
		db.Record(ctx, event.Event{Name: "tokens", Identifier: fmt.Sprint("req_", i),
			Payload: map[string]string{"stripe_customer_id": "cus_1", "value": v}})
	}

	fmt.Println(db.Cancel(ctx, "tokens", "req_0"))
	err := db.Cancel(ctx, "tokens", "req_0")
	fmt.Println(errors.Is(err, event.ErrAlreadyCancelled), err)

	s, _ := db.Summaries(ctx, meterdb.SummaryParams{Meter: m.ID, Customer: "cus_1",
		Start: now.Truncate(time.Hour), End: now.Truncate(time.Hour).Add(time.Hour)})
	fmt.Println(s[0].Count, s[0].Value)
	// Output:
	// <nil>
	// true The meter event "req_0" has already been cancelled.
	// 1 5
}

// Summaries grouped by UTC day, newest first; days without events are
// left out.
func ExampleDB_Summaries() {
	ctx := context.Background()
	now := time.Date(2026, 3, 5, 8, 0, 0, 0, time.UTC)
	db, _ := meterdb.Open("", &meterdb.Options{Now: func() time.Time { return now }})
	defer db.Close()
	m, _ := db.CreateMeter(ctx, meter.Params{DisplayName: "Calls", EventName: "call", Formula: meter.Count})
	for _, ts := range []string{"2026-03-01T23:59:59Z", "2026-03-02T00:00:00Z", "2026-03-02T17:00:00Z", "2026-03-04T09:30:00Z"} {
		t, _ := time.Parse(time.RFC3339, ts)
		db.Record(ctx, event.Event{Name: "call", Timestamp: t, Payload: map[string]string{"stripe_customer_id": "cus_1"}})
	}
	sums, err := db.Summaries(ctx, meterdb.SummaryParams{
		Meter: m.ID, Customer: "cus_1",
		Start:    time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
		End:      time.Date(2026, 3, 6, 0, 0, 0, 0, time.UTC),
		Grouping: meterdb.GroupDay,
	})
	if err != nil {
		panic(err)
	}
	for _, s := range sums {
		fmt.Println(s.Start.Format(time.DateOnly), s.Value)
	}
	// Output:
	// 2026-03-04 1
	// 2026-03-02 2
	// 2026-03-01 1
}

// A caller that queries often can reuse one slice: AppendSummaries
// allocates only when the slice must grow.
func ExampleDB_AppendSummaries() {
	ctx := context.Background()
	now := time.Date(2026, 3, 5, 8, 0, 0, 0, time.UTC)
	db, _ := meterdb.Open("", &meterdb.Options{Now: func() time.Time { return now }})
	defer db.Close()
	m, _ := db.CreateMeter(ctx, meter.Params{DisplayName: "Calls", EventName: "call", Formula: meter.Count})
	for _, c := range []string{"cus_1", "cus_2", "cus_2"} {
		db.Record(ctx, event.Event{Name: "call", Payload: map[string]string{"stripe_customer_id": c}})
	}
	var buf []meterdb.Summary
	for _, c := range []string{"cus_1", "cus_2", "cus_3"} {
		var err error
		buf, err = db.AppendSummaries(ctx, buf[:0], meterdb.SummaryParams{
			Meter: m.ID, Customer: c, Grouping: meterdb.GroupHour,
			Start: now.Add(-time.Hour), End: now.Add(time.Hour),
		})
		if err != nil {
			panic(err)
		}
		for _, s := range buf {
			fmt.Println(c, s.Start.Format(time.TimeOnly), s.Value)
		}
	}
	// Output:
	// cus_1 08:00:00 1
	// cus_2 08:00:00 2
}

// A last meter reports the value of the event with the greatest
// timestamp; among equal timestamps, the one received last.
func ExampleDB_Summaries_last() {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	db, _ := meterdb.Open("", &meterdb.Options{Now: func() time.Time { return now }})
	defer db.Close()
	m, _ := db.CreateMeter(ctx, meter.Params{DisplayName: "Seats", EventName: "seats", Formula: meter.Last})
	for _, e := range []struct {
		ago   time.Duration
		value string
	}{{10 * time.Minute, "8"}, {time.Hour, "3"}, {10 * time.Minute, "9"}} {
		db.Record(ctx, event.Event{Name: "seats", Timestamp: now.Add(-e.ago),
			Payload: map[string]string{"stripe_customer_id": "cus_1", "value": e.value}})
	}
	s, _ := db.Summaries(ctx, meterdb.SummaryParams{Meter: m.ID, Customer: "cus_1",
		Start: now.Add(-2 * time.Hour), End: now})
	fmt.Println(s[0].Value, "from", s[0].Count, "events")
	// Output:
	// 9 from 3 events
}

// With an event time window, only the newest event of each customer in
// each window counts: here one per hour.
func ExampleDB_Summaries_eventTimeWindow() {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	db, _ := meterdb.Open("", &meterdb.Options{Now: func() time.Time { return now }})
	defer db.Close()
	m, _ := db.CreateMeter(ctx, meter.Params{DisplayName: "Storage GB", EventName: "storage",
		Formula: meter.Sum, EventTimeWindow: meter.Hour})
	for _, e := range []struct {
		at    string
		value string
	}{{"10:05", "40"}, {"10:55", "42"}, {"10:30", "41"}, {"11:15", "50"}} {
		t, _ := time.Parse(time.DateOnly+" 15:04", "2026-03-01 "+e.at)
		db.Record(ctx, event.Event{Name: "storage", Timestamp: t,
			Payload: map[string]string{"stripe_customer_id": "cus_1", "value": e.value}})
	}
	sums, _ := db.Summaries(ctx, meterdb.SummaryParams{Meter: m.ID, Customer: "cus_1",
		Start: now.Add(-3 * time.Hour), End: now, Grouping: meterdb.GroupHour})
	for _, s := range sums {
		fmt.Println(s.Start.Format("15:04"), s.Value)
	}
	total, _ := db.Summaries(ctx, meterdb.SummaryParams{Meter: m.ID, Customer: "cus_1",
		Start: now.Add(-3 * time.Hour), End: now})
	fmt.Println("total", total[0].Value)
	// Output:
	// 11:00 50
	// 10:00 42
	// total 92
}

// ListMeters pages through meters, newest first.
func ExampleDB_ListMeters() {
	ctx := context.Background()
	db, _ := meterdb.Open("", nil)
	defer db.Close()
	for _, name := range []string{"api_call", "tokens", "storage", "seats"} {
		db.CreateMeter(ctx, meter.Params{DisplayName: name, EventName: name, Formula: meter.Sum})
	}
	m, _, _ := db.ListMeters(ctx, meter.ListParams{Limit: 1})
	db.DeactivateMeter(ctx, m[0].ID)

	p := meter.ListParams{Limit: 2, Status: meter.Active}
	for {
		page, more, err := db.ListMeters(ctx, p)
		if err != nil {
			panic(err)
		}
		for _, m := range page {
			fmt.Println(m.EventName, m.Status)
		}
		if !more {
			break
		}
		p.StartingAfter = page[len(page)-1].ID
	}
	// Output:
	// storage active
	// tokens active
	// api_call active
}
