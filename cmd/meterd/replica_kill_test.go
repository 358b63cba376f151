package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v85"

	"github.com/meterdb/meterdb/internal/natstest"
)

var killRounds = flag.Int("replica-kill-rounds", 1, "TestReplicaProcessesKill: rounds of killing one meterd and the stream leader's nats-server "+
	"(each round costs a JetStream leader election; CI runs 1)")

// killClient is one HTTP client of the SIGKILL test: it records events of
// its own customer through the meterd processes, one at a time, retrying
// a failed request with the same identifier (at another meterd) until it
// is acknowledged or answered duplicate_meter_event.
type killClient struct {
	customer string
	// Written by the client's goroutine, read after it ended.
	resolved   int64 // sum of the values of events acknowledged or found duplicate
	unresolved int64 // sum of the values of an event given up on (at most one)
	events     int   // events resolved
	retried    int   // events that needed more than one request
	dupOnRetry int   // events answered duplicate_meter_event after a failed request
	dupFirst   int   // events answered duplicate_meter_event on their first request: a bug
	failures   int   // failed requests
}

// killCluster is the meterd processes of the SIGKILL test.
type killCluster struct {
	t    *testing.T
	bin  string
	args []string // the replication flags shared by all
	dbs  []string

	mu    sync.Mutex // guards the fields below
	procs []*daemon
	addrs []string
}

func (kc *killCluster) start(i int) {
	kc.t.Helper()
	d := startDaemon(kc.t, kc.bin, kc.dbs[i], kc.args...)
	kc.mu.Lock()
	kc.procs[i], kc.addrs[i] = d, d.addr
	kc.mu.Unlock()
}

func (kc *killCluster) addr(i int) string {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	return kc.addrs[i]
}

// kill sends SIGKILL to meterd i and waits for it to exit.
func (kc *killCluster) kill(i int) {
	kc.t.Helper()
	kc.mu.Lock()
	d := kc.procs[i]
	kc.mu.Unlock()
	if err := d.cmd.Process.Kill(); err != nil {
		kc.t.Fatal(err)
	}
	<-d.exited
}

// postEvent sends one v1 meter event and classifies the answer: "ok",
// "duplicate", or "" for a failure to retry (with its description).
func postEvent(hc *http.Client, addr, name, id, customer string, value int64, ts int64) (string, string) {
	form := url.Values{
		"event_name": {name}, "identifier": {id}, "timestamp": {strconv.FormatInt(ts, 10)},
		"payload[stripe_customer_id]": {customer}, "payload[value]": {strconv.FormatInt(value, 10)},
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/billing/meter_events", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err.Error()
	}
	req.Header.Set("Authorization", "Bearer sk_test_e2e")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return "", err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err.Error()
	}
	if resp.StatusCode == http.StatusOK {
		return "ok", ""
	}
	var e struct {
		Error struct{ Code, Message string }
	}
	json.Unmarshal(body, &e)
	if resp.StatusCode == http.StatusBadRequest && e.Error.Code == "duplicate_meter_event" {
		return "duplicate", ""
	}
	return "", fmt.Sprintf("%d %s %s (Stripe-Should-Retry %q)", resp.StatusCode, e.Error.Code, e.Error.Message, resp.Header.Get("Stripe-Should-Retry"))
}

