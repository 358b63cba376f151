package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/stripeapi"
)

// get returns the status and body of a GET of u.
func get(t *testing.T, method, u string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// TestHealthAndReady checks the probes in front of the API: /readyz fails
// once the database cannot record, /healthz does not, and every other path
// reaches the API.
func TestHealthAndReady(t *testing.T) {
	db, err := meterdb.Open(filepath.Join(t.TempDir(), "health.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h, err := stripeapi.NewHandler(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(withHealth(db, h))
	defer srv.Close()
	for _, tt := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/healthz", 200, "ok\n"},
		{"HEAD", "/healthz", 200, ""},
		{"GET", "/readyz", 200, "ok\n"},
		{"POST", "/readyz", 405, "method not allowed\n"},
		{"GET", "/healthz/", 401, `"type": "invalid_request_error"`}, // the API's, unauthenticated
		{"GET", "/v1/billing/meters", 401, `"type": "invalid_request_error"`},
	} {
		status, body := get(t, tt.method, srv.URL+tt.path)
		if status != tt.status || !strings.Contains(body, tt.body) || (tt.body == "" && body != "") {
			t.Errorf("%s %s: %d %q, want %d %q", tt.method, tt.path, status, body, tt.status, tt.body)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if status, body := get(t, "GET", srv.URL+"/readyz"); status != 503 || body != "not ready: meterdb: closed\n" {
		t.Errorf("readyz after Close: %d %q", status, body)
	}
	if status, _ := get(t, "GET", srv.URL+"/healthz"); status != 200 {
		t.Errorf("healthz after Close: %d", status)
	}
}

var metricsRE = regexp.MustCompile(`msg="serving metrics" addr=(\S+)`)

// startMeterd runs meterd with args until the test ends and returns its
// API address, the metrics address it logged ("" for none) and its log up
// to the "listening" line (run logs "serving metrics" before it).
func startMeterd(t *testing.T, args ...string) (api, metricsAddr, log string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	lw := &lineWriter{lines: make(chan string, 100)}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, func(string) string { return "" }, lw) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l := <-lw.lines:
			log += l + "\n"
			if m := metricsRE.FindStringSubmatch(l); m != nil {
				metricsAddr = m[1]
			}
			if m := listeningRE.FindStringSubmatch(l); m != nil {
				return m[1], metricsAddr, log
			}
		case err := <-done:
			t.Fatalf("meterd exited before listening: %v\n%s", err, log)
		case <-timeout:
			t.Fatalf("meterd did not start listening within 30s\n%s", log)
		}
	}
}

// TestServeMetrics runs meterd, sends known traffic and checks /metrics:
// the counters moved, the Go and process collectors are there, and the
// exposition passes promlint, the linter of promtool check metrics.
func TestServeMetrics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.db")
	api, maddr, _ := startMeterd(t, "-addr", "127.0.0.1:0", "-metrics-addr", "127.0.0.1:0", "-db", path)
	if maddr == "" {
		t.Fatal("no metrics address logged")
	}
	post := func(path string, form url.Values) int {
		req, _ := http.NewRequest("POST", "http://"+api+path, strings.NewReader(form.Encode()))
		req.Header.Set("Authorization", "Bearer sk_test_m")
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	if s := post("/v1/billing/meters", url.Values{"display_name": {"x"}, "event_name": {"x"}, "default_aggregation[formula]": {"sum"}}); s != 200 {
		t.Fatalf("create meter: %d", s)
	}
	for i, v := range []string{"1", "2", "bad"} {
		post("/v1/billing/meter_events", url.Values{"event_name": {"x"}, "identifier": {fmt.Sprint("id", i)},
			"payload[stripe_customer_id]": {"c"}, "payload[value]": {v}})
	}
	if s, b := get(t, "GET", "http://"+api+"/readyz"); s != 200 || b != "ok\n" {
		t.Errorf("readyz: %d %q", s, b)
	}
	if s, _ := get(t, "GET", "http://"+api+"/healthz"); s != 200 {
		t.Errorf("healthz: %d", s)
	}
	if s, _ := get(t, "GET", "http://"+api+"/metrics"); s == 200 {
		t.Error("the API listener serves /metrics")
	}
	status, body := get(t, "GET", "http://"+maddr+"/metrics")
	if status != 200 {
		t.Fatalf("/metrics: %d\n%s", status, body)
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, re := range []string{
		`(?m)^meterdb_events_total\{meter="mtr_\w+",outcome="accepted"\} 2$`,
		`(?m)^meterdb_events_rejected_total\{code="payload_invalid_value",meter="mtr_\w+"\} 1$`,
		`(?m)^meterdb_http_requests_total\{code="200",route="POST /v1/billing/meter_events"\} 2$`,
		`(?m)^meterdb_http_requests_total\{code="400",route="POST /v1/billing/meter_events"\} 1$`,
		`(?m)^meterdb_durability_info\{mode="sync"\} 1$`,
		`(?m)^# HELP meterdb_fsync_duration_seconds `,
		`(?m)^go_goroutines \d+$`,
		`(?m)^process_cpu_seconds_total `,
	} {
		if !regexp.MustCompile(re).MatchString(body) {
			t.Errorf("/metrics lacks %s", re)
		}
	}
	if s, _ := get(t, "GET", "http://"+maddr+"/v1/billing/meters"); s != 404 {
		t.Errorf("the metrics listener serves the API: %d", s)
	}
}

// TestMetricsAddr checks -metrics-addr: empty disables, an explicit
// address must be free, and a taken default is a warning.
func TestMetricsAddr(t *testing.T) {
	_, maddr, log := startMeterd(t, "-addr", "127.0.0.1:0", "-metrics-addr", "", "-db", "")
	if maddr != "" || strings.Contains(log, "metrics") {
		t.Errorf("-metrics-addr= served metrics at %q; log:\n%s", maddr, log)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// Were the address not checked, run would serve until the timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = run(ctx, []string{"-addr", "127.0.0.1:0", "-metrics-addr", ln.Addr().String(), "-db", ""},
		func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-metrics-addr") {
		t.Errorf("a taken -metrics-addr: %v", err)
	}

	// Hold the default address (unless another process does already).
	if ln, err := net.Listen("tcp", defaultMetricsAddr); err == nil {
		defer ln.Close()
	}
	_, maddr, log = startMeterd(t, "-addr", "127.0.0.1:0", "-db", "")
	if maddr != "" || !strings.Contains(log, "not serving metrics: the default address is taken") {
		t.Errorf("with the default address taken: metrics at %q; log:\n%s", maddr, log)
	}
}
