package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRequestsNetHTTPRejects sends requests that net/http rejects before
// any handler runs (a bad percent escape in the path, headers over the
// server's limit, a missing Host header): the answers keep net/http's
// status and carry a Stripe JSON error body.
func TestRequestsNetHTTPRejects(t *testing.T) {
	addr := startRun(t, "-addr", "127.0.0.1:0", "-db", "")
	for _, tc := range []struct {
		name, request string
		status        int
	}{
		{"bad escape", "GET /v1/billing/%ZZ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk_test_x\r\n\r\n", 400},
		{"bad escape v2", "GET /v2/core/events/%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"no host", "GET /v1/billing/meters HTTP/1.1\r\nAuthorization: Bearer sk_test_x\r\n\r\n", 400},
		{"huge headers", "GET /v1/billing/meters HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 100<<10) + "\r\n\r\n", 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			go io.WriteString(c, tc.request) // the server may answer before reading it all
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			var eb struct {
				Error struct{ Type, Message string }
			}
			if res.StatusCode != tc.status || res.Header.Get("Content-Type") != "application/json" ||
				json.Unmarshal(body, &eb) != nil || eb.Error.Type != "invalid_request_error" || eb.Error.Message == "" {
				t.Errorf("got %d %q %s; want %d with a Stripe JSON error", res.StatusCode, res.Header.Get("Content-Type"), body, tc.status)
			}
		})
	}
	// The connection still serves well-formed requests before a bad one.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /v1/billing/meters HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk_test_x\r\n\r\n"+
		"GET /v1/billing/%%ZZ HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	for _, want := range []int{200, 400} {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != want || !json.Valid(body) {
			t.Errorf("pipelined: %d %s, want %d with JSON", res.StatusCode, body, want)
		}
	}
}

// TestStripeErrorLeavesOtherWrites: only net/http's own error responses
// are rewritten, never a handler's response or a piece of one.
func TestStripeErrorLeavesOtherWrites(t *testing.T) {
	for _, p := range []string{
		"HTTP/1.1 400 Bad Request\r\nCache-Control: no-cache, no-store\r\nContent-Type: application/json\r\nDate: Mon, 07 Dec 2026 01:00:00 GMT\r\n\r\n{}",
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n",
		`{"error":{"type":"invalid_request_error"}}`,
		"HTTP/1.1 400 Bad Request" + netHTTPErrorHeaders + strings.Repeat("x", 600),
		"",
	} {
		if _, ok := stripeError([]byte(p)); ok {
			t.Errorf("rewrote %.80q", p)
		}
	}
	if _, ok := stripeError([]byte("HTTP/1.1 400 Bad Request" + netHTTPErrorHeaders + "400 Bad Request")); !ok {
		t.Error("net/http's 400 not rewritten")
	}
}
