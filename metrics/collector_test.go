package metrics_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/internal/sharedlogtest"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/metrics"
	"github.com/meterdb/meterdb/stripeapi"
)

var ctx = context.Background()

// server is a file-backed DB served by a stripeapi handler, with a
// registry holding the collector of both.
type server struct {
	t   *testing.T
	db  *meterdb.DB
	h   http.Handler
	srv *httptest.Server
	reg *prometheus.Registry
}

func newServer(t *testing.T, sopts *stripeapi.Options) *server {
	t.Helper()
	db, err := meterdb.Open(filepath.Join(t.TempDir(), "metrics.db"), &meterdb.Options{NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	h, err := stripeapi.NewHandler(db, sopts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		db.Close()
	})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewCollector(db, &metrics.Options{Handler: h}))
	return &server{t: t, db: db, h: h, srv: srv, reg: reg}
}

// do sends a request with key and returns the status.
func (s *server) do(key, method, path, body, contentType string) int {
	s.t.Helper()
	req, err := http.NewRequest(method, s.srv.URL+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// sample is one gathered sample: a counter's or gauge's value, or a
// histogram's count.
type samples map[string]float64

// gather returns every sample of the registry keyed by name{labels}, with
// histograms as name_count and name_sum.
func (s *server) gather() samples {
	s.t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	out := samples{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName() + labels(m)
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[mf.GetName()+"_count"+labels(m)] = float64(m.GetHistogram().GetSampleCount())
				out[mf.GetName()+"_sum"+labels(m)] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

func labels(m *dto.Metric) string {
	if len(m.GetLabel()) == 0 {
		return ""
	}
	var parts []string
	for _, l := range m.GetLabel() {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// TestCountersMove sends known traffic, in the library and over HTTP, and
// checks that each counter moved by exactly what it should.
func TestCountersMove(t *testing.T) {
	s := newServer(t, &stripeapi.Options{RateLimit: 0.001, RateBurst: 10})
	m, err := s.db.CreateMeter(ctx, meter.Params{DisplayName: "API", EventName: "api_call", Formula: meter.Sum})
	if err != nil {
		t.Fatal(err)
	}
	before := s.gather()
	const form = "application/x-www-form-urlencoded"
	for body, want := range map[string]int{
		"event_name=api_call&identifier=e1&payload[stripe_customer_id]=c&payload[value]=2": 200,
		"event_name=api_call&identifier=e2&payload[stripe_customer_id]=c&payload[value]=3": 200,
		"event_name=nope&identifier=e3&payload[stripe_customer_id]=c&payload[value]=1":     400,
		"event_name=api_call&identifier=e4&payload[stripe_customer_id]=c&payload[value]=x": 400,
	} {
		if got := s.do("sk_test_a", "POST", "/v1/billing/meter_events", body, form); got != want {
			t.Fatalf("%s: status %d, want %d", body, got, want)
		}
	}
	// A duplicate, sent after e1 is recorded.
	if got := s.do("sk_test_a", "POST", "/v1/billing/meter_events",
		"event_name=api_call&identifier=e1&payload[stripe_customer_id]=c&payload[value]=2", form); got != 400 {
		t.Fatalf("duplicate: status %d", got)
	}
	if err := s.db.Cancel(ctx, "api_call", "e2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Record(ctx, event.Event{Name: "nope", Payload: map[string]string{"stripe_customer_id": "c"}}); err == nil {
		t.Fatal("an event of no meter was recorded")
	}
	// Ten requests of one key pass its burst, the eleventh is throttled.
	for i := range 11 {
		want := 200
		if i == 10 {
			want = 429
		}
		if got := s.do("sk_test_b", "GET", "/v1/billing/meters", "", ""); got != want {
			t.Fatalf("list %d: status %d, want %d", i, got, want)
		}
	}
	if got := s.do("sk_test_a", "GET", "/v1/nowhere", "", ""); got != 404 {
		t.Fatalf("unknown route: %d", got)
	}
	if err := s.db.Sync(); err != nil {
		t.Fatal(err)
	}
	after := s.gather()

	id := m.ID
	for key, want := range map[string]float64{
		"meterdb_events_total{meter=" + id + ",outcome=accepted}":                          2,
		"meterdb_events_total{meter=" + id + ",outcome=rejected}":                          1,
		"meterdb_events_total{meter=" + id + ",outcome=duplicate}":                         1,
		"meterdb_events_total{meter=" + id + ",outcome=cancelled}":                         1,
		"meterdb_events_total{meter=unknown,outcome=rejected}":                             2,
		"meterdb_events_total{meter=unknown,outcome=accepted}":                             0,
		"meterdb_events_rejected_total{code=payload_invalid_value,meter=" + id + "}":       1,
		"meterdb_events_rejected_total{code=no_meter,meter=unknown}":                       2,
		"meterdb_batch_events_count":                                                       6, // five requests and one Record
		"meterdb_batch_events_sum":                                                         6,
		"meterdb_commit_events_sum":                                                        3, // two events and a cancellation
		"meterdb_log_records":                                                              3,
		"meterdb_http_requests_total{code=200,route=POST /v1/billing/meter_events}":        2,
		"meterdb_http_requests_total{code=400,route=POST /v1/billing/meter_events}":        3,
		"meterdb_http_requests_total{code=200,route=GET /v1/billing/meters}":               10,
		"meterdb_http_requests_total{code=429,route=GET /v1/billing/meters}":               1,
		"meterdb_http_requests_total{code=404,route=other}":                                1,
		"meterdb_http_request_duration_seconds_count{route=POST /v1/billing/meter_events}": 5,
		"meterdb_http_request_duration_seconds_count{route=GET /v1/billing/meters}":        11,
		"meterdb_http_throttled_total":                                                     1,
		"meterdb_stream_events_total{outcome=accepted}":                                    0,
		"meterdb_series": 1,
	} {
		got, ok := after[key]
		if !ok {
			t.Errorf("%s: missing", key)
			continue
		}
		if d := got - before[key]; d != want {
			t.Errorf("%s moved by %v, want %v", key, d, want)
		}
	}
	if after["meterdb_log_bytes"] <= before["meterdb_log_bytes"] || after["meterdb_file_bytes"] <= 0 {
		t.Errorf("log bytes %v -> %v, file bytes %v", before["meterdb_log_bytes"], after["meterdb_log_bytes"], after["meterdb_file_bytes"])
	}
	if n := after["meterdb_commit_duration_seconds_count"] - before["meterdb_commit_duration_seconds_count"]; n < 1 ||
		after["meterdb_fsync_duration_seconds_count"]-before["meterdb_fsync_duration_seconds_count"] != n {
		t.Errorf("%v commits, %v fsync durations", n, after["meterdb_fsync_duration_seconds_count"]-before["meterdb_fsync_duration_seconds_count"])
	}
	if after["meterdb_durability_info{mode=sync}"] != 1 || after["meterdb_write_failed"] != 0 {
		t.Errorf("durability_info %v, write_failed %v", after["meterdb_durability_info{mode=sync}"], after["meterdb_write_failed"])
	}
}

// TestStreamCounters checks the meter event stream's counters.
func TestStreamCounters(t *testing.T) {
	s := newServer(t, nil)
	if _, err := s.db.CreateMeter(ctx, meter.Params{DisplayName: "API", EventName: "api_call", Formula: meter.Sum}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", s.srv.URL+"/v2/billing/meter_event_session", nil)
	req.Header.Set("Authorization", "Bearer sk_test_a")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	_, rest, _ := strings.Cut(string(body), `"authentication_token": "`)
	token, _, _ := strings.Cut(rest, `"`)
	before := s.gather()
	if got := s.do(token, "POST", "/v2/billing/meter_event_stream",
		`{"events":[{"event_name":"api_call","payload":{"stripe_customer_id":"c","value":"5"}},`+
			`{"event_name":"api_call","payload":{"stripe_customer_id":"d","value":"1"}},`+
			`{"event_name":"nope","payload":{"stripe_customer_id":"c","value":"5"}}]}`, "application/json"); got != 200 {
		t.Fatalf("stream: %d", got)
	}
	after := s.gather()
	for key, want := range map[string]float64{
		"meterdb_stream_events_total{outcome=accepted}":                                   2,
		"meterdb_stream_events_total{outcome=rejected}":                                   1,
		"meterdb_http_requests_total{code=200,route=POST /v2/billing/meter_event_stream}": 1,
		"meterdb_events_total{meter=unknown,outcome=rejected}":                            1,
	} {
		if d := after[key] - before[key]; d != want {
			t.Errorf("%s moved by %v, want %v", key, d, want)
		}
	}
}

// TestLint checks every metric against the Prometheus naming and HELP
// conventions, for a file with a handler and in memory without.
func TestLint(t *testing.T) {
	s := newServer(t, nil)
	if _, err := s.db.CreateMeter(ctx, meter.Params{DisplayName: "API", EventName: "api_call", Formula: meter.Sum}); err != nil {
		t.Fatal(err)
	}
	s.do("sk_test_a", "POST", "/v1/billing/meter_events", "event_name=api_call&payload[stripe_customer_id]=c&payload[value]=2",
		"application/x-www-form-urlencoded")
	s.do("sk_test_a", "POST", "/v1/billing/meter_events", "event_name=x&payload[stripe_customer_id]=c", "application/x-www-form-urlencoded")
	s.db.Sync()
	c := metrics.NewCollector(s.db, &metrics.Options{Handler: s.h})
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	if n := testutil.CollectAndCount(c); n < 30 {
		t.Errorf("%d metrics collected", n)
	}

	mem, err := meterdb.Open("", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	problems, err = testutil.CollectAndLint(metrics.NewCollector(mem, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("in memory: %s: %s", p.Metric, p.Text)
	}
	if n := testutil.CollectAndCount(metrics.NewCollector(mem, nil), "meterdb_file_bytes", "meterdb_http_throttled_total"); n != 0 {
		t.Errorf("an in-memory database without handler has %d file or HTTP metrics", n)
	}
}

func TestNewCollectorChecksHandler(t *testing.T) {
	db, err := meterdb.Open("", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "not a handler stripeapi.NewHandler returned") {
			t.Errorf("recovered %v", r)
		}
	}()
	metrics.NewCollector(db, &metrics.Options{Handler: http.NotFoundHandler()})
}

// TestCoreImportsNoMetricsLibrary checks that the engine and the HTTP
// adapter build without client_golang: only this package imports it.
func TestCoreImportsNoMetricsLibrary(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	core := []string{"github.com/meterdb/meterdb", "github.com/meterdb/meterdb/store", "github.com/meterdb/meterdb/aggregate",
		"github.com/meterdb/meterdb/meter", "github.com/meterdb/meterdb/event", "github.com/meterdb/meterdb/stripeapi"}
	out, err := exec.Command(gobin, append([]string{"list", "-deps"}, core...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < len(core) {
		t.Fatalf("go list -deps listed %d packages", len(deps))
	}
	for _, d := range deps {
		if strings.HasPrefix(d, "github.com/prometheus/") {
			t.Errorf("the core depends on %s", d)
		}
	}
}

// TestReplicaMetrics checks the shared-log gauges of a replica: its
// applied position and lag, and none of them for a database of one
// process.
func TestReplicaMetrics(t *testing.T) {
	shared := sharedlogtest.New()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now := t0
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	db, err := meterdb.Open("", &meterdb.Options{Log: shared.Client(), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.CreateMeter(ctx, meter.Params{DisplayName: "API", EventName: "api_call", Formula: meter.Sum}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := db.Record(ctx, event.Event{Name: "api_call", Identifier: fmt.Sprint("e", i),
			Payload: map[string]string{"stripe_customer_id": "c", "value": "1"}}); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	now = t0.Add(90 * time.Second)
	mu.Unlock()
	c := metrics.NewCollector(db, nil)
	want := `
# HELP meterdb_replica_applied_position Position of the shared log this replica has applied.
# TYPE meterdb_replica_applied_position gauge
meterdb_replica_applied_position 4
# HELP meterdb_replica_applied_stamp_age_seconds Time since the writer of the last applied record stamped it: how far behind this replica is, or, with no lag, the time since the last write anywhere.
# TYPE meterdb_replica_applied_stamp_age_seconds gauge
meterdb_replica_applied_stamp_age_seconds 90
# HELP meterdb_replica_error 1 while the shared log cannot be asked or this replica cannot apply it (it retries), else 0.
# TYPE meterdb_replica_error gauge
meterdb_replica_error 0
# HELP meterdb_replica_lag_records Records of the shared log this replica has still to apply; absent when the log could not be asked.
# TYPE meterdb_replica_lag_records gauge
meterdb_replica_lag_records 0
# HELP meterdb_replica_log_position Newest position of the shared log, as asked at the scrape; absent when the log could not be asked.
# TYPE meterdb_replica_log_position gauge
meterdb_replica_log_position 4
`
	names := []string{"meterdb_replica_applied_position", "meterdb_replica_applied_stamp_age_seconds",
		"meterdb_replica_error", "meterdb_replica_lag_records", "meterdb_replica_log_position"}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}

	// A log that cannot be asked: the error gauge says so, and the
	// positions it could not learn are left out.
	shared.SetAvailable(false)
	want = `
# HELP meterdb_replica_error 1 while the shared log cannot be asked or this replica cannot apply it (it retries), else 0.
# TYPE meterdb_replica_error gauge
meterdb_replica_error 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "meterdb_replica_error", "meterdb_replica_lag_records"); err != nil {
		t.Error(err)
	}
	shared.SetAvailable(true)

	local, err := meterdb.Open("", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	if n := testutil.CollectAndCount(metrics.NewCollector(local, nil), names...); n != 0 {
		t.Errorf("a database of one process has %d replica metrics", n)
	}
}

// The frozen-history gauges report a file-backed database's frozen days,
// their memory and the blocks it keeps in its file.
func TestFrozenGauges(t *testing.T) {
	var clock atomic.Int64
	t0 := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	clock.Store(t0.Unix())
	opts := &meterdb.Options{NoFsync: true, Now: func() time.Time { return time.Unix(clock.Load(), 0) }}
	path := filepath.Join(t.TempDir(), "frozen.db")
	db, err := meterdb.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateMeter(ctx, meter.Params{DisplayName: "n", EventName: "n", Formula: meter.Sum}); err != nil {
		t.Fatal(err)
	}
	for d := range 3 {
		if _, err := db.Record(ctx, event.Event{Name: "n", Identifier: fmt.Sprint(d), Timestamp: t0.Add(-time.Duration(30+d) * 24 * time.Hour),
			Payload: map[string]string{"stripe_customer_id": "cus", "value": "2"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Add(80 * 86400) // Open freezes the three days and stores their block
	db, err = meterdb.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := &server{t: t, db: db, reg: prometheus.NewPedanticRegistry()}
	s.reg.MustRegister(metrics.NewCollector(db, nil))
	got := s.gather()
	st := db.Stats()
	if st.FrozenDays != 3 || st.FrozenStoredBlocks != 1 || st.FrozenBytes <= 0 {
		t.Fatalf("stats: %d frozen days, %d stored blocks, %d bytes; want 3, 1 and some", st.FrozenDays, st.FrozenStoredBlocks, st.FrozenBytes)
	}
	for name, want := range map[string]int64{"meterdb_frozen_day_aggregates": 3, "meterdb_frozen_stored_blocks": 1, "meterdb_frozen_bytes": st.FrozenBytes} {
		if got[name] != float64(want) {
			t.Errorf("%s = %v, want %d", name, got[name], want)
		}
	}
}
