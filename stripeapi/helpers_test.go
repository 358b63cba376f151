package stripeapi_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/stripeapi"
	"github.com/stripe/stripe-go/v85"
)

const testKey = "sk_test_meterdb"

// t0 is the tests' starting time: a Sunday, 12:30 UTC.
var t0 = time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC)

// clock is a settable clock shared by a DB and its handler.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a handler over a DB (in memory unless newEnvDB names a file)
// behind an httptest server.
type env struct {
	t   *testing.T
	clk *clock
	db  *meterdb.DB
	h   http.Handler
	srv *httptest.Server
}

// newEnv starts a server over an in-memory DB; wrap, if not nil, wraps
// the handler.
func newEnv(t *testing.T, opts *stripeapi.Options, wrap func(http.Handler) http.Handler) *env {
	t.Helper()
	return newEnvDB(t, "", meterdb.Options{}, opts, wrap)
}

// newEnvDB is newEnv over the DB that meterdb.Open(path, &dbo) opens, its
// clock the env's unless dbo.Now is set.
func newEnvDB(t *testing.T, path string, dbo meterdb.Options, opts *stripeapi.Options, wrap func(http.Handler) http.Handler) *env {
	t.Helper()
	clk := &clock{t: t0}
	if dbo.Now == nil {
		dbo.Now = clk.Now
	}
	db, err := meterdb.Open(path, &dbo)
	if err != nil {
		t.Fatal(err)
	}
	var o stripeapi.Options
	if opts != nil {
		o = *opts
	}
	o.Now = clk.Now
	h, err := stripeapi.NewHandler(db, &o)
	if err != nil {
		t.Fatal(err)
	}
	var served http.Handler = h
	if wrap != nil {
		served = wrap(h)
	}
	srv := httptest.NewServer(served)
	t.Cleanup(func() {
		srv.Close()
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return &env{t: t, clk: clk, db: db, h: h, srv: srv}
}

// client returns a stripe-go client for the server, without retries.
func (e *env) client(key string) *stripe.Client {
	return newClient(e.srv.URL, key, 0)
}

func newClient(url, key string, retries int64) *stripe.Client {
	backends := stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL:               stripe.String(url),
		MaxNetworkRetries: stripe.Int64(retries),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
	})
	return stripe.NewClient(key, stripe.WithBackends(backends))
}

// do sends a raw request; hdr holds header name/value pairs. It returns the
// response and its decoded JSON body.
func (e *env) do(method, path, body string, hdr ...string) (*http.Response, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		e.t.Fatalf("%s %s: body is not a JSON object: %v\n%s", method, path, err, raw)
	}
	if res.Header.Get("Request-Id") == "" {
		e.t.Errorf("%s %s: no Request-Id header", method, path)
	}
	return res, m
}

// errField returns field k of the error object of body.
func errField(body map[string]any, k string) string {
	eo, _ := body["error"].(map[string]any)
	s, _ := eo[k].(string)
	return s
}

// wantStripeErr checks that err is a *stripe.Error with the given status,
// type, code and param, and returns it.
func wantStripeErr(t *testing.T, err error, status int, typ stripe.ErrorType, code stripe.ErrorCode, param string) *stripe.Error {
	t.Helper()
	var se *stripe.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not a *stripe.Error", err, err)
	}
	if se.HTTPStatusCode != status || se.Type != typ || se.Code != code || se.Param != param {
		t.Fatalf("got status %d type %q code %q param %q (%s); want %d %q %q %q",
			se.HTTPStatusCode, se.Type, se.Code, se.Param, se.Msg, status, typ, code, param)
	}
	if se.RequestID == "" || !strings.HasPrefix(se.RequestID, "req_") {
		t.Errorf("error has request id %q", se.RequestID)
	}
	if se.Msg == "" {
		t.Error("error has no message")
	}
	return se
}
