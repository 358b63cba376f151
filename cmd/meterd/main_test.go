package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v85"
)

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:12111": true, "localhost:1": true, "[::1]:80": true, "127.0.0.2:0": true,
		":12111": false, "0.0.0.0:12111": false, "[::]:1": false, "10.0.0.1:80": false, "example.com:80": false, "nonsense": false,
	} {
		if got := loopback(addr); got != want {
			t.Errorf("loopback(%q) = %v", addr, got)
		}
	}
}

func TestParseKeys(t *testing.T) {
	if k := parseKeys(" sk_test_a, ,sk_live_b "); len(k) != 2 || k[0] != "sk_test_a" || k[1] != "sk_live_b" {
		t.Errorf("parseKeys: %q", k)
	}
	if k := parseKeys(" , "); k != nil {
		t.Errorf("parseKeys of nothing: %q", k)
	}
}

func TestRunRefusesOpenAddressWithoutKey(t *testing.T) {
	env := func(string) string { return "" }
	var out bytes.Buffer
	err := run(context.Background(), []string{"-addr", "0.0.0.0:0", "-db", ""}, env, &out)
	if err == nil || !strings.Contains(err.Error(), "refusing to listen on 0.0.0.0:0 without an API key") {
		t.Fatalf("err = %v", err)
	}
	if err := run(context.Background(), []string{"-addr", ":0", "extra"}, env, &out); err == nil {
		t.Error("extra arguments accepted")
	}
	if err := run(context.Background(), []string{"-nope"}, env, &out); err == nil {
		t.Error("unknown flag accepted")
	}
	if err := run(context.Background(), []string{"-db", "", "-durability", "eventually"}, env, &out); err == nil ||
		!strings.Contains(err.Error(), "-durability must be sync or buffered") {
		t.Errorf("unknown durability: %v", err)
	}
	if err := run(context.Background(), []string{"-db", "", "-max-concurrent", "0"}, env, &out); err == nil ||
		!strings.Contains(err.Error(), "-max-concurrent must be at least 1") {
		t.Errorf("-max-concurrent 0: %v", err)
	}
}

// TestRunBuffered serves a file with buffered durability, and what it
// acknowledged is there after a clean shutdown.
func TestRunBuffered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "buffered.db")
	for round := range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		lw := &lineWriter{lines: make(chan string, 100)}
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-db", path, "-durability", "buffered"},
				func(string) string { return "" }, lw)
		}()
		addr := waitListening(t, lw.lines, done)
		sc := client(addr, "sk_test_x")
		if round == 0 {
			if _, err := sc.V1BillingMeters.Create(context.Background(), meterParams("calls")); err != nil {
				t.Fatal(err)
			}
		} else {
			n := 0
			for _, err := range sc.V1BillingMeters.List(context.Background(), &stripe.BillingMeterListParams{}).All(context.Background()) {
				if err != nil {
					t.Fatal(err)
				}
				n++
			}
			if n != 1 {
				t.Fatalf("%d meters after restart, want 1", n)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestRunInMemory serves from memory with the key from the environment
// and shuts down when the context ends.
func TestRunInMemory(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	lw := &lineWriter{lines: make(chan string, 100)}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-db", ""},
			func(k string) string { return map[string]string{"METERD_API_KEY": "sk_test_env"}[k] }, lw)
	}()
	addr := waitListening(t, lw.lines, done)
	sc := client(addr, "sk_test_env")
	if _, err := sc.V1BillingMeters.Create(context.Background(), meterParams("calls")); err != nil {
		t.Fatal(err)
	}
	_, err := client(addr, "sk_test_other").V1BillingMeters.Retrieve(context.Background(), "mtr_x", nil)
	var se *stripe.Error
	if !errors.As(err, &se) || se.HTTPStatusCode != 401 {
		t.Fatalf("other key: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type lineWriter struct {
	mu    sync.Mutex
	buf   []byte
	lines chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		select {
		case w.lines <- string(w.buf[:i]):
		default:
		}
		w.buf = w.buf[i+1:]
	}
}

var listeningRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

// waitListening returns the address from meterd's "listening" log line.
func waitListening(t testing.TB, lines <-chan string, exited <-chan error) string {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l := <-lines:
			if m := listeningRE.FindStringSubmatch(l); m != nil {
				return m[1]
			}
		case err := <-exited:
			t.Fatalf("meterd exited before listening: %v", err)
		case <-timeout:
			t.Fatal("meterd did not start listening within 30s")
		}
	}
}

