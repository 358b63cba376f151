package stripeapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/meterdb/meterdb"
)

// TestRouteTable checks that every row of the route table is matched by
// its own method and path, with its path values, and that what
// http.ServeMux alone would serve differently (a HEAD for a GET route, a
// path it would clean and redirect) matches nothing.
func TestRouteTable(t *testing.T) {
	db, err := meterdb.Open("", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	hh, err := NewHandler(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := hh.(*handler)
	match := func(method, target string) *call {
		c := &call{h: h, r: httptest.NewRequest(method, target, nil)}
		h.router.match(c)
		return c
	}
	for _, rt := range h.routeTable() {
		method, p, _ := strings.Cut(rt.pattern, " ")
		c := match(method, strings.ReplaceAll(p, "{id}", "x%2Fy"))
		if c.rt == nil || c.rt.pattern != rt.pattern {
			t.Errorf("%s: matched %+v", rt.pattern, c.rt)
			continue
		}
		if strings.Contains(p, "{id}") && c.r.PathValue("id") != "x/y" {
			t.Errorf("%s: id %q", rt.pattern, c.r.PathValue("id"))
		}
		if c.rt.api != apiFor(p) || c.rt.method != method {
			t.Errorf("%s: api %s, method %s", rt.pattern, c.rt.api.name, c.rt.method)
		}
	}
	for _, tc := range []struct{ method, target string }{
		{"HEAD", "/v1/billing/meters"},
		{"GET", "/v1/billing/../billing/meters"},
		{"GET", "/v1/billing/meters/./x"},
		{"GET", "//v1/billing/meters"},
		{"OPTIONS", "*"},
		{"CONNECT", "/v1/billing/meters"},
	} {
		if c := match(tc.method, tc.target); c.rt != nil {
			t.Errorf("%s %s matched %s", tc.method, tc.target, c.rt.pattern)
		}
	}
	// The whole pipeline answers them in Stripe's shape.
	for _, target := range []string{"/v1/billing/../billing/meters", "/v2/core/../core/events"} {
		req := httptest.NewRequest("GET", target, nil)
		req.Header.Set("Authorization", "Bearer sk_test_x")
		rec := httptest.NewRecorder()
		hh.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "Unrecognized request URL") {
			t.Errorf("%s: %d %s", target, rec.Code, rec.Body)
		}
	}
}
