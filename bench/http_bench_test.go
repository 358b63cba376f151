package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/meter"
	"github.com/stripe/stripe-go/v85"
)

// The HTTP benchmarks: stripeapi's v1 handler on a loopback net/http
// server, driven by Go clients in the same process (their CPU time counts,
// as on one machine running both). Inputs are built before the timer;
// after it, every event is checked to have been counted and every summary
// answer against brute force.
//
//	go test -run '^$' -bench 'HTTP' ./bench

// httpCustomers is how many customers the meter event benchmarks spread
// their events over: few enough to verify every series afterwards.
const httpCustomers = 1000

// httpOpenDB opens the DB behind the server: in memory, or in a file under
// b.TempDir() with the default durability (acknowledged after the fsync
// that covers the event). The clock is the workload's.
func httpOpenDB(b *testing.B, w *Workload, file bool) (*meterDB, []string) {
	b.Helper()
	path := ""
	if file {
		path = filepath.Join(b.TempDir(), "meter.db")
	}
	db, err := meterdb.Open(path, &meterdb.Options{Now: w.Now})
	if err != nil {
		b.Fatal(err)
	}
	t := &meterDB{db: db, path: path}
	ids, err := t.CreateMeters(context.Background(), w.Meters)
	if err != nil {
		b.Fatal(err)
	}
	return t, ids
}

