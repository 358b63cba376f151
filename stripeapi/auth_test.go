package stripeapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/meterdb/meterdb/stripeapi"
)

// TestRequireAPIKey checks that an extension endpoint behind
// RequireAPIKey sees only requests with an accepted key, and that the
// others get the Stripe 401.
func TestRequireAPIKey(t *testing.T) {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "inner") })
	h, err := stripeapi.RequireAPIKey(inner, &stripeapi.Options{APIKeys: []string{"sk_test_good"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, tc := range []struct {
		auth   string
		status int
	}{{"", 401}, {"Bearer sk_test_other", 401}, {"Bearer sk_test_good", 200}} {
		req, _ := http.NewRequest("GET", srv.URL+"/x", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.status {
			t.Fatalf("%q: status %d, want %d: %s", tc.auth, res.StatusCode, tc.status, body)
		}
		if tc.status == 200 {
			if string(body) != "inner" {
				t.Fatalf("%q: body %q", tc.auth, body)
			}
			continue
		}
		var e struct {
			Error struct{ Type, Message string }
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Error.Type != "invalid_request_error" || e.Error.Message == "" ||
			res.Header.Get("Request-Id") == "" || res.Header.Get("WWW-Authenticate") == "" {
			t.Fatalf("%q: 401 body %s, headers %v (%v)", tc.auth, body, res.Header, err)
		}
	}
}
