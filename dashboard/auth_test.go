package dashboard_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/dashboard"
	"github.com/meterdb/meterdb/event"
)

// get sends a GET with optional header pairs and returns the response and
// its body.
func get(t *testing.T, c *http.Client, u string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return do(t, c, req)
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(t, c, req)
}

func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfOf returns the CSRF token of the page's form.
func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", body)
	}
	return m[1]
}

func sessionCookie(c *http.Client, u string) *http.Cookie {
	pu, _ := url.Parse(u)
	for _, ck := range c.Jar.Cookies(pu) {
		if ck.Name == "meterdb_session" {
			return ck
		}
	}
	return nil
}

// TestLogin walks the login flow with a key configured: redirects to the
// login form, CSRF checks on login and logout, the session cookie, key
// headers for scripts, expiry and revocation.
func TestLogin(t *testing.T) {
	e := newEnv(t, testKey)
	c := httpClient(t)
	d := e.dashURL()
	m := e.meters["api_calls"]

	// Without credentials: a redirect to the login form, relative to the
	// page, that comes back to the page.
	for path, loc := range map[string]string{
		"":                  "./login?next=%2F",
		"meters/" + m.ID:    "../login?next=%2Fmeters%2F" + m.ID,
		"customers/cus_a?x": "../login?next=%2Fcustomers%2Fcus_a%3Fx",
	} {
		resp, _ := get(t, c, d+path)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != loc {
			t.Errorf("GET %s: %d Location %q, want 303 %q", path, resp.StatusCode, resp.Header.Get("Location"), loc)
		}
	}
	// Scripts: a good key in the header opens the pages, a bad one gets 401.
	for _, hdr := range []string{"Bearer " + testKey, "Basic " + basic(testKey)} {
		if resp, body := get(t, c, d+"meters/"+m.ID, "Authorization", hdr); resp.StatusCode != 200 || !strings.Contains(body, "API calls") {
			t.Errorf("GET with %s: %d", hdr, resp.StatusCode)
		}
	}
	if resp, _ := get(t, c, d, "Authorization", "Bearer sk_test_wrong"); resp.StatusCode != 401 ||
		!strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("GET with a wrong key: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}

	// The login form.
	resp, body := get(t, c, d+"login?next=%2Fmeters%2F"+m.ID)
	if resp.StatusCode != 200 {
		t.Fatalf("login form: %d", resp.StatusCode)
	}
	token := csrfOf(t, body)
	next := "/meters/" + m.ID
	// Without its CSRF token, or with another, the form is refused even
	// with the right key.
	for _, bad := range []string{"", token + "x", strings.Repeat("A", len(token))} {
		resp, _ = post(t, c, d+"login", url.Values{"key": {testKey}, "csrf": {bad}, "next": {next}})
		if resp.StatusCode != http.StatusForbidden || sessionCookie(c, d) != nil {
			t.Errorf("login with CSRF token %q: %d, session %v", bad, resp.StatusCode, sessionCookie(c, d))
		}
	}
	// A token without the login cookie it is tied to is refused too.
	other := httpClient(t)
	if resp, _ = post(t, other, d+"login", url.Values{"key": {testKey}, "csrf": {token}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("login with a token of another browser: %d", resp.StatusCode)
	}
	// A wrong key.
	resp, body = post(t, c, d+"login", url.Values{"key": {"sk_test_wrong"}, "csrf": {token}, "next": {next}})
	if resp.StatusCode != http.StatusUnauthorized || sessionCookie(c, d) != nil || !strings.Contains(body, "not one of the server") {
		t.Errorf("login with a wrong key: %d", resp.StatusCode)
	}
	// The right key: a session cookie and back to the page.
	token = csrfOf(t, body)
	resp, _ = post(t, c, d+"login", url.Values{"key": {testKey}, "csrf": {token}, "next": {next}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "./meters/"+m.ID {
		t.Fatalf("login: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var set *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "meterdb_session" {
			set = ck
		}
	}
	if set == nil || !set.HttpOnly || set.SameSite != http.SameSiteStrictMode || set.Secure || set.Path != "/dashboard/" ||
		strings.Contains(set.Value, testKey) || set.MaxAge != int((12*time.Hour).Seconds()) {
		t.Fatalf("session cookie %+v", set)
	}
	resp, body = get(t, c, d+"meters/"+m.ID)
	if resp.StatusCode != 200 || !strings.Contains(body, "Log out") {
		t.Fatalf("page after login: %d", resp.StatusCode)
	}
	// A tampered cookie is no session.
	tampered := httpClient(t)
	du, _ := url.Parse(d)
	tampered.Jar.SetCookies(du, []*http.Cookie{{Name: "meterdb_session", Value: set.Value[:len(set.Value)-2] + "AA", Path: "/dashboard/"}})
	if resp, _ := get(t, tampered, d); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("tampered session cookie: %d", resp.StatusCode)
	}
	// Logout needs the form's CSRF token.
	logout := csrfOf(t, body)
	if resp, _ = post(t, c, d+"logout", url.Values{}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("logout without CSRF token: %d", resp.StatusCode)
	}
	if resp, _ = get(t, c, d); resp.StatusCode != 200 {
		t.Errorf("the session ended on a refused logout: %d", resp.StatusCode)
	}
	if resp, _ = post(t, c, d+"logout", url.Values{"csrf": {logout}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("logout: %d", resp.StatusCode)
	}
	// The token is revoked, also for a client that kept the cookie.
	tampered.Jar.SetCookies(du, []*http.Cookie{{Name: "meterdb_session", Value: set.Value, Path: "/dashboard/"}})
	for _, cl := range []*http.Client{c, tampered} {
		if resp, _ = get(t, cl, d); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("after logout: %d", resp.StatusCode)
		}
	}

	// A session expires after SessionTTL.
	resp, body = get(t, c, d+"login")
	resp, _ = post(t, c, d+"login", url.Values{"key": {testKey}, "csrf": {csrfOf(t, body)}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("second login: %d", resp.StatusCode)
	}
	if resp, _ = get(t, c, d); resp.StatusCode != 200 {
		t.Fatalf("after the second login: %d", resp.StatusCode)
	}
	e.clk.Advance(12*time.Hour + time.Second)
	if resp, _ = get(t, c, d); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after the session's expiry: %d", resp.StatusCode)
	}
	// next never leads off the dashboard.
	resp, body = get(t, c, d+"login?next=//evil.example/x")
	if !strings.Contains(body, `name="next" value="/"`) {
		t.Errorf("login form keeps an outside next")
	}
}

func basic(key string) string { return base64.StdEncoding.EncodeToString([]byte(key + ":")) }

// TestInputLimits checks the handling of untrusted input: form sizes and
// fields, query parameters, path values.
func TestInputLimits(t *testing.T) {
	e := newEnv(t, testKey)
	c := httpClient(t)
	d := e.dashURL()
	m := e.meters["api_calls"]
	auth := []string{"Authorization", "Bearer " + testKey}
	for path, want := range map[string]int{
		"meters/" + m.ID + "?top=5":                             200,
		"meters/" + m.ID + "?top=100":                           200,
		"meters/" + m.ID + "?top=0":                             400,
		"meters/" + m.ID + "?top=101":                           400,
		"meters/" + m.ID + "?top=x":                             400,
		"meters/" + m.ID + "?after=cus_beta":                    200,
		"meters/" + m.ID + "?after=" + strings.Repeat("x", 300): 400,
		"meters/mtr_nope":                                       404,
		"meters/" + strings.Repeat("m", 100):                    404,
		"customers/" + strings.Repeat("c", 300):                 404,
		"customers/nobody":                                      200,
		"nope":                                                  404,
		"assets/style.css":                                      200,
		"assets/nope.css":                                       404,
	} {
		if resp, _ := get(t, c, d+path, auth...); resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	// The customers page continues after the cursor.
	if _, body := get(t, c, d+"meters/"+m.ID+"?after=cus_beta", auth...); strings.Contains(body, `data-customer="cus_alpha"`) &&
		strings.Count(body, `data-customer="cus_alpha"`) > 1 || !strings.Contains(body, `data-customer="cus_gamma"`) {
		t.Errorf("the page after cus_beta lists the wrong customers")
	}
	// Forms: size, fields, content type.
	_, body := get(t, c, d+"login")
	token := csrfOf(t, body)
	if resp, _ := post(t, c, d+"login", url.Values{"csrf": {token}, "key": {strings.Repeat("k", 5000)}}); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized form: %d", resp.StatusCode)
	}
	many := url.Values{"csrf": {token}, "key": {testKey}}
	for i := range 10 {
		many.Set(fmt.Sprint("f", i), "x")
	}
	if resp, _ := post(t, c, d+"login", many); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("form with many fields: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("POST", d+"login", strings.NewReader(`{"key":"x"}`))
	req.Header.Set("Content-Type", "application/json")
	if resp, _ := do(t, c, req); resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("JSON login: %d", resp.StatusCode)
	}
	if resp, _ := post(t, c, d+"login", url.Values{"csrf": {token}, "key": {strings.Repeat("k", 300)}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("overlong key: %d", resp.StatusCode)
	}
}

// TestSecureCookie: a request that came over TLS gets a Secure cookie.
func TestSecureCookie(t *testing.T) {
	db, err := meterdb.Open("", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h, err := dashboard.NewHandler(db, &dashboard.Options{APIKeys: []string{testKey}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tlsOn := range []bool{false, true} {
		req := httptest.NewRequest("GET", "/login", nil)
		if tlsOn {
			req.TLS = &tls.ConnectionState{}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		cookies := rec.Result().Cookies()
		if len(cookies) != 1 || cookies[0].Secure != tlsOn || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
			t.Errorf("TLS %v: cookies %+v", tlsOn, cookies)
		}
	}
}

// TestOpen: without keys every page is open and the login form leads
// back to the overview.
func TestOpen(t *testing.T) {
	e := newEnv(t)
	c := httpClient(t)
	if resp, body := get(t, c, e.dashURL()); resp.StatusCode != 200 || strings.Contains(body, "Log out") {
		t.Errorf("overview: %d", resp.StatusCode)
	}
	if resp, _ := get(t, c, e.dashURL()+"login?next=%2Fmeters%2Fx"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "./meters/x" {
		t.Errorf("login without keys: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Security headers on every page.
	resp, _ := get(t, c, e.dashURL())
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") ||
		resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", resp.Header)
	}
}

var rateRE = regexp.MustCompile(`data-rate="([^"]*)"`)

// TestIngestRate: the overview's rate is the accepted events between two
// loads divided by the time between them.
func TestIngestRate(t *testing.T) {
	e := newEnv(t)
	c := httpClient(t)
	rate := func() string {
		t.Helper()
		_, body := get(t, c, e.dashURL())
		m := rateRE.FindStringSubmatch(body)
		if m == nil {
			t.Fatal("no rate on the overview")
		}
		return m[1]
	}
	if r := rate(); r != "" {
		t.Errorf("rate on the first load: %q, want none", r)
	}
	record := func(n int) {
		evs := make([]event.Event, n)
		for i := range evs {
			evs[i] = event.Event{Name: "logins", Payload: map[string]string{"stripe_customer_id": "cus_rate"}}
		}
		if _, err := e.db.RecordBatch(context.Background(), evs); err != nil {
			t.Fatal(err)
		}
	}
	record(50)
	e.clk.Advance(10 * time.Second)
	if r := rate(); r != "5.0" {
		t.Errorf("rate after 50 events in 10 s: %q, want 5.0", r)
	}
	// Within a minute, the rate keeps spanning from the first sample.
	record(100)
	e.clk.Advance(20 * time.Second)
	if r := rate(); r != "5.0" {
		t.Errorf("rate after 150 events in 30 s: %q, want 5.0", r)
	}
	// Later it spans from the oldest sample of the last minute: samples
	// were taken at 0, 10 and 30 s; at 75 s the one at 30 s is that one.
	record(60)
	e.clk.Advance(45 * time.Second)
	if r := rate(); r != fmt.Sprintf("%.1f", 60.0/45) {
		t.Errorf("rate over the last minute: %q, want %.1f", r, 60.0/45)
	}
}
