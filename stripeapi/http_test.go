package stripeapi_test

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meterdb/meterdb/stripeapi"
)

// These tests speak raw HTTP: what SDKs never send.

func TestAuth(t *testing.T) {
	e := newEnv(t, nil, nil)
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		auth   string
		status int
		msg    string
	}{
		{"", 401, "You did not provide an API key. You need to provide your API key in the Authorization header, " +
			"using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication " +
			"for details, or we can help at https://support.stripe.com/."},
		{"Bearer ", 401, "You did not provide an API key."},
		{"Token sk_test_1", 401, "You did not provide an API key."},
		{"Bearer sk_live_123456789abcd", 401, "Invalid API Key provided: sk_live_*********abcd"},
		{"Bearer pk_test_123", 401, "Invalid API Key provided: pk_test_****"},
		{"Bearer sk_test_", 401, "Invalid API Key provided: sk_test_****"},
		{"Bearer sk_test_" + strings.Repeat("x", 300), 401, "Invalid API Key provided: (unprintable or overlong key)"},
		{"Bearer sk_test_any", 200, ""},
		{"bearer sk_test_any", 200, ""},
		{basic("sk_test_any:"), 200, ""},
		{basic("sk_test_any"), 200, ""},
		{"Basic sk_test_any", 200, ""},
		{basic("sk_live_x:"), 401, "Invalid API Key provided: sk_live_****"},
	} {
		res, body := e.do("GET", "/v1/billing/meters", "", "Authorization", tc.auth)
		if res.StatusCode != tc.status {
			t.Errorf("%q: status %d, want %d", tc.auth, res.StatusCode, tc.status)
			continue
		}
		if tc.status == 200 {
			continue
		}
		eo := body["error"].(map[string]any)
		if !strings.HasPrefix(eo["message"].(string), tc.msg) || eo["type"] != "invalid_request_error" || len(eo) != 2 {
			t.Errorf("%q: error %v", tc.auth, eo)
		}
		if res.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%q: no WWW-Authenticate header", tc.auth)
		}
	}

	// Configured keys: only those, and livemode follows the key.
	k := newEnv(t, &stripeapi.Options{APIKeys: []string{"sk_live_abc", "sk_test_def"}}, nil)
	for key, want := range map[string]int{"sk_live_abc": 200, "sk_test_def": 200, "sk_test_other": 401, "sk_live_abd": 401} {
		if res, _ := k.do("GET", "/v1/billing/meters", "", "Authorization", "Bearer "+key); res.StatusCode != want {
			t.Errorf("configured keys, %s: status %d, want %d", key, res.StatusCode, want)
		}
	}
	_, m := k.do("POST", "/v1/billing/meters", "display_name=a&event_name=b&default_aggregation[formula]=sum",
		"Authorization", basic("sk_live_abc:"))
	if m["livemode"] != true {
		t.Errorf("live key: livemode %v", m["livemode"])
	}

	// Authentication comes before routing.
	if res, _ := e.do("GET", "/nowhere", "", "Authorization", ""); res.StatusCode != 401 {
		t.Errorf("unknown route without key: %d", res.StatusCode)
	}
}

