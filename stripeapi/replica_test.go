package stripeapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/internal/sharedlogtest"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/stripeapi"
)

// TestReplicaIdempotency serves one database from three replicas of a
// shared log: a request repeated with its Idempotency-Key at any replica,
// also while the first one executes, is executed once and replayed.
func TestReplicaIdempotency(t *testing.T) {
	shared := sharedlogtest.New()
	clk := &clock{t: t0}
	var dbs []*meterdb.DB
	var hs []http.Handler
	for range 3 {
		db, err := meterdb.Open("", &meterdb.Options{Log: shared.Client(), Now: clk.Now, ConsistentReads: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		h, err := stripeapi.NewHandler(db, &stripeapi.Options{APIKeys: []string{testKey}, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		dbs, hs = append(dbs, db), append(hs, h)
	}
	ctx := context.Background()
	m, err := dbs[0].CreateMeter(ctx, meter.Params{DisplayName: "x", EventName: "calls", Formula: meter.Sum})
	if err != nil {
		t.Fatal(err)
	}
	post := func(h http.Handler, key, value string) *httptest.ResponseRecorder {
		// No identifier: without the key's agreement each replica would
		// record its own event.
		body := "event_name=calls&payload[stripe_customer_id]=cus_1&payload[value]=" + value
		req := httptest.NewRequest("POST", "/v1/billing/meter_events", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Idempotency-Key", key)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	// In turn: the first executes, the others replay.
	for i, h := range hs {
		rec := post(h, "k-seq", "5")
		if rec.Code != http.StatusOK || (i > 0) != (rec.Header().Get("Idempotent-Replayed") == "true") {
			t.Fatalf("replica %d: status %d, replayed %q: %s", i, rec.Code, rec.Header().Get("Idempotent-Replayed"), rec.Body)
		}
	}
	// Other parameters at another replica: idempotency_error.
	if rec := post(hs[2], "k-seq", "6"); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "idempotency_error") {
		t.Fatalf("other parameters: %d %s", rec.Code, rec.Body)
	}
	// At once, at every replica, several times.
	const keys = 20
	start := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	executed := map[string]int{}
	for k := range keys {
		for _, h := range hs {
			wg.Go(func() {
				key := fmt.Sprint("k-", k)
				<-start
				for {
					rec := post(h, key, "1")
					if rec.Code == http.StatusConflict {
						time.Sleep(10 * time.Millisecond) // as stripe-go retries
						continue
					}
					if rec.Code != http.StatusOK {
						t.Errorf("%s: %d %s", key, rec.Code, rec.Body)
						return
					}
					mu.Lock()
					if rec.Header().Get("Idempotent-Replayed") != "true" {
						executed[key]++
					}
					mu.Unlock()
					return
				}
			})
		}
	}
	close(start)
	wg.Wait()
	for k := range keys {
		if n := executed[fmt.Sprint("k-", k)]; n != 1 {
			t.Errorf("key k-%d executed %d times", k, n)
		}
	}
	for i, db := range dbs {
		if err := db.WaitApplied(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := db.Summaries(ctx, meterdb.SummaryParams{Meter: m.ID, Customer: "cus_1",
			Start: t0.Truncate(time.Hour).Add(-time.Hour), End: t0.Truncate(time.Hour).Add(2 * time.Hour)})
		if err != nil || len(got) != 1 || got[0].Count != 1+keys || got[0].Value.String() != fmt.Sprint(5+keys) {
			t.Errorf("replica %d: %+v %v, want %d events of value %d", i, got, err, 1+keys, 5+keys)
		}
	}
}
