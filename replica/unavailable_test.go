package replica_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/internal/natstest"
	"github.com/meterdb/meterdb/replica"
	"github.com/meterdb/meterdb/stripeapi"
)

// TestServerGone serves the Stripe API (stripeapi) from a replica whose
// only NATS server goes away: a v1 meter event answers 503 with
// Stripe-Should-Retry: true within the Log's AppendTimeout (and well
// within meterd's 30 s write timeout), summaries keep answering from
// memory, RecordBatch fails with an error wrapping
// meterdb.ErrUnavailable, and once the server is back the retried event
// is recorded, once.
func TestServerGone(t *testing.T) {
	s := natstest.RunServer(t, nil)
	ctx := context.Background()
	const appendTimeout = time.Second
	l, err := replica.Open(ctx, replica.Options{URLs: []string{s.ClientURL()}, Stream: "GONE", Replicas: 1, AppendTimeout: appendTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	db, err := meterdb.Open(filepath.Join(t.TempDir(), "replica.db"), &meterdb.Options{Log: l, NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	h, err := stripeapi.NewHandler(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	type answer struct {
		status int
		retry  string
		body   map[string]any
	}
	call := func(method, path string, form url.Values) answer {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer sk_test_gone")
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		a := answer{status: resp.StatusCode, retry: resp.Header.Get("Stripe-Should-Retry")}
		if err := json.Unmarshal(b, &a.body); err != nil {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return a
	}
	a := call("POST", "/v1/billing/meters", url.Values{"display_name": {"calls"}, "event_name": {"calls"},
		"default_aggregation[formula]": {"sum"}})
	if a.status != 200 {
		t.Fatalf("creating the meter: %d %v", a.status, a.body)
	}
	meterID := a.body["id"].(string)
	ev := func(id, value string) url.Values {
		return url.Values{"event_name": {"calls"}, "identifier": {id},
			"payload[stripe_customer_id]": {"cus_1"}, "payload[value]": {value}}
	}
	if a := call("POST", "/v1/billing/meter_events", ev("e1", "5")); a.status != 200 {
		t.Fatalf("e1: %d %v", a.status, a.body)
	}
	hour := time.Now().UTC().Truncate(time.Hour)
	summaries := fmt.Sprintf("/v1/billing/meters/%s/event_summaries?customer=cus_1&start_time=%d&end_time=%d",
		meterID, hour.Add(-time.Hour).Unix(), hour.Add(2*time.Hour).Unix())
	sum := func() float64 {
		t.Helper()
		a := call("GET", summaries, nil)
		if a.status != 200 {
			t.Fatalf("summaries: %d %v", a.status, a.body)
		}
		var v float64
		for _, s := range a.body["data"].([]any) {
			v += s.(map[string]any)["aggregated_value"].(float64)
		}
		return v
	}

	s.Shutdown()
	start := time.Now()
	a = call("POST", "/v1/billing/meter_events", ev("e2", "7"))
	took := time.Since(start)
	if a.status != 503 || a.retry != "true" {
		t.Fatalf("an event while the server is gone: %d (Stripe-Should-Retry %q) %v; want 503 with Stripe-Should-Retry: true", a.status, a.retry, a.body)
	}
	if took > 3*appendTimeout {
		t.Errorf("the 503 came after %v; AppendTimeout is %v", took, appendTimeout)
	}
	t.Logf("503 after %v: %v", took.Round(time.Millisecond), a.body["error"].(map[string]any)["message"])
	if v := sum(); v != 5 {
		t.Errorf("summaries while the server is gone: %v, want 5", v)
	}
	_, err = db.RecordBatch(ctx, []event.Event{{Name: "calls", Identifier: "e3",
		Payload: map[string]string{"stripe_customer_id": "cus_1", "value": "11"}}})
	if !errors.Is(err, meterdb.ErrUnavailable) {
		t.Fatalf("RecordBatch while the server is gone: %v; want an error wrapping ErrUnavailable", err)
	}

	s.Restart()
	start = time.Now()
	for {
		a = call("POST", "/v1/billing/meter_events", ev("e2", "7"))
		if a.status == 200 {
			break
		}
		if a.status != 503 || time.Since(start) > 20*time.Second {
			t.Fatalf("e2 after the server came back: %d %v", a.status, a.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("writes succeed %v after the restart", time.Since(start).Round(time.Millisecond))
	if v := sum(); v != 12 {
		t.Errorf("summaries after the server came back: %v, want 12", v)
	}
}