// TestReplicaProcessesKill runs three meterd processes, each with its own
// -db file, on a three-node cluster of nats-server processes, and sends
// v1 meter events through all three from twelve clients. Mid-load it
// SIGKILLs one meterd and the nats-server leading the stream, and
// restarts both. A client retries a failed request with the same
// identifier, at the next meterd, until it is acknowledged or answered
// duplicate_meter_event. At the end every meterd's summaries equal the
// sum of the events so resolved (each counted exactly once), plus at most
// the events still unresolved. More rounds: go test -run
// TestReplicaProcessesKill ./cmd/meterd -args -replica-kill-rounds=3.
func TestReplicaProcessesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs meterd and nats-server")
	}
	const (
		stream     = "METERD_KILL"
		perReplica = 4
	)
	bin := buildMeterd(t)
	c := natstest.StartProcessCluster(t)
	dir := t.TempDir()
	kc := &killCluster{t: t, bin: bin, procs: make([]*daemon, 3), addrs: make([]string, 3),
		args: []string{"-metrics-addr", "", "-dashboard=false", "-nats", strings.Join(c.ClientURLs(), ","),
			"-nats-stream", stream, "-consistent-reads"}}
	for i := range 3 {
		kc.dbs = append(kc.dbs, filepath.Join(dir, fmt.Sprintf("replica%d.db", i)))
		kc.start(i)
	}
	ctx := context.Background()
	m, err := client(kc.addr(0), "sk_test_e2e").V1BillingMeters.Create(ctx, meterParams("calls"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitStreamCurrent(stream, 30*time.Second); err != nil {
		t.Fatal(err)
	}

	var acked atomic.Int64
	stop := make(chan struct{})  // the clients stop after their current event
	abort := make(chan struct{}) // the clients stop at once: the test failed
	var clients []*killClient
	var wg sync.WaitGroup
	t.Cleanup(func() { // before the processes are killed
		close(abort)
		wg.Wait()
	})
	for r := range 3 {
		for w := range perReplica {
			kcl := &killClient{customer: fmt.Sprintf("cus_r%dw%d", r, w)}
			clients = append(clients, kcl)
			wg.Go(func() {
				hc := &http.Client{Timeout: 45 * time.Second}
				rnd := rand.New(rand.NewPCG(uint64(r), uint64(w)))
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					case <-abort:
						return
					default:
					}
					id := fmt.Sprintf("%s-%d", kcl.customer, n)
					value := 1 + rnd.Int64N(9)
					ts := time.Now().Unix()
					target := r
					giveUp := time.Now().Add(60 * time.Second)
					for attempt := 0; ; attempt++ {
						res, why := postEvent(hc, kc.addr(target), "calls", id, kcl.customer, value, ts)
						if res != "" {
							kcl.resolved += value
							kcl.events++
							if attempt > 0 {
								kcl.retried++
							}
							if res == "duplicate" {
								if attempt == 0 {
									kcl.dupFirst++
								} else {
									kcl.dupOnRetry++
								}
							} else {
								acked.Add(1)
							}
							break
						}
						kcl.failures++
						if kcl.failures <= 3 {
							t.Logf("%s: %s at meterd %d: %s", kcl.customer, id, target, why)
						}
						select {
						case <-abort:
							return
						default:
						}
						if time.Now().After(giveUp) {
							kcl.unresolved = value
							t.Errorf("%s: %s unresolved after 60 s of retries: %s", kcl.customer, id, why)
							return
						}
						target = (target + 1) % 3
						time.Sleep(20 * time.Millisecond)
					}
				}
			})
		}
	}
	waitAcked := func(n int64) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); acked.Load() < n; {
			if time.Now().After(deadline) {
				t.Fatalf("%d events acknowledged, waited for %d", acked.Load(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitAcked(300)
	for round := range *killRounds {
		victim := round % 3
		leader, err := c.StreamLeader(stream, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		before := acked.Load()
		kc.kill(victim)
		c.Kill(leader)
		t.Logf("round %d: SIGKILL to meterd %d and to nats-server %d (the stream leader) after %d events acknowledged", round, victim, leader, before)
		// meterd restarts while the stream has no leader: it waits for
		// the election.
		kc.start(victim)
		waitAcked(acked.Load() + 200)
		c.Restart(leader)
		t.Logf("round %d: restarted both; %d events acknowledged", round, acked.Load())
		if err := c.WaitStreamCurrent(stream, 60*time.Second); err != nil {
			t.Fatal(err)
		}
		waitAcked(acked.Load() + 200)
	}
	close(stop)
	wg.Wait()

	want := map[string][2]int64{}
	var events, retried, dupRetry, failures int
	for _, kcl := range clients {
		want[kcl.customer] = [2]int64{kcl.resolved, kcl.resolved + kcl.unresolved}
		events += kcl.events
		retried += kcl.retried
		dupRetry += kcl.dupOnRetry
		failures += kcl.failures
		if kcl.dupFirst > 0 {
			t.Errorf("%s: %d events answered duplicate_meter_event on their first request", kcl.customer, kcl.dupFirst)
		}
	}
	t.Logf("%d events resolved (%d acknowledged), %d after retries (%d of them duplicate_meter_event on a retry), %d failed requests",
		events, acked.Load(), retried, dupRetry, failures)
	hour := time.Now().UTC().Truncate(time.Hour)
	for i := range 3 {
		sc := client(kc.addr(i), "sk_test_e2e")
		for _, kcl := range clients {
			var got int64
			for s, err := range sc.V1BillingMeterEventSummaries.List(ctx, &stripe.BillingMeterEventSummaryListParams{
				ID: stripe.String(m.ID), Customer: stripe.String(kcl.customer),
				StartTime: stripe.Int64(hour.Add(-2 * time.Hour).Unix()), EndTime: stripe.Int64(hour.Add(2 * time.Hour).Unix()),
			}).All(ctx) {
				if err != nil {
					t.Fatalf("meterd %d: summaries of %s: %v", i, kcl.customer, err)
				}
				got += int64(s.AggregatedValue)
			}
			if w := want[kcl.customer]; got < w[0] || got > w[1] {
				t.Errorf("meterd %d: %s sums to %d, want %d (at most %d)", i, kcl.customer, got, w[0], w[1])
			}
		}
	}
	for i := range 3 {
		kc.mu.Lock()
		d := kc.procs[i]
		kc.mu.Unlock()
		d.stop(t)
	}
}
