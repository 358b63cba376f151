package stripeapi_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/meterdb/meterdb/stripeapi"
)

// TestStalledBodiesHoldNoSlot opens 300 connections that send the headers
// of a POST and one byte of its body, then stall: they must not hold the
// request slots (here 4), so other requests, GETs and POSTs, are served at
// once rather than turned away with 429.
func TestStalledBodiesHoldNoSlot(t *testing.T) {
	e := newEnv(t, &stripeapi.Options{MaxConcurrentRequests: 4, AdmissionWait: 100 * time.Millisecond}, nil)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range 300 {
		c, err := net.Dial("tcp", e.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		path := "/v1/billing/meter_events"
		if i%2 == 1 {
			path = "/v2/billing/meter_events"
		}
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ne", path, testKey)
	}
	time.Sleep(300 * time.Millisecond) // every stalled request reached the handler
	start := time.Now()
	for i := range 10 {
		if res, body := e.do("GET", "/v1/billing/meters", ""); res.StatusCode != 200 {
			t.Fatalf("GET %d during the stall: %d %v", i, res.StatusCode, body)
		}
		if res, body := e.do("POST", "/v1/billing/meters",
			fmt.Sprintf("display_name=m&event_name=m%d&default_aggregation[formula]=sum", i)); res.StatusCode != 200 {
			t.Fatalf("POST %d during the stall: %d %v", i, res.StatusCode, body)
		}
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("20 requests took %v during the stall", took)
	}
}

// TestBodyMemoryBudget: bodies are read before admission, so their bytes
// are bounded by Options.MaxBodyMemory instead: two clients that sent
// 100 KB and stall leave room for small requests, a third that would pass
// the 256 KB budget gets 429 with Stripe-Should-Retry, and once the
// stalled clients go their bytes are available again.
func TestBodyMemoryBudget(t *testing.T) {
	e := newEnv(t, &stripeapi.Options{MaxBodyMemory: 256 << 10}, nil)
	open := func(sent int) net.Conn {
		c, err := net.Dial("tcp", e.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST /v1/billing/meters HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", testKey, 200<<10,
			"expand[]="+strings.Repeat("a", sent-len("expand[]=")))
		return c
	}
	stalled := []net.Conn{open(100 << 10), open(100 << 10)}
	time.Sleep(300 * time.Millisecond) // both bodies are being read
	big := func(name string) string {
		body := "display_name=m&event_name=" + name + "&default_aggregation[formula]=sum"
		for range 30 {
			body += "&expand[]=" + strings.Repeat("x", 4000) // 120 KB in all
		}
		return body
	}
	if res, body := e.do("POST", "/v1/billing/meters", "display_name=m&event_name=small&default_aggregation[formula]=sum"); res.StatusCode != 200 {
		t.Fatalf("small POST beside 200 KB of stalled bodies: %d %v", res.StatusCode, body)
	}
	res, body := e.do("POST", "/v1/billing/meters", big("over"))
	if res.StatusCode != 429 || errField(body, "code") != "rate_limit" || res.Header.Get("Stripe-Should-Retry") != "true" {
		t.Fatalf("120 KB POST beside 200 KB of stalled bodies: %d %v, want 429 rate_limit", res.StatusCode, body)
	}
	for _, c := range stalled {
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, body := e.do("POST", "/v1/billing/meters", big("after"))
		if res.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stalled bodies' bytes were not given back: %d %v", res.StatusCode, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
