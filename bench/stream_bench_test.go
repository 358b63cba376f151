package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/stripeapi"
	"github.com/stripe/stripe-go/v85"
)

// streamCustomers is how many customers the stream benchmark spreads its
// events over.
const streamCustomers = 1000

// streamServer is meterd's stack in process: a file DB with the default
// durability (fsync before acknowledgement) behind the stripeapi handler
// on a loopback listener.
type streamServer struct {
	db    *meterdb.DB
	meter meter.Meter
	url   string
	srv   *http.Server
}

func streamStart(b *testing.B) *streamServer {
	b.Helper()
	db, err := meterdb.Open(filepath.Join(b.TempDir(), "stream.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	m, err := db.CreateMeter(context.Background(), meter.Params{DisplayName: "usage", EventName: "stream_usage", Formula: meter.Sum})
	if err != nil {
		b.Fatal(err)
	}
	h, err := stripeapi.NewHandler(db, &stripeapi.Options{APIKeys: []string{"sk_test_bench"}})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &streamServer{db: db, meter: m, url: "http://" + ln.Addr().String(), srv: &http.Server{Handler: h}}
	go s.srv.Serve(ln)
	b.Cleanup(func() {
		s.srv.Close()
		db.Close()
	})
	return s
}

// streamTotal returns the number of events counted over every customer.
func (s *streamServer) streamTotal(b *testing.B) int64 {
	b.Helper()
	now := time.Now().UTC().Truncate(time.Hour)
	var n int64
	for c := range streamCustomers {
		sum, err := s.db.Summaries(context.Background(), meterdb.SummaryParams{Meter: s.meter.ID,
			Customer: "cus_" + strconv.Itoa(c), Start: now.Add(-24 * time.Hour), End: now.Add(2 * time.Hour)})
		if err != nil {
			b.Fatal(err)
		}
		n += sum[0].Count
	}
	return n
}

func streamBackends(url string, workers int) *stripe.Backends {
	return stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL: stripe.String(url), MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
		HTTPClient:    &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}},
	})
}

// streamAppendBody appends the JSON body of stream request r: 100 events
// with unique identifiers, as stripe-go would encode them.
func streamAppendBody(buf []byte, run string, r int) []byte {
	buf = append(buf, `{"events":[`...)
	for i := range 100 {
		if i > 0 {
			buf = append(buf, ',')
		}
		n := r*100 + i
		buf = append(buf, `{"event_name":"stream_usage","identifier":"`...)
		buf = append(buf, run...)
		buf = strconv.AppendInt(append(buf, '-'), int64(n), 10)
		buf = append(buf, `","payload":{"stripe_customer_id":"cus_`...)
		buf = strconv.AppendInt(buf, int64(n*7919%streamCustomers), 10)
		buf = append(buf, `","value":"`...)
		buf = strconv.AppendInt(buf, int64(1+n%9), 10)
		buf = append(buf, `"}}`...)
	}
	return append(buf, "]}"...)
}

// BenchmarkStream measures POST /v2/billing/meter_event_stream over
// loopback: 100 events per request, a file DB with the default durability
// (every request acknowledged after the fsync covering it), and
// concurrent Go clients in the same process, whose CPU counts. client=raw
// posts JSON built with strconv over keep-alive connections;
// client=stripe-go goes through V2BillingMeterEventStreams.Create with
// parameters built before the timer. One op is one request.
func BenchmarkStream(b *testing.B) {
	var runs atomic.Int64
	for _, client := range []string{"raw", "stripe-go"} {
		for _, workers := range []int{16, 64} {
			b.Run(fmt.Sprintf("client=%s/workers=%d", client, workers), func(b *testing.B) {
				s := streamStart(b)
				backends := streamBackends(s.url, workers)
				sess, err := stripe.NewClient("sk_test_bench", stripe.WithBackends(backends)).
					V2BillingMeterEventSessions.Create(context.Background(), nil)
				if err != nil {
					b.Fatal(err)
				}
				run := "r" + strconv.FormatInt(runs.Add(1), 10)
				var next atomic.Int64 // requests handed out; request r carries events 100r to 100r+99
				var wg sync.WaitGroup
				var failed atomic.Pointer[error]
				fail := func(err error) { failed.CompareAndSwap(nil, &err) }

				// Parameters for stripe-go, built before the timer.
				var params []*stripe.V2BillingMeterEventStreamCreateParams
				if client == "stripe-go" {
					params = make([]*stripe.V2BillingMeterEventStreamCreateParams, b.N)
					for r := range params {
						p := &stripe.V2BillingMeterEventStreamCreateParams{}
						for i := range 100 {
							n := r*100 + i
							p.Events = append(p.Events, &stripe.V2BillingMeterEventStreamCreateEventParams{
								EventName:  stripe.String("stream_usage"),
								Identifier: stripe.String(run + "-" + strconv.Itoa(n)),
								Payload: map[string]string{"stripe_customer_id": "cus_" + strconv.Itoa(n*7919%streamCustomers),
									"value": strconv.Itoa(1 + n%9)},
							})
						}
						params[r] = p
					}
				}
				hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}}
				b.ReportAllocs()
				b.ResetTimer()
				for range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						sc := stripe.NewClient(sess.AuthenticationToken, stripe.WithBackends(backends))
						var buf []byte
						for {
							r := int(next.Add(1) - 1)
							if r >= b.N || failed.Load() != nil {
								return
							}
							if client == "stripe-go" {
								if err := sc.V2BillingMeterEventStreams.Create(context.Background(), params[r]); err != nil {
									fail(err)
								}
								continue
							}
							buf = streamAppendBody(buf[:0], run, r)
							req, _ := http.NewRequest("POST", s.url+"/v2/billing/meter_event_stream", bytes.NewReader(buf))
							req.Header.Set("Authorization", "Bearer "+sess.AuthenticationToken)
							req.Header.Set("Content-Type", "application/json")
							req.Header.Set("Idempotency-Key", run+"-"+strconv.Itoa(r))
							res, err := hc.Do(req)
							if err != nil {
								fail(err)
								return
							}
							body, _ := io.ReadAll(res.Body)
							res.Body.Close()
							if res.StatusCode != http.StatusOK {
								fail(fmt.Errorf("status %d: %s", res.StatusCode, body))
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				if err := failed.Load(); err != nil {
					b.Fatal(*err)
				}
				b.ReportMetric(float64(b.N)*100/b.Elapsed().Seconds(), "events/s")
				if got := s.streamTotal(b); got != int64(b.N)*100 {
					b.Fatalf("counted %d events, sent %d", got, b.N*100)
				}
			})
		}
	}
}
