package stripeapi_test

import (
	"fmt"
	"net"
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