// httpServe serves db on loopback until the benchmark ends.
func httpServe(b *testing.B, db *meterdb.DB, now func() time.Time) *httpServer {
	b.Helper()
	s, err := httpStartServer(db, now)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// httpIdempotencyKey returns the Idempotency-Key of request i, in
// stripe-go's shape (unix nanoseconds, "_", six base64 characters).
func httpIdempotencyKey(w *Workload, i int) string {
	const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	x := mix(w.Seed<<40 ^ 0x1de ^ uint64(i))
	k := strconv.AppendInt(nil, w.Anchor.UnixNano()+int64(i)*1000, 10)
	k = append(k, '_')
	for s := 0; s < 36; s += 6 {
		k = append(k, b64[x>>s&63])
	}
	return string(k)
}

// BenchmarkHTTPMeterEvents measures POST /v1/billing/meter_events over
// loopback: one event per request, form-encoded as Stripe's SDKs send it,
// with "Authorization: Bearer" and, as stripe-go sends with every POST, an
// Idempotency-Key (idempotency_key=false leaves it out). One op is one
// request. workers goroutines share one client whose transport keeps
// workers idle connections, so connections are reused.
//
// db=mem is meterdb.Open("", …); db=file a file-backed DB with the default
// durability, so every request waits for the fsync covering its event
// (and, with an Idempotency-Key, for the one covering its idempotency
// record). client=raw builds requests with net/http from bodies encoded
// before the timer; client=stripe-go calls V1BillingMeterEvents.Create
// with parameters built before the timer, and sends its own
// Idempotency-Key. The workload: 1,000 Zipf(1.1) customers, three meters
// (count, sum, last), timestamps over the hour before the clock, unique
// identifiers.
//
// Metrics: req/s; cpu-ns/req, the process's CPU time (server, client and
// GC, all threads) per request, which does not depend on how much of the
// machine other processes take; B/req, bytes allocated per request.
func BenchmarkHTTPMeterEvents(b *testing.B) {
	w := benchWorkload(httpCustomers, time.Hour)
	for _, db := range []string{"mem", "file"} {
		for _, client := range []string{"raw", "stripe-go"} {
			for _, idem := range []bool{true, false} {
				if client == "stripe-go" && !idem {
					continue // stripe-go sends a key with every POST
				}
				for _, workers := range []int{16, 64} {
					name := fmt.Sprintf("db=%s/client=%s/idempotency_key=%v/workers=%d", db, client, idem, workers)
					b.Run(name, func(b *testing.B) { httpBenchMeterEvents(b, w, db == "file", client, idem, workers) })
				}
			}
		}
	}
}

func httpBenchMeterEvents(b *testing.B, w *Workload, file bool, client string, idem bool, workers int) {
	ctx := context.Background()
	evs := w.Events(0, b.N)
	db, ids := httpOpenDB(b, w, file)
	defer db.Close()
	srv := httpServe(b, db.db, w.Now)
	defer srv.Close()

	// Requests, built before the timer.
	var (
		bodies [][]byte
		keys   []string
		params []*stripe.BillingMeterEventCreateParams
		sc     *stripe.Client
	)
	if client == "raw" {
		bodies = make([][]byte, b.N)
		keys = make([]string, b.N)
		for i := range evs {
			bodies[i] = httpAppendV1Event(nil, &evs[i])
			if idem {
				keys[i] = httpIdempotencyKey(w, i)
			}
		}
	} else {
		params = make([]*stripe.BillingMeterEventCreateParams, b.N)
		for i := range evs {
			params[i] = &stripe.BillingMeterEventCreateParams{
				EventName: stripe.String(evs[i].Name), Identifier: stripe.String(evs[i].Identifier),
				Payload: evs[i].Payload, Timestamp: stripe.Int64(evs[i].Timestamp.Unix()),
			}
		}
		backends := stripe.NewBackendsWithConfig(&stripe.BackendConfig{
			URL: stripe.String(srv.URL), MaxNetworkRetries: stripe.Int64(0),
			LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
			HTTPClient:    httpNewClient(workers),
		})
		sc = stripe.NewClient(httpAPIKey, stripe.WithBackends(backends))
	}
	hc := httpNewClient(workers)
	u := srv.URL + "/v1/billing/meter_events"

	httpDrive(b, workers, func(i int, resp []byte) ([]byte, error) {
		var err error
		if client == "raw" {
			resp, err = httpPost(ctx, hc, u, httpAPIKey, "application/x-www-form-urlencoded", bodies[i], keys[i], resp[:0])
		} else {
			_, err = sc.V1BillingMeterEvents.Create(ctx, params[i])
		}
		if err != nil {
			return resp, fmt.Errorf("request %d: %w", i, err)
		}
		return resp, nil
	})
	hc.CloseIdleConnections()
	if got := db.db.Stats().EventsAccepted; got != int64(b.N) {
		b.Fatalf("accepted %d events, sent %d", got, b.N)
	}
	if _, err := verifyTotals(ctx, "http-v1", db, w, ids, [][2]uint64{{0, uint64(b.N)}}, 3*httpCustomers); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkHTTPFloor measures the same client and loopback server as
// BenchmarkHTTPMeterEvents/db=mem/client=raw, with a handler that only
// reads the form body and answers a fixed billing.meter_event of the same
// size with the same headers: the request rate that net/http and
// loopback TCP leave on this machine before stripeapi and meterdb do
// anything.
func BenchmarkHTTPFloor(b *testing.B) {
	for _, workers := range []int{16, 64} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			w := benchWorkload(httpCustomers, time.Hour)
			evs := w.Events(0, b.N)
			bodies := make([][]byte, b.N)
			keys := make([]string, b.N)
			for i := range evs {
				bodies[i] = httpAppendV1Event(nil, &evs[i])
				keys[i] = httpIdempotencyKey(w, i)
			}
			answer := []byte(`{
  "object": "billing.meter_event",
  "created": 1772323200,
  "event_name": "bench_count_0",
  "identifier": "ev_0123456789abcdef",
  "livemode": false,
  "payload": {
    "stripe_customer_id": "cus_00000000000000",
    "value": "123"
  },
  "timestamp": 1772322000
}
`)
			var served atomic.Int64
			h := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
				if err := r.ParseForm(); err != nil || r.PostForm.Get("event_name") == "" {
					http.Error(rw, "bad form", http.StatusBadRequest)
					return
				}
				hd := rw.Header()
				hd.Set("Request-Id", "req_0123456789abcd")
				hd.Set("Content-Type", "application/json")
				hd.Set("Cache-Control", "no-cache, no-store")
				hd.Set("Idempotency-Key", r.Header.Get("Idempotency-Key"))
				rw.Write(answer)
				served.Add(1)
			})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := &http.Server{Handler: h}
			go srv.Serve(ln)
			defer srv.Close()
			u := "http://" + ln.Addr().String() + "/v1/billing/meter_events"
			hc := httpNewClient(workers)
			httpDrive(b, workers, func(i int, resp []byte) ([]byte, error) {
				return httpPost(context.Background(), hc, u, httpAPIKey, "application/x-www-form-urlencoded", bodies[i], keys[i], resp[:0])
			})
			if got := served.Load(); got != int64(b.N) {
				b.Fatalf("served %d requests, sent %d", got, b.N)
			}
		})
	}
}