func TestNewHandlerOptions(t *testing.T) {
	e := newEnv(t, nil, nil)
	if _, err := stripeapi.NewHandler(nil, nil); err == nil {
		t.Error("nil DB accepted")
	}
	for _, o := range []stripeapi.Options{
		{APIKeys: []string{""}}, {APIKeys: []string{"sk test"}}, {MaxBodyBytes: -1}, {RateLimit: -1},
	} {
		if _, err := stripeapi.NewHandler(e.db, &o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}

func TestUnknownRoutes(t *testing.T) {
	e := newEnv(t, nil, nil)
	for _, tc := range []struct{ method, path string }{
		{"GET", "/"},
		{"GET", "/v1/nope"},
		{"DELETE", "/v1/billing/meters"},
		{"PUT", "/v1/billing/meters/mtr_1"},
		{"GET", "/v1/billing/meters/"},
		{"GET", "/v1/billing/meters//event_summaries"},
		{"GET", "/v1/billing/meter_events"},
		{"POST", "/v1/billing/meters/mtr_1/archive"},
		{"GET", "/v1/billing/meters/mtr_1/event_summaries/extra"},
	} {
		res, body := e.do(tc.method, tc.path, "")
		want := fmt.Sprintf("Unrecognized request URL (%s: %s).", tc.method, tc.path)
		if res.StatusCode != 404 || errField(body, "message") != want || errField(body, "type") != "invalid_request_error" ||
			res.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %v", tc.method, tc.path, res.StatusCode, body)
		}
	}
	// An escaped id is one segment.
	res, body := e.do("GET", "/v1/billing/meters/a%2Fb", "")
	if res.StatusCode != 404 || errField(body, "code") != "resource_missing" || errField(body, "message") != "No such billing.meter: 'a/b'" {
		t.Errorf("escaped id: %d %v", res.StatusCode, body)
	}
}

func TestRequestIDs(t *testing.T) {
	e := newEnv(t, nil, nil)
	seen := map[string]bool{}
	for _, auth := range []string{"Bearer " + testKey, "", "Bearer sk_live_x"} {
		for range 3 {
			res, _ := e.do("GET", "/v1/billing/meters", "", "Authorization", auth)
			id := res.Header.Get("Request-Id")
			if !strings.HasPrefix(id, "req_") || seen[id] {
				t.Fatalf("request id %q", id)
			}
			seen[id] = true
		}
	}
}

// TestFormEncodings sends what curl users and other SDKs send.
func TestFormEncodings(t *testing.T) {
	e := newEnv(t, nil, nil)
	res, m := e.do("POST", "/v1/billing/meters",
		"display_name=API+calls&event_name=api.call&default_aggregation%5Bformula%5D=sum&expand[]=customer_mapping&expand[]=value_settings")
	if res.StatusCode != 200 || m["display_name"] != "API calls" || m["event_name"] != "api.call" {
		t.Fatalf("create: %d %v", res.StatusCode, m)
	}
	id := m["id"].(string)
	for _, q := range []string{"expand[0]=a&expand[1]=b", "expand=a&expand=b", "expand=a", "expand[]=a", "expand=", ""} {
		if res, body := e.do("GET", "/v1/billing/meters/"+id+"?"+q, ""); res.StatusCode != 200 || body["id"] != id {
			t.Errorf("retrieve with %q: %d %v", q, res.StatusCode, body)
		}
	}
	// Parameters in the query string of a POST count too.
	res, ev := e.do("POST", "/v1/billing/meter_events?event_name=api.call",
		"payload[stripe_customer_id]=cus_1&payload[value]=7&payload[region]=eu&identifier=&timestamp="+fmt.Sprint(t0.Unix()-60))
	if res.StatusCode != 200 || ev["timestamp"] != float64(t0.Unix()-60) {
		t.Fatalf("event: %d %v", res.StatusCode, ev)
	}
	if p := ev["payload"].(map[string]any); len(p) != 3 || p["region"] != "eu" {
		t.Errorf("payload %v", p)
	}
	// Summaries: query string, exact integer values.
	q := url.Values{"customer": {"cus_1"}, "start_time": {fmt.Sprint(t0.Truncate(time.Hour).Unix())},
		"end_time": {fmt.Sprint(t0.Truncate(time.Hour).Add(time.Hour).Unix())}}
	res, l := e.do("GET", "/v1/billing/meters/"+id+"/event_summaries?"+q.Encode(), "")
	if res.StatusCode != 200 || l["object"] != "list" || l["url"] != "/v1/billing/meters/"+id+"/event_summaries" || l["has_more"] != false {
		t.Fatalf("summaries: %d %v", res.StatusCode, l)
	}
	if d := l["data"].([]any); len(d) != 1 || d[0].(map[string]any)["aggregated_value"] != 7.0 {
		t.Errorf("summaries data %v", d)
	}
	// Empty lists are [] , not null.
	res, l = e.do("GET", "/v1/billing/meters?status=inactive", "")
	if d, ok := l["data"].([]any); res.StatusCode != 200 || !ok || len(d) != 0 {
		t.Errorf("empty list: %v", l)
	}
}

func TestMalformedRequests(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.do("POST", "/v1/billing/meters", "display_name=a&event_name=calls&default_aggregation[formula]=sum")
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		code, param              string
	}{
		{"bad escape", "POST", "/v1/billing/meter_events", "event_name=%zz", nil, 400, "", ""},
		{"bad escape in query", "GET", "/v1/billing/meters?limit=%", "", nil, 400, "", ""},
		{"json body", "POST", "/v1/billing/meters", `{"display_name":"a"}`, []string{"Content-Type", "application/json"}, 400, "", ""},
		{"value and hash", "POST", "/v1/billing/meter_events", "payload=x&payload[a]=b", nil, 400, "parameter_invalid", "payload"},
		{"hash and value", "POST", "/v1/billing/meter_events", "payload[a][b]=x&payload[a]=b", nil, 400, "parameter_invalid", "payload[a]"},
		{"malformed key", "POST", "/v1/billing/meter_events", "event_name]=x", nil, 400, "parameter_unknown", "event_name]"},
		{"unclosed bracket", "POST", "/v1/billing/meter_events", "payload[a=x", nil, 400, "parameter_unknown", "payload[a"},
		{"nested list", "POST", "/v1/billing/meter_events", "payload[][a]=x", nil, 400, "parameter_unknown", "payload[][a]"},
		{"too deep", "POST", "/v1/billing/meter_events", "a[b][c][d][e][f]=x", nil, 400, "parameter_unknown", "a[b][c][d][e][f]"},
		{"hash for string", "POST", "/v1/billing/meter_events", "event_name[x]=calls&payload[a]=b", nil, 400, "parameter_invalid", "event_name"},
		{"repeated string", "POST", "/v1/billing/meter_events", "event_name=a&event_name=b&payload[a]=b", nil, 400, "parameter_invalid", "event_name"},
		{"nested payload", "POST", "/v1/billing/meter_events", "event_name=calls&payload[a][b]=c", nil, 400, "parameter_invalid", "payload[a]"},
		{"string payload", "POST", "/v1/billing/meter_events", "event_name=calls&payload=x", nil, 400, "parameter_invalid", "payload"},
		{"empty payload", "POST", "/v1/billing/meter_events", "event_name=calls&payload=", nil, 400, "parameter_invalid_empty", "payload"},
		{"empty required", "POST", "/v1/billing/meter_events", "event_name=&payload[a]=b", nil, 400, "parameter_invalid_empty", "event_name"},
		{"no body", "POST", "/v1/billing/meter_events", "", nil, 400, "parameter_missing", "event_name"},
		{"unknown before missing", "POST", "/v1/billing/meter_events", "zzz=1", nil, 400, "parameter_unknown", "zzz"},
		{"expand hash", "GET", "/v1/billing/meters?expand[x]=a", "", nil, 400, "parameter_invalid", "expand"},
		{"limit not integer", "GET", "/v1/billing/meters?limit=ten", "", nil, 400, "parameter_invalid_integer", "limit"},
		{"limit overflow", "GET", "/v1/billing/meters?limit=99999999999999999999", "", nil, 400, "parameter_invalid_integer", "limit"},
		{"limit zero", "GET", "/v1/billing/meters?limit=0", "", nil, 400, "parameter_invalid", "limit"},
		{"status", "GET", "/v1/billing/meters?status=archived", "", nil, 400, "parameter_invalid", "status"},
		{"summary time range", "GET", "/v1/billing/meters/mtr_x/event_summaries?customer=c&start_time=-60&end_time=60", "", nil,
			400, "parameter_invalid", "start_time"},
		{"customer mapping type", "POST", "/v1/billing/meters",
			"display_name=a&event_name=b&default_aggregation[formula]=sum&customer_mapping[event_payload_key]=k&customer_mapping[type]=by_name",
			nil, 400, "parameter_invalid", "customer_mapping[type]"},
		{"customer mapping key", "POST", "/v1/billing/meters",
			"display_name=a&event_name=b&default_aggregation[formula]=sum&customer_mapping[type]=by_id",
			nil, 400, "parameter_missing", "customer_mapping[event_payload_key]"},
		{"idempotency key on GET is ignored", "GET", "/v1/billing/meters", "", []string{"Idempotency-Key", strings.Repeat("k", 300)}, 200, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := e.do(tc.method, tc.path, tc.body, tc.hdr...)
			if res.StatusCode != tc.status || errField(body, "code") != tc.code || errField(body, "param") != tc.param {
				t.Fatalf("%d %v; want %d %q %q", res.StatusCode, body, tc.status, tc.code, tc.param)
			}
			if tc.status != 200 && (errField(body, "type") != "invalid_request_error" || errField(body, "message") == "") {
				t.Fatalf("error body %v", body)
			}
		})
	}
	if n := e.db.Stats().EventsAccepted; n != 0 {
		t.Errorf("%d events accepted", n)
	}
}