func client(addr, key string) *stripe.Client {
	return stripe.NewClient(key, stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL:               stripe.String("http://" + addr),
		MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
	})))
}

func meterParams(event string) *stripe.BillingMeterCreateParams {
	return &stripe.BillingMeterCreateParams{
		DisplayName:        stripe.String(event),
		EventName:          stripe.String(event),
		DefaultAggregation: &stripe.BillingMeterCreateDefaultAggregationParams{Formula: stripe.String("sum")},
	}
}

// errNoFileStore is what meterdb.Open said before file-backed databases
// existed; the end-to-end test skips on it and nothing else.
const errNoFileStore = "file-backed databases are not available yet"

// daemon is a meterd process started by the end-to-end test.
type daemon struct {
	cmd    *exec.Cmd
	addr   string
	mu     sync.Mutex
	output bytes.Buffer // stderr so far
	exited chan error
}

// startDaemon starts meterd on dbPath with the API keys sk_test_e2e and
// sk_live_e2e and the flags in extra, and waits until it listens.
func startDaemon(t *testing.T, bin, dbPath string, extra ...string) *daemon {
	t.Helper()
	d := &daemon{exited: make(chan error, 1)}
	d.cmd = exec.Command(bin, append([]string{"-addr", "127.0.0.1:0", "-db", dbPath, "-api-key", "sk_test_e2e,sk_live_e2e"}, extra...)...)
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1000)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			d.mu.Lock()
			d.output.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	go func() {
		<-scanned
		d.exited <- d.cmd.Wait()
	}()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
		}
	})
	timeout := time.After(60 * time.Second)
	for d.addr == "" {
		select {
		case l := <-lines:
			if m := listeningRE.FindStringSubmatch(l); m != nil {
				d.addr = m[1]
			}
		case err := <-d.exited:
			out := d.log()
			if strings.Contains(out, errNoFileStore) {
				t.Skipf("meterd cannot open a database file yet (meterdb.Open(path) is not implemented): %s", strings.TrimSpace(out))
			}
			t.Fatalf("meterd exited before listening: %v\n%s", err, out)
		case <-timeout:
			t.Fatalf("meterd did not start listening within 60s\n%s", d.log())
		}
	}
	return d
}

func (d *daemon) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.output.String()
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.exited:
		if err != nil {
			t.Fatalf("meterd exited with %v\n%s", err, d.log())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("meterd did not stop within 60s\n%s", d.log())
	}
	if !strings.Contains(d.log(), "msg=stopped") {
		t.Errorf("no clean stop in the log:\n%s", d.log())
	}
}

