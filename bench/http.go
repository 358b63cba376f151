package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/stripeapi"
)

// The HTTP targets drive stripeapi over loopback: a net/http server on
// 127.0.0.1 serving stripeapi.NewHandler over an in-memory DB, and a Go
// client in the same process whose CPU time counts, as it would on one
// machine running both.

// httpAPIKey is the API key every HTTP client sends.
const httpAPIKey = "sk_test_bench"

// httpServer is stripeapi's handler over a DB on a loopback listener. It
// does not own the DB.
type httpServer struct {
	URL string
	srv *http.Server
	ln  net.Listener
}

// httpStartServer serves stripeapi's handler over db on 127.0.0.1 with
// the handler's clock now (nil: time.Now).
func httpStartServer(db *meterdb.DB, now func() time.Time) (*httpServer, error) {
	h, err := stripeapi.NewHandler(db, &stripeapi.Options{APIKeys: []string{httpAPIKey}, Now: now})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &httpServer{URL: "http://" + ln.Addr().String(), srv: &http.Server{Handler: h}, ln: ln}
	go s.srv.Serve(ln)
	return s, nil
}

// Close stops the server and its connections; the DB stays open.
func (s *httpServer) Close() error { return s.srv.Close() }

// httpNewClient returns a client whose transport keeps up to conns idle
// keep-alive connections to one host, so that concurrent workers reuse
// their connections instead of opening one per request (the default
// transport keeps two).
func httpNewClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Minute,
	}}
}

// httpPost sends one POST with the API key (or session token) key, the
// content type ct and, when idemKey is not empty, an Idempotency-Key, and
// appends the response body to buf. A status other than 200 is an error
// quoting the body.
func httpPost(ctx context.Context, hc *http.Client, u, key, ct string, body []byte, idemKey string, buf []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return buf, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", ct)
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	return httpDo(hc, req, buf)
}

// httpDo sends req and appends its response body to buf; a status other
// than 200 is an error quoting the body.
func httpDo(hc *http.Client, req *http.Request, buf []byte) ([]byte, error) {
	n := len(buf)
	buf, res, err := httpSend(hc, req, buf)
	if err != nil {
		return buf, err
	}
	if res.StatusCode != http.StatusOK {
		return buf, fmt.Errorf("%s %s: status %d: %s", req.Method, req.URL.Path, res.StatusCode, bytes.TrimSpace(buf[n:]))
	}
	return buf, nil
}

// httpSend sends req, appends its response body to buf and returns the
// response, whose body is closed, whatever its status. An error means the
// exchange itself failed (connection refused or reset, timeout, a body cut
// short); res is then nil unless the headers had arrived.
func httpSend(hc *http.Client, req *http.Request, buf []byte) ([]byte, *http.Response, error) {
	res, err := hc.Do(req)
	if err != nil {
		return buf, nil, err
	}
	defer res.Body.Close()
	w := bytes.NewBuffer(buf)
	_, err = io.Copy(w, res.Body)
	return w.Bytes(), res, err
}

// httpAppendV1Event appends the form-encoded body of POST
// /v1/billing/meter_events for ev, as Stripe's SDKs encode it: bracketed
// payload keys, percent-escaped, payload keys sorted, timestamp in unix
// seconds.
func httpAppendV1Event(buf []byte, ev *event.Event) []byte {
	buf = append(buf, "event_name="...)
	buf = append(buf, url.QueryEscape(ev.Name)...)
	if ev.Identifier != "" {
		buf = append(buf, "&identifier="...)
		buf = append(buf, url.QueryEscape(ev.Identifier)...)
	}
	for _, k := range httpSortedKeys(ev.Payload) {
		buf = append(buf, "&payload%5B"...)
		buf = append(buf, url.QueryEscape(k)...)
		buf = append(buf, "%5D="...)
		buf = append(buf, url.QueryEscape(ev.Payload[k])...)
	}
	if !ev.Timestamp.IsZero() {
		buf = append(buf, "&timestamp="...)
		buf = strconv.AppendInt(buf, ev.Timestamp.Unix(), 10)
	}
	return buf
}

// httpAppendV2Stream appends the JSON body of POST
// /v2/billing/meter_event_stream carrying evs, as stripe-go encodes it:
// RFC 3339 timestamps.
func httpAppendV2Stream(buf []byte, evs []event.Event) []byte {
	buf = append(buf, `{"events":[`...)
	for i := range evs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = httpAppendV2Event(buf, &evs[i])
	}
	return append(buf, "]}"...)
}

// httpAppendV2Event appends ev as a JSON object: the body of POST
// /v2/billing/meter_events, and one element of a stream's events.
func httpAppendV2Event(buf []byte, ev *event.Event) []byte {
	buf = append(buf, `{"event_name":`...)
	buf = strconv.AppendQuote(buf, ev.Name)
	if ev.Identifier != "" {
		buf = append(buf, `,"identifier":`...)
		buf = strconv.AppendQuote(buf, ev.Identifier)
	}
	buf = append(buf, `,"payload":{`...)
	for j, k := range httpSortedKeys(ev.Payload) {
		if j > 0 {
			buf = append(buf, ',')
		}
		buf = strconv.AppendQuote(buf, k)
		buf = append(buf, ':')
		buf = strconv.AppendQuote(buf, ev.Payload[k])
	}
	buf = append(buf, '}')
	if !ev.Timestamp.IsZero() {
		buf = append(buf, `,"timestamp":"`...)
		buf = ev.Timestamp.UTC().AppendFormat(buf, time.RFC3339)
		buf = append(buf, '"')
	}
	return append(buf, '}')
}