func TestLimits(t *testing.T) {
	e := newEnv(t, &stripeapi.Options{MaxBodyBytes: 4096, MaxParams: 60}, nil)
	e.do("POST", "/v1/billing/meters", "display_name=a&event_name=calls&default_aggregation[formula]=sum")
	payload := func(n int) string {
		var b strings.Builder
		b.WriteString("event_name=calls&payload[stripe_customer_id]=c&payload[value]=1")
		for i := range n {
			fmt.Fprintf(&b, "&payload[k%d]=v", i)
		}
		return b.String()
	}
	for _, tc := range []struct {
		name, path, body string
		hdr              []string
		status           int
		code, param      string
	}{
		{"body too large", "/v1/billing/meter_events", "event_name=" + strings.Repeat("x", 5000), nil, 413, "", ""},
		{"too many params", "/v1/billing/meter_events", payload(60), nil, 400, "", ""},
		{"too many payload keys", "/v1/billing/meter_events", payload(49), nil, 400, "parameter_invalid", "payload"},
		{"payload keys at the limit", "/v1/billing/meter_events", payload(48), nil, 200, "", ""},
		{"payload value", "/v1/billing/meter_events", "event_name=calls&payload[stripe_customer_id]=" + strings.Repeat("c", 101),
			nil, 400, "string_too_long", "payload[stripe_customer_id]"},
		{"payload key", "/v1/billing/meter_events", "event_name=calls&payload[" + strings.Repeat("k", 101) + "]=1",
			nil, 400, "string_too_long", "payload"},
		{"event name", "/v1/billing/meter_events", "event_name=" + strings.Repeat("e", 101) + "&payload[a]=b",
			nil, 400, "string_too_long", "event_name"},
		{"identifier", "/v1/billing/meter_events", "event_name=calls&payload[a]=b&identifier=" + strings.Repeat("i", 101),
			nil, 400, "string_too_long", "identifier"},
		{"display name", "/v1/billing/meters", "display_name=" + strings.Repeat("d", 251) + "&event_name=x&default_aggregation[formula]=sum",
			nil, 400, "string_too_long", "display_name"},
		{"form key", "/v1/billing/meters", strings.Repeat("k", 600) + "=1", nil, 400, "parameter_unknown", strings.Repeat("k", 100) + "…"},
		{"idempotency key", "/v1/billing/meters", "", []string{"Idempotency-Key", strings.Repeat("k", 256)}, 400, "", ""},
		{"idempotency key at the limit", "/v1/billing/meter_events", "event_name=calls&payload[stripe_customer_id]=c&payload[value]=1",
			[]string{"Idempotency-Key", strings.Repeat("k", 255)}, 200, "", ""},
		{"long id", "/v1/billing/meters/" + strings.Repeat("m", 6000), "", nil, 404, "resource_missing", "id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := e.do("POST", tc.path, tc.body, tc.hdr...)
			if res.StatusCode != tc.status || errField(body, "code") != tc.code || errField(body, "param") != tc.param {
				t.Fatalf("%d %v; want %d %q %q", res.StatusCode, body, tc.status, tc.code, tc.param)
			}
			if tc.status >= 400 && len(errField(body, "message")) > 300 {
				t.Errorf("message echoes too much: %d bytes", len(errField(body, "message")))
			}
		})
	}
}

