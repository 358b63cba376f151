package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestRunDashboard serves the dashboard beside the API: behind the API
// keys, with a login redirect for browsers; -dashboard=false leaves the
// path to the API.
func TestRunDashboard(t *testing.T) {
	start := func(args ...string) (addr string, stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		lw := &lineWriter{lines: make(chan string, 100)}
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, append([]string{"-addr", "127.0.0.1:0", "-db", ""}, args...), func(string) string { return "" }, lw)
		}()
		addr = waitListening(t, lw.lines, done)
		return addr, func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(url, auth string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	addr, stop := start("-api-key", "sk_test_dash")
	if _, err := client(addr, "sk_test_dash").V1BillingMeters.Create(context.Background(), meterParams("calls")); err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr
	if resp, _ := get(base+"/dashboard", ""); resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/dashboard/" {
		t.Errorf("/dashboard: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := get(base+"/dashboard/", ""); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "./login?next=%2F" {
		t.Errorf("/dashboard/ without a key: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, body := get(base+"/dashboard/", "Bearer sk_test_dash"); resp.StatusCode != 200 || !strings.Contains(body, "<code>calls</code>") {
		t.Errorf("/dashboard/ with the key: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := get(base+"/dashboard/", "Bearer sk_test_other"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/dashboard/ with another key: %d", resp.StatusCode)
	}
	if resp, body := get(base+"/v1/billing/meters", "Bearer sk_test_dash"); resp.StatusCode != 200 || !strings.Contains(body, `"calls"`) {
		t.Errorf("the API beside the dashboard: %d", resp.StatusCode)
	}
	stop()

	addr, stop = start("-dashboard=false")
	if resp, body := get("http://"+addr+"/dashboard/", "Bearer sk_test_x"); resp.StatusCode != 404 || !strings.Contains(body, `"error"`) {
		t.Errorf("-dashboard=false: %d %s", resp.StatusCode, body)
	}
	stop()
}
