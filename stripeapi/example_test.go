package stripeapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/stripeapi"
	"github.com/stripe/stripe-go/v85"
)

// Serve the Stripe meters API on an existing mux and use it through
// stripe-go: create a meter, record usage, read the usage back.
func ExampleNewHandler() {
	ctx := context.Background()
	db, err := meterdb.Open("", nil) // in memory; give a path for a file
	if err != nil {
		panic(err)
	}
	defer db.Close()
	api, err := stripeapi.NewHandler(db, &stripeapi.Options{APIKeys: []string{"sk_test_123"}})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", api)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	sc := stripe.NewClient("sk_test_123", stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL:               stripe.String(srv.URL),
		MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
	})))
	m, err := sc.V1BillingMeters.Create(ctx, &stripe.BillingMeterCreateParams{
		DisplayName:        stripe.String("Search API calls"),
		EventName:          stripe.String("search_api"),
		DefaultAggregation: &stripe.BillingMeterCreateDefaultAggregationParams{Formula: stripe.String("sum")},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(m.Object, m.EventName, m.DefaultAggregation.Formula, m.Status)

	for _, v := range []string{"5", "7"} {
		_, err := sc.V1BillingMeterEvents.Create(ctx, &stripe.BillingMeterEventCreateParams{
			EventName: stripe.String("search_api"),
			Payload:   map[string]string{"stripe_customer_id": "cus_123", "value": v},
		})
		if err != nil {
			panic(err)
		}
	}

	hour := time.Now().Truncate(time.Hour)
	sums := sc.V1BillingMeterEventSummaries.List(ctx, &stripe.BillingMeterEventSummaryListParams{
		ID:        stripe.String(m.ID),
		Customer:  stripe.String("cus_123"),
		StartTime: stripe.Int64(hour.Add(-time.Hour).Unix()),
		EndTime:   stripe.Int64(hour.Add(time.Hour).Unix()),
	})
	for s, err := range sums.All(ctx) {
		if err != nil {
			panic(err)
		}
		fmt.Println(s.Object, s.AggregatedValue)
	}

	_, err = sc.V1BillingMeters.Retrieve(ctx, "mtr_missing", nil)
	if se, ok := err.(*stripe.Error); ok {
		fmt.Println(se.HTTPStatusCode, se.Code, se.Param)
	}
	// Output:
	// billing.meter search_api sum active
	// billing.meter_event_summary 12
	// 404 resource_missing id
}