// TestConcurrencyLimit holds one request in flight (its body never
// arrives) and checks that the next one is turned away with 429 once it
// has waited AdmissionWait, with Stripe-Should-Retry set.
func TestConcurrencyLimit(t *testing.T) {
	e := newEnv(t, &stripeapi.Options{MaxConcurrentRequests: 1, AdmissionWait: 50 * time.Millisecond}, nil)
	executing, release := holdExecution(e)
	held := make(chan int, 1)
	go func() { held <- postMeter(e, "held") }()
	<-executing // the POST has the only slot
	res, body := e.do("GET", "/v1/billing/meters", "")
	if res.StatusCode != 429 || errField(body, "code") != "rate_limit" || res.Header.Get("Stripe-Should-Retry") != "true" {
		t.Fatalf("while a request executes: %d %v, headers %v; want 429 rate_limit", res.StatusCode, body, res.Header)
	}
	close(release)
	if code := <-held; code != 200 {
		t.Fatalf("held request: %d", code)
	}
	if res, _ := e.do("GET", "/v1/billing/meters", ""); res.StatusCode != 200 {
		t.Fatalf("the slot was not released: %d", res.StatusCode)
	}
}

// holdExecution makes the first POST of e wait before it executes: the
// first channel is closed once it holds its slot and waits, and closing
// the second lets it go on.
func holdExecution(e *env) (executing, release chan struct{}) {
	executing, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	stripeapi.SetExecHook(e.h, func(r *http.Request) {
		if r.Method == "POST" {
			first := false
			once.Do(func() { first = true })
			if first {
				close(executing)
				<-release
			}
		}
	})
	return executing, release
}

