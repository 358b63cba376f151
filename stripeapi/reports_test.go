package stripeapi_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/meterdb/meterdb/stripeapi"
	"github.com/stripe/stripe-go/v85"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers, for logs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStreamReportWriteFails makes the error report of a stream request
// fail to be stored after its valid events were committed: the client
// learns that the request was processed (200 {}), not a 500 that would
// make it believe nothing counted, and the failure is logged.
func TestStreamReportWriteFails(t *testing.T) {
	var logs syncBuffer
	e := newEnv(t, &stripeapi.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, nil)
	sc := e.client(testKey)
	ctx := context.Background()
	m := createMeter(t, sc, "api_call", "sum")
	stream, _ := e.streamClient(t, sc)
	stripeapi.FailReportWrites(e.h, errors.New("disk on fire"))

	p := &stripe.V2BillingMeterEventStreamCreateParams{Events: []*stripe.V2BillingMeterEventStreamCreateEventParams{
		streamEvent("api_call", "ok1", "cus_a", "5"),
		streamEvent("nope", "unknown_1", "cus_a", "1"),
		streamEvent("api_call", "ok2", "cus_a", "7"),
	}}
	if err := stream.V2BillingMeterEventStreams.Create(ctx, p); err != nil {
		t.Fatalf("stream request whose events were recorded failed: %v", err)
	}
	if v, n := summaryTotal(t, e.db, m.ID, "cus_a"); v != 12 || n != 2 {
		t.Fatalf("valid events: %d over %d, want 12 over 2", v, n)
	}
	if l := logs.String(); !strings.Contains(l, "error report") || !strings.Contains(l, "disk on fire") {
		t.Errorf("the failed report write was not logged:\n%s", l)
	}
	// A retry of the same events is not counted again.
	if err := stream.V2BillingMeterEventStreams.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	if v, n := summaryTotal(t, e.db, m.ID, "cus_a"); v != 12 || n != 2 {
		t.Fatalf("after a retry: %d over %d, want 12 over 2", v, n)
	}
	stripeapi.FailReportWrites(e.h, nil)
	reports, _, err := stripeapi.ListErrorReports(ctx, e.db, stripeapi.ErrorReportListParams{})
	if err != nil || len(reports) != 0 {
		t.Errorf("reports %v, %v; want none stored", reports, err)
	}
}