// httpSortedKeys returns the keys of m in order. The workload's payloads
// have two keys, already in order as "stripe_customer_id" < "value".
func httpSortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// httpTarget is a Target that records events through stripeapi over
// loopback HTTP: v1 (one event per POST /v1/billing/meter_events) or v2
// (up to stripeapi.MaxStreamEvents events per POST
// /v2/billing/meter_event_stream, with a session token). The server runs
// in the same process over an in-memory DB with the workload's clock.
//
// Summaries read the DB behind the server directly: Stripe's summary
// objects carry no event count, which the verification compares; the go
// test benchmarks check summaries over HTTP.
type httpTarget struct {
	db     *meterdb.DB
	srv    *httpServer
	hc     *http.Client
	stream bool
	token  string        // v2 session token
	seq    atomic.Uint64 // numbers Idempotency-Keys
	bufs   sync.Pool     // *[]byte request and response buffers
}

// httpOpenTarget opens an in-memory DB with w's clock behind a loopback
// server, and, for v2, creates a meter event session.
func httpOpenTarget(stream bool) func(w *Workload, dir string) (Target, error) {
	return func(w *Workload, _ string) (Target, error) {
		db, err := meterdb.Open("", &meterdb.Options{Now: w.Now})
		if err != nil {
			return nil, err
		}
		srv, err := httpStartServer(db, w.Now)
		if err != nil {
			db.Close()
			return nil, err
		}
		t := &httpTarget{db: db, srv: srv, hc: httpNewClient(1024), stream: stream}
		if stream {
			body, err := httpPost(context.Background(), t.hc, srv.URL+"/v2/billing/meter_event_session",
				httpAPIKey, "application/json", nil, "", nil)
			var sess struct {
				Token string `json:"authentication_token"`
			}
			if err == nil {
				err = json.Unmarshal(body, &sess)
			}
			if err == nil && sess.Token == "" {
				err = errors.New("meter event session without authentication_token")
			}
			if err != nil {
				t.Close()
				return nil, err
			}
			t.token = sess.Token
		}
		return t, nil
	}
}

// CreateMeters creates the meters with POST /v1/billing/meters.
func (t *httpTarget) CreateMeters(ctx context.Context, ps []meter.Params) ([]string, error) {
	var ids []string
	for _, p := range ps {
		form := url.Values{
			"display_name": {p.DisplayName}, "event_name": {p.EventName},
			"default_aggregation[formula]": {string(p.Formula)},
		}
		body, err := httpPost(ctx, t.hc, t.srv.URL+"/v1/billing/meters", httpAPIKey,
			"application/x-www-form-urlencoded", []byte(form.Encode()), "", nil)
		if err != nil {
			return nil, err
		}
		var m struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		ids = append(ids, m.ID)
	}
	return ids, nil
}

// getBuf returns a buffer from the target's pool; put it back when the
// request that used it is answered.
func (t *httpTarget) getBuf() *[]byte {
	if b, ok := t.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 4096)
	return &b
}

// idemKey returns a fresh Idempotency-Key, unique within the target.
func (t *httpTarget) idemKey() string {
	return "bench_" + strconv.FormatUint(t.seq.Add(1), 36)
}

// Record sends one event: a v1 meter event, or a v2 stream request of one
// event. Every request carries an Idempotency-Key, as stripe-go sends.
func (t *httpTarget) Record(ctx context.Context, ev *event.Event) error {
	if t.stream {
		_, err := t.RecordBatch(ctx, []event.Event{*ev})
		return err
	}
	bp, rp := t.getBuf(), t.getBuf()
	defer t.bufs.Put(bp)
	defer t.bufs.Put(rp)
	*bp = httpAppendV1Event((*bp)[:0], ev)
	var err error
	*rp, err = httpPost(ctx, t.hc, t.srv.URL+"/v1/billing/meter_events", httpAPIKey,
		"application/x-www-form-urlencoded", *bp, t.idemKey(), (*rp)[:0])
	return err
}

// RecordBatch sends evs: for v2 as stream requests of up to
// stripeapi.MaxStreamEvents events; for v1, which has no batch endpoint,
// as one request per event, in order. The stream validates
// asynchronously (rejections become error reports), so rejected is
// always 0 there and the verification after the load catches losses.
func (t *httpTarget) RecordBatch(ctx context.Context, evs []event.Event) (int, error) {
	if !t.stream {
		for i := range evs {
			if err := t.Record(ctx, &evs[i]); err != nil {
				return 0, err
			}
		}
		return 0, nil
	}
	bp, rp := t.getBuf(), t.getBuf()
	defer t.bufs.Put(bp)
	defer t.bufs.Put(rp)
	for len(evs) > 0 {
		n := min(len(evs), stripeapi.MaxStreamEvents)
		*bp = httpAppendV2Stream((*bp)[:0], evs[:n])
		var err error
		*rp, err = httpPost(ctx, t.hc, t.srv.URL+"/v2/billing/meter_event_stream", t.token,
			"application/json", *bp, t.idemKey(), (*rp)[:0])
		if err != nil {
			return 0, err
		}
		evs = evs[n:]
	}
	return 0, nil
}

func (t *httpTarget) Summaries(ctx context.Context, p meterdb.SummaryParams) ([]meterdb.Summary, error) {
	return t.db.Summaries(ctx, p)
}

// Close stops the server, then closes the DB.
func (t *httpTarget) Close() error {
	t.srv.Close()
	t.hc.CloseIdleConnections()
	return t.db.Close()
}