// postMeter creates a meter for event name with a raw POST and returns the
// status.
func postMeter(e *env, name string) int {
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/billing/meters",
		strings.NewReader("display_name=a&event_name="+name+"&default_aggregation[formula]=sum"))
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

// TestAdmissionWait holds the only slot, sends a second request, and
// releases the slot: the second request waited for it and succeeds.
// A request whose body is still being read holds no slot.
func TestAdmissionWait(t *testing.T) {
	reading := make(chan struct{}) // closed when the slow request reads its body
	var once sync.Once
	e := newEnv(t, &stripeapi.Options{MaxConcurrentRequests: 1, AdmissionWait: time.Minute}, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == "POST" && r.Header.Get("X-Slow") != "" {
				r.Body = readHook{r.Body, func() { once.Do(func() { close(reading) }) }}
			}
			h.ServeHTTP(w, r)
		})
	})
	// A slow body: its request is reading, not holding the slot.
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const body = "display_name=a&event_name=slow&default_aggregation[formula]=sum"
	fmt.Fprintf(conn, "POST /v1/billing/meters HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nX-Slow: 1\r\n"+
		"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", testKey, len(body), body[:10])
	<-reading
	if res, _ := e.do("GET", "/v1/billing/meters", ""); res.StatusCode != 200 {
		t.Fatalf("GET while a body is read slowly: %d", res.StatusCode)
	}

	executing, release := holdExecution(e)
	held := make(chan int, 1)
	go func() { held <- postMeter(e, "held") }()
	<-executing
	done := make(chan int, 1)
	go func() {
		res, _ := e.do("GET", "/v1/billing/meters", "")
		done <- res.StatusCode
	}()
	time.Sleep(200 * time.Millisecond) // the GET arrives and waits
	select {
	case code := <-done:
		t.Fatalf("the second request was answered (%d) while the only slot was taken", code)
	default:
	}
	close(release)
	if code := <-held; code != 200 {
		t.Fatalf("held request: %d", code)
	}
	if code := <-done; code != 200 {
		t.Fatalf("waiting request: %d, want 200", code)
	}
	fmt.Fprint(conn, body[10:])
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("slow request: %v, %v", res, err)
	}
}

