package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stripe/stripe-go/v85"

	"github.com/meterdb/meterdb/internal/natstest"
)

// TestReplicasOnNATS runs three meterd, each with its own -db file and
// another node of a three-node NATS cluster as -nats, with
// -consistent-reads: a meter created on one is listed and used on the
// others, an event recorded on one is a duplicate on another, an
// Idempotency-Key used on one replays on another, a v2 session created on
// one streams to another, and the summaries agree on all three.
func TestReplicasOnNATS(t *testing.T) {
	c := natstest.StartCluster(t)
	dir := t.TempDir()
	var scs []*stripe.Client
	var startedAddrs []string
	for i := range 3 {
		addr := startRun(t, "-addr", "127.0.0.1:0", "-metrics-addr", "", "-db", filepath.Join(dir, fmt.Sprintf("replica%d.db", i)),
			"-nats", c.ClientURL(i), "-nats-stream", "METERD_E2E", "-consistent-reads")
		scs = append(scs, client(addr, "sk_test_x"))
		startedAddrs = append(startedAddrs, addr)
	}
	ctx := context.Background()
	m, err := scs[0].V1BillingMeters.Create(ctx, meterParams("calls"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := scs[2].V1BillingMeters.Retrieve(ctx, m.ID, nil)
	if err != nil || got.EventName != "calls" {
		t.Fatalf("the meter created on replica 0, on replica 2: %v, %v", got, err)
	}
	now := time.Now().UTC()
	event := func(id, value string) *stripe.BillingMeterEventCreateParams {
		return &stripe.BillingMeterEventCreateParams{EventName: stripe.String("calls"), Identifier: stripe.String(id),
			Payload: map[string]string{"stripe_customer_id": "cus_1", "value": value}, Timestamp: stripe.Int64(now.Unix())}
	}
	if _, err := scs[1].V1BillingMeterEvents.Create(ctx, event("e1", "7")); err != nil {
		t.Fatalf("an event on replica 1 for the meter created on replica 0: %v", err)
	}
	_, err = scs[2].V1BillingMeterEvents.Create(ctx, event("e1", "7"))
	var se *stripe.Error
	if !errors.As(err, &se) || se.Code != "duplicate_meter_event" {
		t.Fatalf("e1 again on replica 2: %v, want duplicate_meter_event", err)
	}
	if _, err := scs[0].V1BillingMeterEvents.Create(ctx, event("e2", "5")); err != nil {
		t.Fatal(err)
	}
	// An Idempotency-Key used on replica 0 replays on replica 2: the same
	// event back, recorded once.
	keyed := event("e3", "100")
	keyed.SetIdempotencyKey("idem-across-replicas")
	first, err := scs[0].V1BillingMeterEvents.Create(ctx, keyed)
	if err != nil {
		t.Fatal(err)
	}
	again := event("e3", "100")
	again.SetIdempotencyKey("idem-across-replicas")
	replay, err := scs[2].V1BillingMeterEvents.Create(ctx, again)
	if err != nil || replay.Identifier != first.Identifier || replay.Created != first.Created {
		t.Fatalf("the Idempotency-Key of replica 0 on replica 2: %+v, %v; want the replay of %+v", replay, err, first)
	}
	if replay.LastResponse == nil || replay.LastResponse.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replica 2 answered the key used on replica 0 without Idempotent-Replayed: true")
	}
	// A v2 session created on replica 1 streams to replica 0.
	sess, err := scs[1].V2BillingMeterEventSessions.Create(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	stream := client(startedAddrs[0], sess.AuthenticationToken)
	if err := stream.V2BillingMeterEventStreams.Create(ctx, &stripe.V2BillingMeterEventStreamCreateParams{
		Events: []*stripe.V2BillingMeterEventStreamCreateEventParams{{
			EventName: stripe.String("calls"), Identifier: stripe.String("s1"), Timestamp: stripe.Time(now),
			Payload: map[string]string{"stripe_customer_id": "cus_1", "value": "1000"},
		}}}); err != nil {
		t.Fatalf("streaming with replica 1's session to replica 0: %v", err)
	}
	hour := now.Truncate(time.Hour)
	for i, sc := range scs {
		var values []float64
		for s, err := range sc.V1BillingMeterEventSummaries.List(ctx, &stripe.BillingMeterEventSummaryListParams{
			ID: stripe.String(m.ID), Customer: stripe.String("cus_1"),
			StartTime: stripe.Int64(hour.Add(-time.Hour).Unix()), EndTime: stripe.Int64(hour.Add(time.Hour).Unix()),
		}).All(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			values = append(values, s.AggregatedValue)
		}
		// e1 7 (once), e2 5, e3 100 (once), s1 1000 (streamed).
		if fmt.Sprint(values) != "[1112]" {
			t.Errorf("replica %d summarizes %v, want [1112]", i, values)
		}
	}
}

// TestNATSFlags checks that the replication flags need -nats and that
// meterd does not start when the shared log cannot be reached.
func TestNATSFlags(t *testing.T) {
	env := func(string) string { return "" }
	for _, args := range [][]string{
		{"-consistent-reads"},
		{"-nats-stream", "X"},
		{"-nats-creds", "x.creds"},
		{"-nats-replicas", "1"},
	} {
		err := run(context.Background(), append([]string{"-db", ""}, args...), env, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "needs -nats") {
			t.Errorf("%q without -nats: %v", args, err)
		}
	}
	err := run(context.Background(), []string{"-db", "", "-metrics-addr", "", "-nats", "nats://127.0.0.1:1"}, env, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "opening the shared log") {
		t.Errorf("-nats without a server: %v", err)
	}
}

// BenchmarkReplicasHTTPv1 runs three meterd (in this process, each with
// its own file and -nats on another node of a three-node in-process
// cluster) and sends v1 meter events to each over 16 connections at once
// (stripe-go gives every POST an Idempotency-Key): req/s of all three
// together.
func BenchmarkReplicasHTTPv1(b *testing.B) {
	const conns = 16
	c := natstest.StartCluster(b)
	dir := b.TempDir()
	var scs []*stripe.Client
	for i := range 3 {
		addr := startRun(b, "-addr", "127.0.0.1:0", "-metrics-addr", "", "-dashboard=false", "-durability", "buffered",
			"-db", filepath.Join(dir, fmt.Sprintf("replica%d.db", i)), "-nats", c.ClientURL(i), "-nats-stream", "METERD_BENCH")
		scs = append(scs, stripe.NewClient("sk_test_x", stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{
			URL:               stripe.String("http://" + addr),
			MaxNetworkRetries: stripe.Int64(0),
			LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
			HTTPClient:        &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}},
		}))))
	}
	ctx := context.Background()
	if _, err := scs[0].V1BillingMeters.Create(ctx, meterParams("calls")); err != nil {
		b.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the meter reaches the other replicas
	var next atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for i, sc := range scs {
		for w := range conns {
			wg.Go(func() {
				for {
					n := next.Add(1)
					if n > int64(b.N) {
						return
					}
					_, err := sc.V1BillingMeterEvents.Create(ctx, &stripe.BillingMeterEventCreateParams{
						EventName: stripe.String("calls"), Identifier: stripe.String(fmt.Sprintf("r%d-w%d-%d", i, w, n)),
						Payload: map[string]string{"stripe_customer_id": fmt.Sprintf("cus_%d", n%100), "value": "1"},
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkReplicasHTTPv1NoKey is BenchmarkReplicasHTTPv1 without
// Idempotency-Key: a plain net/http client sends the form body with a
// Bearer key, 16 connections to each of the three meterd. It reports
// req/s of all three together, the p50 and p99 request latency, and the
// lag of a remote replica: throughout the load a probe records one event
// at a time on the first meterd and, once answered, polls the second's
// summaries (every 0.5 ms) until it counts it.
func BenchmarkReplicasHTTPv1NoKey(b *testing.B) {
	const conns = 16
	c := natstest.StartCluster(b)
	dir := b.TempDir()
	var addrs []string
	for i := range 3 {
		addrs = append(addrs, startRun(b, "-addr", "127.0.0.1:0", "-metrics-addr", "", "-dashboard=false", "-durability", "buffered",
			"-db", filepath.Join(dir, fmt.Sprintf("replica%d.db", i)), "-nats", c.ClientURL(i), "-nats-stream", "METERD_BENCH"))
	}
	sc := stripe.NewClient("sk_test_x", stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL: stripe.String("http://" + addrs[0]), MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
	})))
	m, err := sc.V1BillingMeters.Create(context.Background(), meterParams("calls"))
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the meter reaches the other replicas
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
	var next atomic.Int64
	lat := make([][]time.Duration, 3*conns)
	remote := stripe.NewClient("sk_test_x", stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL: stripe.String("http://" + addrs[1]), MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
	})))
	probeDone := make(chan struct{})
	var lags []time.Duration
	probed := make(chan struct{})
	seq0 := streamLast(b, c.ClientURL(0), "METERD_BENCH")
	cpu0 := processCPU()
	b.ResetTimer()
	go func() {
		defer close(probed)
		ctx := context.Background()
		hour := time.Now().Truncate(time.Hour)
		list := &stripe.BillingMeterEventSummaryListParams{ID: stripe.String(m.ID), Customer: stripe.String("cus_probe"),
			StartTime: stripe.Int64(hour.Add(-time.Hour).Unix()), EndTime: stripe.Int64(hour.Add(2 * time.Hour).Unix())}
		for k := 1; ; k++ {
			select {
			case <-probeDone:
				return
			case <-time.After(20 * time.Millisecond):
			}
			form := url.Values{"event_name": {"calls"}, "identifier": {fmt.Sprintf("probe-%d", k)},
				"payload[stripe_customer_id]": {"cus_probe"}, "payload[value]": {"1"}, "timestamp": {fmt.Sprint(time.Now().Unix())}}
			req, _ := http.NewRequest("POST", "http://"+addrs[0]+"/v1/billing/meter_events", strings.NewReader(form.Encode()))
			req.Header.Set("Authorization", "Bearer sk_test_x")
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := http.DefaultClient.Do(req)
			if err != nil || resp.StatusCode != http.StatusOK {
				b.Errorf("probe: %v", err)
				return
			}
			resp.Body.Close()
			acked := time.Now()
			for {
				var sum float64
				for s, err := range remote.V1BillingMeterEventSummaries.List(ctx, list).All(ctx) {
					if err != nil {
						b.Errorf("probe: %v", err)
						return
					}
					sum += s.AggregatedValue
				}
				if sum >= float64(k) {
					break
				}
				time.Sleep(500 * time.Microsecond)
			}
			lags = append(lags, time.Since(acked))
		}
	}()
	var wg sync.WaitGroup
	for i, addr := range addrs {
		for w := range conns {
			wg.Go(func() {
				for {
					n := next.Add(1)
					if n > int64(b.N) {
						return
					}
					form := url.Values{"event_name": {"calls"}, "identifier": {fmt.Sprintf("r%d-w%d-%d", i, w, n)},
						"payload[stripe_customer_id]": {fmt.Sprintf("cus_%d", n%100)}, "payload[value]": {"1"}}
					req, _ := http.NewRequest("POST", "http://"+addr+"/v1/billing/meter_events", strings.NewReader(form.Encode()))
					req.Header.Set("Authorization", "Bearer sk_test_x")
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					start := time.Now()
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
					lat[i*conns+w] = append(lat[i*conns+w], time.Since(start))
				}
			})
		}
	}
	wg.Wait()
	b.StopTimer()
	cpu := processCPU() - cpu0
	close(probeDone)
	<-probed
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/req")
	// Records on the stream per request, the probe's included.
	b.ReportMetric(float64(streamLast(b, c.ClientURL(0), "METERD_BENCH")-seq0)/float64(b.N), "records/req")
	if len(lags) > 0 {
		slices.Sort(lags)
		b.ReportMetric(float64(lags[len(lags)/2].Microseconds())/1000, "lag-p50-ms")
		b.ReportMetric(float64(lags[len(lags)*99/100].Microseconds())/1000, "lag-p99-ms")
		b.ReportMetric(float64(len(lags)), "lag-probes")
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) > 0 {
		slices.Sort(all)
		b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// processCPU returns the user and system CPU time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// streamLast returns the last sequence of the stream name.
func streamLast(b *testing.B, url, name string) uint64 {
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	st, err := js.Stream(context.Background(), name)
	if err != nil {
		b.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return info.State.LastSeq
}
