package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v85"

	"github.com/meterdb/meterdb/internal/natstest"
)

var meterdBuild struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// buildMeterd builds the meterd binary once per test binary and returns
// its path; TestMain removes it.
func buildMeterd(t testing.TB) string {
	t.Helper()
	meterdBuild.once.Do(func() {
		meterdBuild.dir, meterdBuild.err = os.MkdirTemp("", "meterd-test-")
		if meterdBuild.err != nil {
			return
		}
		meterdBuild.bin = filepath.Join(meterdBuild.dir, "meterd")
		gobin, err := exec.LookPath("go")
		if err != nil {
			gobin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		}
		if out, err := exec.Command(gobin, "build", "-o", meterdBuild.bin, ".").CombinedOutput(); err != nil {
			meterdBuild.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if meterdBuild.err != nil {
		t.Fatal(meterdBuild.err)
	}
	return meterdBuild.bin
}

func TestMain(m *testing.M) {
	setProcs = recordProcs // run must not change the test process's GOMAXPROCS
	code := m.Run()
	if meterdBuild.dir != "" {
		os.RemoveAll(meterdBuild.dir)
	}
	natstest.Cleanup()
	os.Exit(code)
}

// streamRequest is request r of worker w: 100 events of customer cus_w
// with identifiers unique to (w, r).
func streamRequest(w, r int) *stripe.V2BillingMeterEventStreamCreateParams {
	p := &stripe.V2BillingMeterEventStreamCreateParams{}
	for i := range 100 {
		p.Events = append(p.Events, &stripe.V2BillingMeterEventStreamCreateEventParams{
			EventName:  stripe.String("streamed"),
			Identifier: stripe.String(fmt.Sprintf("w%d-r%d-e%d", w, r, i)),
			Payload:    map[string]string{"stripe_customer_id": fmt.Sprintf("cus_%d", w), "value": "1"},
		})
	}
	p.SetIdempotencyKey(fmt.Sprintf("stream-w%d-r%d", w, r))
	return p
}

// TestStreamKillRestart streams meter events through stripe-go from many
// goroutines, SIGKILLs meterd mid-stream, restarts it on the same file and
// checks that every acknowledged request's events are counted exactly
// once and each unacknowledged one at most once; retrying the
// unacknowledged requests (same Idempotency-Key, same identifiers, same
// session) then leaves every event counted exactly once.
func TestStreamKillRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs meterd")
	}
	dir := t.TempDir()
	bin := buildMeterd(t)
	dbPath := filepath.Join(dir, "stream.db")
	ctx := context.Background()

	d := startDaemon(t, bin, dbPath)
	sc := client(d.addr, "sk_test_e2e")
	m, err := sc.V1BillingMeters.Create(ctx, &stripe.BillingMeterCreateParams{
		DisplayName: stripe.String("streamed"), EventName: stripe.String("streamed"),
		DefaultAggregation: &stripe.BillingMeterCreateDefaultAggregationParams{Formula: stripe.String("sum")},
	})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := sc.V2BillingMeterEventSessions.Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}

	const workers = 12
	acked := make([]int, workers)    // requests 0..acked[w]-1 of worker w were acknowledged
	pending := make([]bool, workers) // request acked[w] was sent and not acknowledged
	var total atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := client(d.addr, sess.AuthenticationToken)
			for r := 0; ; r++ {
				if err := stream.V2BillingMeterEventStreams.Create(ctx, streamRequest(w, r)); err != nil {
					pending[w] = true // the server went away with this request in flight
					return
				}
				acked[w] = r + 1
				total.Add(1)
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for total.Load() < 150 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.exited
	wg.Wait()
	t.Logf("%d requests (%d events) acknowledged before SIGKILL", total.Load(), total.Load()*100)

	d2 := startDaemon(t, bin, dbPath)
	sc2 := client(d2.addr, "sk_test_e2e")
	hour := time.Now().UTC().Truncate(time.Hour)
	count := func(w int) int64 {
		t.Helper()
		var v float64
		for s, err := range sc2.V1BillingMeterEventSummaries.List(ctx, &stripe.BillingMeterEventSummaryListParams{
			ID: stripe.String(m.ID), Customer: stripe.String(fmt.Sprintf("cus_%d", w)),
			StartTime: stripe.Int64(hour.Add(-2 * time.Hour).Unix()), EndTime: stripe.Int64(hour.Add(2 * time.Hour).Unix()),
		}).All(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			v += s.AggregatedValue
		}
		return int64(v)
	}
	lost := 0
	for w := range workers {
		got, want := count(w), int64(acked[w])*100
		if got != want && !(pending[w] && got == want+100) {
			t.Errorf("customer %d: %d events counted; %d requests acknowledged, one more in flight: %v", w, got, acked[w], pending[w])
		}
		if pending[w] && got == want {
			lost++
		}
	}
	t.Logf("%d in-flight requests were not committed before the kill", lost)

	// The session survives the restart; retrying the requests that were in
	// flight counts each of their events once.
	stream := client(d2.addr, sess.AuthenticationToken)
	for w := range workers {
		if pending[w] {
			if err := stream.V2BillingMeterEventStreams.Create(ctx, streamRequest(w, acked[w])); err != nil {
				t.Fatalf("retrying worker %d's request after the restart: %v", w, err)
			}
		}
	}
	for w := range workers {
		want := int64(acked[w]) * 100
		if pending[w] {
			want += 100
		}
		if got := count(w); got != want {
			t.Errorf("customer %d after the retry: %d events counted, want %d", w, got, want)
		}
	}
	// The engine dropped any retried event that had been committed: an
	// error report says so, unless the idempotency record was replayed.
	for ev, err := range sc2.V2CoreEvents.List(ctx, nil).All(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		r, ok := ev.(*stripe.V1BillingMeterErrorReportTriggeredEvent)
		if !ok || r.Data.Reason.ErrorTypes[0].Code != "duplicate_meter_event" || !strings.HasPrefix(r.Reason.Request.IdempotencyKey, "stream-w") {
			t.Errorf("unexpected event after the retry: %+v", ev)
		}
	}
	d2.stop(t)
}