// readHook calls hook before each Read of the body.
type readHook struct {
	io.ReadCloser
	hook func()
}

func (r readHook) Read(p []byte) (int, error) {
	r.hook()
	return r.ReadCloser.Read(p)
}

func TestResponseHeaders(t *testing.T) {
	e := newEnv(t, nil, nil)
	res, _ := e.do("POST", "/v1/billing/meters", "display_name=a&event_name=b&default_aggregation[formula]=sum",
		"Idempotency-Key", "  abc  ", "Stripe-Version", "2026-07-29.dahlia")
	for k, want := range map[string]string{
		"Content-Type": "application/json", "Idempotency-Key": "abc", "Stripe-Version": "2026-07-29.dahlia",
		"Cache-Control": "no-cache, no-store",
	} {
		if got := res.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
}

// TestMountUnderPrefix serves the API under /stripe/ on a mux that has
// other routes. (stripe-go itself needs the API at the root of its base
// URL: it refuses responses whose path does not start with /v1 or /v2.)
func TestMountUnderPrefix(t *testing.T) {
	e := newEnv(t, nil, func(h http.Handler) http.Handler {
		mux := http.NewServeMux()
		mux.Handle("/stripe/", http.StripPrefix("/stripe", h))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
		return mux
	})
	res, m := e.do("POST", "/stripe/v1/billing/meters", "display_name=a&event_name=calls&default_aggregation[formula]=count")
	if res.StatusCode != 200 {
		t.Fatalf("create under prefix: %d %v", res.StatusCode, m)
	}
	res, l := e.do("GET", "/stripe/v1/billing/meters", "")
	if d, _ := l["data"].([]any); res.StatusCode != 200 || len(d) != 1 || d[0].(map[string]any)["id"] != m["id"] {
		t.Fatalf("list under prefix: %d %v", res.StatusCode, l)
	}
	if res, body := e.do("GET", "/stripe/v1/nope", ""); res.StatusCode != 404 || errField(body, "message") != "Unrecognized request URL (GET: /v1/nope)." {
		t.Fatalf("unknown route under prefix: %d %v", res.StatusCode, body)
	}
	res, err := http.Get(e.srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(res.Body).ReadString('\n')
	res.Body.Close()
	if line != "ok\n" {
		t.Errorf("healthz: %q", line)
	}
}

func TestGeneratedIdentifiers(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.do("POST", "/v1/billing/meters", "display_name=a&event_name=calls&default_aggregation[formula]=sum")
	body := "event_name=calls&payload[stripe_customer_id]=c&payload[value]=1"
	_, plain := e.do("POST", "/v1/billing/meter_events", body)
	if id, _ := plain["identifier"].(string); !strings.HasPrefix(id, "mev_") || len(id) < 10 {
		t.Errorf("generated identifier %q", id)
	}
	res, keyed := e.do("POST", "/v1/billing/meter_events", body, "Idempotency-Key", "retry-me")
	id, _ := keyed["identifier"].(string)
	if res.StatusCode != 200 || len(id) != len("mev_")+24 {
		t.Fatalf("identifier from the idempotency key: %d %v", res.StatusCode, keyed)
	}
	// The idempotency record is lost (say, a crash before it was
	// stored): the retry meets the dedupe index instead of counting twice.
	ns, key := stripeapi.IdempotencyRecord(testKey, "retry-me")
	if err := e.db.DeleteKV(t.Context(), ns, key); err != nil {
		t.Fatal(err)
	}
	res, again := e.do("POST", "/v1/billing/meter_events", body, "Idempotency-Key", "retry-me")
	if res.StatusCode != 400 || errField(again, "code") != "duplicate_meter_event" {
		t.Fatalf("retry without record: %d %v", res.StatusCode, again)
	}
	if n := e.db.Stats().EventsAccepted; n != 2 {
		t.Fatalf("%d events accepted, want 2", n)
	}
}

func TestClosedDB(t *testing.T) {
	e := newEnv(t, nil, nil)
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/v1/billing/meters", ""},
		{"POST", "/v1/billing/meter_events", "event_name=a&payload[a]=b"},
	} {
		res, body := e.do(tc.method, tc.path, tc.body, "Idempotency-Key", "k")
		if res.StatusCode != 503 || errField(body, "type") != "api_error" {
			t.Errorf("%s %s on a closed DB: %d %v", tc.method, tc.path, res.StatusCode, body)
		}
	}
}

func TestLiveSummaryIDs(t *testing.T) {
	e := newEnv(t, &stripeapi.Options{APIKeys: []string{"sk_live_k"}}, nil)
	auth := []string{"Authorization", "Bearer sk_live_k"}
	_, m := e.do("POST", "/v1/billing/meters", "display_name=a&event_name=calls&default_aggregation[formula]=count", auth...)
	q := fmt.Sprintf("customer=c&start_time=%d&end_time=%d", t0.Truncate(time.Hour).Unix(), t0.Truncate(time.Hour).Add(time.Hour).Unix())
	_, l := e.do("GET", "/v1/billing/meters/"+m["id"].(string)+"/event_summaries?"+q, "", auth...)
	s := l["data"].([]any)[0].(map[string]any)
	if id := s["id"].(string); !strings.HasPrefix(id, "mtrusg_") || strings.HasPrefix(id, "mtrusg_test_") || s["livemode"] != true {
		t.Errorf("live summary %v", s)
	}
}

// The v1 decoder reuses its body buffer and parameter tree from one request
// to the next: what one request recorded (customer, identifier, payload)
// keeps its own bytes after later requests decode into the same buffer.
func TestFormReuseKeepsStrings(t *testing.T) {
	e := newEnv(t, nil, nil)
	res, m := e.do("POST", "/v1/billing/meters", "display_name=a&event_name=api.call&default_aggregation[formula]=sum")
	if res.StatusCode != 200 {
		t.Fatalf("create: %d %v", res.StatusCode, m)
	}
	id := m["id"].(string)
	const n = 40
	for i := range n {
		body := fmt.Sprintf("event_name=api.call&identifier=id-%03d&payload%%5Bstripe_customer_id%%5D=cus_%03d&payload%%5Bvalue%%5D=%d&timestamp=%d",
			i, i, i+1, t0.Unix()-60)
		res, ev := e.do("POST", "/v1/billing/meter_events", body)
		if res.StatusCode != 200 || ev["identifier"] != fmt.Sprintf("id-%03d", i) ||
			ev["payload"].(map[string]any)["stripe_customer_id"] != fmt.Sprintf("cus_%03d", i) {
			t.Fatalf("event %d: %d %v", i, res.StatusCode, ev)
		}
	}
	start := t0.Truncate(time.Hour).Unix()
	for i := range n {
		q := url.Values{"customer": {fmt.Sprintf("cus_%03d", i)}, "start_time": {fmt.Sprint(start)}, "end_time": {fmt.Sprint(start + 3600)}}
		res, l := e.do("GET", "/v1/billing/meters/"+id+"/event_summaries?"+q.Encode(), "")
		d, _ := l["data"].([]any)
		if res.StatusCode != 200 || len(d) != 1 || d[0].(map[string]any)["aggregated_value"] != float64(i+1) {
			t.Fatalf("customer cus_%03d: %d %v", i, res.StatusCode, l)
		}
	}
	// Each identifier is still taken, by its own event.
	for i := range n {
		body := fmt.Sprintf("event_name=api.call&identifier=id-%03d&payload%%5Bstripe_customer_id%%5D=cus_%03d&payload%%5Bvalue%%5D=1", i, i)
		if res, ev := e.do("POST", "/v1/billing/meter_events", body); res.StatusCode != 400 {
			t.Fatalf("repeat of id-%03d: %d %v", i, res.StatusCode, ev)
		}
	}
}