// httpSummaryPage is the part of a v1 list of billing.meter_event_summary
// that the summary benchmark checks.
type httpSummaryPage struct {
	Object string `json:"object"`
	Data   []struct {
		ID              string      `json:"id"`
		Object          string      `json:"object"`
		AggregatedValue json.Number `json:"aggregated_value"`
		StartTime       int64       `json:"start_time"`
		EndTime         int64       `json:"end_time"`
		Meter           string      `json:"meter"`
	} `json:"data"`
	HasMore bool `json:"has_more"`
}

// httpGet sends an authenticated GET and appends the response body to buf.
func httpGet(hc *http.Client, u string, buf []byte) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return buf, err
	}
	req.Header.Set("Authorization", "Bearer "+httpAPIKey)
	return httpDo(hc, req, buf)
}

// httpSummaryPages walks GET /v1/billing/meters/{id}/event_summaries for
// p with limit=100, following starting_after as Stripe's clients paginate,
// and checks the windows against brute force over f's events. It returns
// the URL and the body of every page.
func httpSummaryPages(b *testing.B, hc *http.Client, base string, f *summaryFixture, p meterdb.SummaryParams) (urls []string, bodies [][]byte) {
	b.Helper()
	q := url.Values{
		"customer": {f.customer}, "start_time": {strconv.FormatInt(p.Start.Unix(), 10)},
		"end_time": {strconv.FormatInt(p.End.Unix(), 10)}, "limit": {"100"},
	}
	if p.Grouping != meterdb.GroupNone {
		q.Set("value_grouping_window", string(p.Grouping))
	}
	first := base + "/v1/billing/meters/" + url.PathEscape(f.meterID) + "/event_summaries?" + q.Encode()
	want := expectedWindows(f.events, p)
	u, n := first, 0
	for {
		body, err := httpGet(hc, u, nil)
		if err != nil {
			b.Fatal(err)
		}
		urls, bodies = append(urls, u), append(bodies, body)
		var page httpSummaryPage
		if err := json.Unmarshal(body, &page); err != nil {
			b.Fatalf("page %d: %v", len(urls), err)
		}
		if page.Object != "list" || len(page.Data) == 0 {
			b.Fatalf("page %d: not a list of summaries: %s", len(urls), body)
		}
		for _, s := range page.Data {
			if n >= len(want) {
				b.Fatalf("more than the %d expected windows", len(want))
			}
			e := want[n]
			v := e.Value(meter.Sum)
			if e.Count == 0 {
				v = 0
			}
			if s.Object != "billing.meter_event_summary" || s.Meter != f.meterID || s.StartTime != e.start ||
				s.EndTime != e.end || s.AggregatedValue.String() != strconv.FormatInt(v, 10) {
				b.Fatalf("summary %d: [%d, %d) value %s, want [%d, %d) value %d", n, s.StartTime, s.EndTime,
					s.AggregatedValue, e.start, e.end, v)
			}
			n++
		}
		if !page.HasMore {
			break
		}
		u = first + "&starting_after=" + url.QueryEscape(page.Data[len(page.Data)-1].ID)
	}
	if n != len(want) {
		b.Fatalf("%d windows over %d pages, want %d", n, len(urls), len(want))
	}
	return urls, bodies
}