// TestEndToEndRestart builds meterd, serves a database file, records
// events through stripe-go (also while a SIGTERM arrives), restarts it and
// reads the same summaries back.
func TestEndToEndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs meterd")
	}
	dir := t.TempDir()
	bin := buildMeterd(t)
	dbPath := filepath.Join(dir, "meters.db")
	ctx := context.Background()

	d := startDaemon(t, bin, dbPath)
	sc := client(d.addr, "sk_test_e2e")
	m, err := sc.V1BillingMeters.Create(ctx, meterParams("tokens"))
	if err != nil {
		t.Fatal(err)
	}
	counter, err := sc.V1BillingMeters.Create(ctx, &stripe.BillingMeterCreateParams{
		DisplayName: stripe.String("requests"), EventName: stripe.String("requests"),
		DefaultAggregation: &stripe.BillingMeterCreateDefaultAggregationParams{Formula: stripe.String("count")},
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	hour := now.Truncate(time.Hour)
	for i, v := range []string{"10", "20", "30", "-5"} {
		p := &stripe.BillingMeterEventCreateParams{
			EventName:  stripe.String("tokens"),
			Identifier: stripe.String(fmt.Sprintf("e2e-%d", i)),
			Payload:    map[string]string{"stripe_customer_id": "cus_e2e", "value": v},
			Timestamp:  stripe.Int64(now.Add(-time.Duration(i) * time.Hour).Unix()),
		}
		if _, err := sc.V1BillingMeterEvents.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sc.V1BillingMeterEventAdjustments.Create(ctx, &stripe.BillingMeterEventAdjustmentCreateParams{
		EventName: stripe.String("tokens"), Type: stripe.String("cancel"),
		Cancel: &stripe.BillingMeterEventAdjustmentCreateCancelParams{Identifier: stripe.String("e2e-1")},
	}); err != nil {
		t.Fatal(err)
	}
	idem := &stripe.BillingMeterEventCreateParams{EventName: stripe.String("tokens"),
		Payload: map[string]string{"stripe_customer_id": "cus_idem", "value": "1"}}
	idem.SetIdempotencyKey("e2e-idempotency-key")
	first, err := sc.V1BillingMeterEvents.Create(ctx, idem)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.V1BillingMeters.Deactivate(ctx, counter.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.V1BillingMeters.Reactivate(ctx, counter.ID, nil); err != nil {
		t.Fatal(err)
	}

	summaries := func(sc *stripe.Client, meterID, customer, window string) string {
		t.Helper()
		p := &stripe.BillingMeterEventSummaryListParams{
			ID: stripe.String(meterID), Customer: stripe.String(customer),
			StartTime: stripe.Int64(hour.Add(-4 * time.Hour).Unix()), EndTime: stripe.Int64(hour.Add(time.Hour).Unix()),
		}
		if window != "" {
			p.ValueGroupingWindow = stripe.String(window)
			p.Limit = stripe.Int64(2)
		}
		var b strings.Builder
		for s, err := range sc.V1BillingMeterEventSummaries.List(ctx, p).All(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s %d-%d %v\n", s.ID, s.StartTime, s.EndTime, s.AggregatedValue)
		}
		return b.String()
	}
	hourly, total := summaries(sc, m.ID, "cus_e2e", "hour"), summaries(sc, m.ID, "cus_e2e", "")
	if strings.Count(hourly, "\n") != 3 || !strings.HasSuffix(total, " 35\n") {
		t.Fatalf("before restart: hourly\n%stotal %s", hourly, total)
	}

	// Record count events from four clients while SIGTERM arrives:
	// everything acknowledged must survive.
	var acked atomic.Int64
	var wg sync.WaitGroup
	stopSending := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client(d.addr, "sk_test_e2e")
			for i := 0; ; i++ {
				select {
				case <-stopSending:
					return
				default:
				}
				_, err := c.V1BillingMeterEvents.Create(ctx, &stripe.BillingMeterEventCreateParams{
					EventName: stripe.String("requests"), Identifier: stripe.String(fmt.Sprintf("w%d-%d", w, i)),
					Payload: map[string]string{"stripe_customer_id": "cus_load"},
				})
				if err != nil {
					return // the server is going away
				}
				acked.Add(1)
			}
		}()
	}
	for acked.Load() < 200 {
		time.Sleep(time.Millisecond)
	}
	d.stop(t)
	close(stopSending)
	wg.Wait()
	t.Logf("%d count events acknowledged around the shutdown", acked.Load())

	d2 := startDaemon(t, bin, dbPath)
	sc2 := client(d2.addr, "sk_test_e2e")
	if got := summaries(sc2, m.ID, "cus_e2e", "hour"); got != hourly {
		t.Errorf("hourly summaries after restart:\n%swant\n%s", got, hourly)
	}
	if got := summaries(sc2, m.ID, "cus_e2e", ""); got != total {
		t.Errorf("total after restart: %swant %s", got, total)
	}
	var load float64
	for s, err := range sc2.V1BillingMeterEventSummaries.List(ctx, &stripe.BillingMeterEventSummaryListParams{
		ID: stripe.String(counter.ID), Customer: stripe.String("cus_load"),
		StartTime: stripe.Int64(hour.Add(-time.Hour).Unix()), EndTime: stripe.Int64(hour.Add(2 * time.Hour).Unix()),
	}).All(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		load = s.AggregatedValue
	}
	if int64(load) != acked.Load() {
		t.Errorf("after restart the count meter holds %v events, %d were acknowledged", load, acked.Load())
	}
	got, err := sc2.V1BillingMeters.Retrieve(ctx, counter.ID, nil)
	if err != nil || got.Status != "active" || got.StatusTransitions.DeactivatedAt != 0 {
		t.Errorf("meter after restart: %+v, %v", got, err)
	}
	// The dedupe index, cancellations and idempotency records survive too.
	_, err = sc2.V1BillingMeterEvents.Create(ctx, &stripe.BillingMeterEventCreateParams{EventName: stripe.String("tokens"),
		Identifier: stripe.String("e2e-0"), Payload: map[string]string{"stripe_customer_id": "cus_e2e", "value": "1"}})
	var se *stripe.Error
	if !errors.As(err, &se) || se.Code != "duplicate_meter_event" {
		t.Errorf("duplicate identifier after restart: %v", err)
	}
	_, err = sc2.V1BillingMeterEventAdjustments.Create(ctx, &stripe.BillingMeterEventAdjustmentCreateParams{
		EventName: stripe.String("tokens"), Type: stripe.String("cancel"),
		Cancel: &stripe.BillingMeterEventAdjustmentCreateCancelParams{Identifier: stripe.String("e2e-1")},
	})
	if !errors.As(err, &se) || se.Code != "meter_event_already_cancelled" {
		t.Errorf("second cancel after restart: %v", err)
	}
	replay, err := sc2.V1BillingMeterEvents.Create(ctx, idem)
	if err != nil || string(replay.LastResponse.RawJSON) != string(first.LastResponse.RawJSON) {
		t.Errorf("idempotent replay after restart: %v\n%s\nwant\n%s", err, replay.LastResponse.RawJSON, first.LastResponse.RawJSON)
	}
	d2.stop(t)
}

// procsSet records what run gives setProcs, leaving the test process's
// GOMAXPROCS alone.
var procsSet struct {
	mu sync.Mutex
	n  []int
}

// recordProcs stands in for runtime.GOMAXPROCS in these tests (TestMain).
func recordProcs(n int) int {
	if n > 0 {
		procsSet.mu.Lock()
		defer procsSet.mu.Unlock()
		procsSet.n = append(procsSet.n, n)
	}
	return runtime.GOMAXPROCS(0)
}

// TestProcs checks the processors meterd asks for: twice the default for
// a file with sync durability, unless GOMAXPROCS or -procs says otherwise.
func TestProcs(t *testing.T) {
	def := runtime.GOMAXPROCS(0)
	for _, c := range []struct {
		flag           int
		envSet, syncDB bool
		want           int
	}{
		{0, false, true, 2 * def}, {0, true, true, 0}, {0, false, false, 0}, {3, true, false, 3}, {5, false, true, 5},
	} {
		if got := procsFor(c.flag, c.envSet, c.syncDB); got != c.want {
			t.Errorf("procsFor(%d, %v, %v) = %d, want %d", c.flag, c.envSet, c.syncDB, got, c.want)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-db", "", "-procs", "-1"}, func(string) string { return "" }, &out); err == nil ||
		!strings.Contains(err.Error(), "-procs must be at least 0") {
		t.Errorf("-procs -1: %v", err)
	}
	// run applies it: a file with sync durability, then buffered, then
	// in memory.
	path := filepath.Join(t.TempDir(), "procs.db")
	for _, c := range []struct {
		args []string
		want []int
	}{
		{[]string{"-db", path}, []int{2 * def}},
		{[]string{"-db", path, "-durability", "buffered"}, nil},
		{[]string{"-db", ""}, nil},
		{[]string{"-db", "", "-procs", fmt.Sprint(def + 1)}, []int{def + 1}},
	} {
		procsSet.mu.Lock()
		procsSet.n = nil
		procsSet.mu.Unlock()
		ctx, cancel := context.WithCancel(context.Background())
		lw := &lineWriter{lines: make(chan string, 100)}
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, append([]string{"-addr", "127.0.0.1:0", "-metrics-addr", ""}, c.args...), func(string) string { return "" }, lw)
		}()
		waitListening(t, lw.lines, done)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		procsSet.mu.Lock()
		got := procsSet.n
		procsSet.mu.Unlock()
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%q: GOMAXPROCS set to %v, want %v", c.args, got, c.want)
		}
	}
}
