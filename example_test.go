package meterdb_test

import (
	"context"
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
		Grouping: meter.Hour,
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