// BenchmarkHTTPSummary measures GET /v1/billing/meters/{id}/event_summaries
// over loopback, one request at a time, for one customer of a sum meter
// with 4 events in every hour of the 35 days before the clock (the
// fixture of BenchmarkSummary, in memory). Every request asks for
// limit=100 (Stripe's maximum); hourly windows over 35 days are 840, so
// that query is read as Stripe's clients read it, page after page with
// starting_after, and one op is one page. The pages are checked against
// brute force before the timer, and every timed response is compared
// with them byte for byte. p50-ns and p99-ns are per request, client
// included.
func BenchmarkHTTPSummary(b *testing.B) {
	anchor := DefaultAnchor
	for _, q := range []struct {
		name string
		p    meterdb.SummaryParams
	}{
		{"grouping=none/range=30d", meterdb.SummaryParams{Start: anchor.Add(-30 * 24 * time.Hour), End: anchor}},
		{"grouping=hour/range=48h", meterdb.SummaryParams{Start: anchor.Add(-48 * time.Hour), End: anchor, Grouping: meterdb.GroupHour}},
		{"grouping=day/range=35d", meterdb.SummaryParams{Start: anchor.Add(-35 * 24 * time.Hour), End: anchor, Grouping: meterdb.GroupDay}},
		{"grouping=hour/range=35d/pages=9", meterdb.SummaryParams{Start: anchor.Add(-35 * 24 * time.Hour), End: anchor, Grouping: meterdb.GroupHour}},
	} {
		b.Run(q.name, func(b *testing.B) {
			f := newSummaryFixture(b, 4)
			defer f.db.Close()
			srv := httpServe(b, f.db.db, DefaultAnchor.UTC)
			defer srv.Close()
			hc := httpNewClient(1)
			p := q.p
			p.Meter, p.Customer = f.meterID, f.customer
			urls, want := httpSummaryPages(b, hc, srv.URL, f, p)
			lat := make([]time.Duration, 0, min(b.N, 1<<20))
			var buf []byte
			var err error
			runtime.GC()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				k := i % len(urls)
				t0 := time.Now()
				if buf, err = httpGet(hc, urls[k], buf[:0]); err != nil {
					b.Fatal(err)
				}
				if len(lat) < cap(lat) {
					lat = append(lat, time.Since(t0))
				}
				if !bytes.Equal(buf, want[k]) {
					b.Fatalf("page %d changed:\n%s\nwas:\n%s", k, buf, want[k])
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
			b.ReportMetric(float64(len(want[0])), "B/response")
			httpSummaryPages(b, hc, srv.URL, f, p)
		})
	}
}

// httpDrive runs requests 0 to b.N-1 from workers goroutines, each calling
// do with the request index and a response buffer to reuse, and reports
// req/s, CPU time and bytes allocated per request. The first error fails
// the benchmark.
func httpDrive(b *testing.B, workers int, do func(i int, resp []byte) ([]byte, error)) {
	var (
		next   atomic.Int64
		failed atomic.Pointer[error]
		wg     sync.WaitGroup
	)
	runtime.GC()
	b.ReportAllocs()
	alloc0, cpu0 := totalAlloc(), cpuTime()
	b.ResetTimer()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var resp []byte
			for {
				i := int(next.Add(1) - 1)
				if i >= b.N || failed.Load() != nil {
					return
				}
				var err error
				if resp, err = do(i, resp); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	cpu, alloc := cpuTime()-cpu0, totalAlloc()-alloc0
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/req")
	b.ReportMetric(float64(alloc)/float64(b.N), "B/req")
}
