package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v85"
)

// startRun runs meterd in-process with args and returns its address and a
// stop function that shuts it down and checks the exit.
func startRun(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	lw := &lineWriter{lines: make(chan string, 100)}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, func(string) string { return "" }, lw) }()
	addr := waitListening(t, lw.lines, done)
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return addr
}

// TestCheckServer covers the startup checks of the listener flags.
func TestCheckServer(t *testing.T) {
	long := "sk_test_0123456789abcdef"
	for _, tc := range []struct {
		addr string
		keys []string
		sf   serverFlags
		want string // "" for accepted
	}{
		{"127.0.0.1:1", []string{"k"}, serverFlags{maxConns: 1, idleTimeout: time.Second}, ""},
		{"0.0.0.0:1", []string{"k"}, serverFlags{maxConns: 1, idleTimeout: time.Second, insecureHTTP: true}, "at least 16 characters"},
		{"0.0.0.0:1", []string{long, "sk_test_short"}, serverFlags{maxConns: 1, idleTimeout: time.Second, insecureHTTP: true}, "at least 16 characters"},
		{"0.0.0.0:1", []string{long}, serverFlags{maxConns: 1, idleTimeout: time.Second}, "plain HTTP"},
		{"10.1.2.3:1", []string{long}, serverFlags{maxConns: 1, idleTimeout: time.Second}, "plain HTTP"},
		{"0.0.0.0:1", []string{long}, serverFlags{maxConns: 1, idleTimeout: time.Second, insecureHTTP: true}, ""},
		{"0.0.0.0:1", []string{long}, serverFlags{maxConns: 1, idleTimeout: time.Second, tlsCert: "c", tlsKey: "k"}, ""},
		{"127.0.0.1:1", nil, serverFlags{maxConns: 1, idleTimeout: time.Second, tlsCert: "c"}, "go together"},
		{"127.0.0.1:1", nil, serverFlags{maxConns: 0, idleTimeout: time.Second}, "-max-conns"},
		{"127.0.0.1:1", nil, serverFlags{maxConns: 1}, "-idle-timeout"},
	} {
		err := checkServer(&tc.sf, tc.addr, tc.keys)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("checkServer(%+v, %s, %q) = %v, want %q", tc.sf, tc.addr, tc.keys, err, tc.want)
		}
	}
	// Through run: a short key on an open address stops meterd at startup.
	err := run(context.Background(), []string{"-addr", "0.0.0.0:0", "-db", "", "-api-key", "sk_x"},
		func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "at least 16 characters") {
		t.Errorf("short key on 0.0.0.0: %v", err)
	}
	err = run(context.Background(), []string{"-addr", "0.0.0.0:0", "-db", "", "-api-key", long},
		func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "plain HTTP") {
		t.Errorf("plain HTTP on 0.0.0.0: %v", err)
	}
}

// writeSelfSigned writes a self-signed certificate for 127.0.0.1 and its
// key into dir and returns their paths and a pool trusting it.
func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "meterd test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestTLS serves HTTPS with a certificate made by the test; stripe-go
// trusting it works, and plain HTTP on the same port does not.
func TestTLS(t *testing.T) {
	certFile, keyFile, pool := writeSelfSigned(t, t.TempDir())
	addr := startRun(t, "-addr", "127.0.0.1:0", "-db", "", "-tls-cert", certFile, "-tls-key", keyFile)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	sc := stripe.NewClient("sk_test_tls", stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL: stripe.String("https://" + addr), HTTPClient: hc, MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
	})))
	m, err := sc.V1BillingMeters.Create(context.Background(), meterParams("tls"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := sc.V1BillingMeters.Retrieve(context.Background(), m.ID, nil); err != nil || got.EventName != "tls" {
		t.Fatalf("retrieve over TLS: %v %v", got, err)
	}
	// Plain HTTP to the TLS port gets no API answer.
	res, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/v1/billing/meters")
	if err == nil {
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			t.Error("plain HTTP served by the TLS port")
		}
	}
	// A client that does not trust the certificate fails.
	if _, err := http.Get("https://" + addr + "/v1/billing/meters"); err == nil {
		t.Error("untrusted certificate accepted")
	}
}

// TestHeaderLimits: headers over stripeapi's limit (32 KiB) are answered
// with a Stripe JSON 431 by the handler; beyond the server's
// MaxHeaderBytes net/http answers 431 itself (see
// TestRequestsNetHTTPRejects for its body).
func TestHeaderLimits(t *testing.T) {
	addr := startRun(t, "-addr", "127.0.0.1:0", "-db", "")
	send := func(n int) (*http.Response, []byte) {
		req, err := http.NewRequest("GET", "http://"+addr+"/v1/billing/meters", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer sk_test_h")
		req.Header.Set("X-Big", strings.Repeat("a", n))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res, body
	}
	if res, body := send(1 << 10); res.StatusCode != http.StatusOK {
		t.Fatalf("1 KiB header: %d %s", res.StatusCode, body)
	}
	res, body := send(40 << 10)
	var eb struct {
		Error struct{ Type, Message string }
	}
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge || json.Unmarshal(body, &eb) != nil ||
		eb.Error.Type != "invalid_request_error" || res.Header.Get("Request-Id") == "" {
		t.Errorf("40 KiB header: %d %s, want 431 with a Stripe error body", res.StatusCode, body)
	}
	if res, body := send(100 << 10); res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("100 KiB header: %d %s, want 431", res.StatusCode, body)
	}
}

// TestConnectionFlood runs meterd with an open-file limit of 256 and
// opens 450 connections: 150 that never send a byte and 300 that send one
// unauthenticated request and then hold the connection without reading.
// meterd must not run out of descriptors, and a real client must still be
// served once the silent connections time out.
func TestConnectionFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs meterd")
	}
	bin := buildMeterd(t)
	cmd := exec.Command("sh", "-c", `ulimit -n 256 && exec "$0" "$@"`, bin, "-addr", "127.0.0.1:0", "-db", "")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	logs := make(chan string, 10000)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case logs <- sc.Text():
			default:
			}
		}
		close(logs)
	}()
	var addr string
	var seen []string
	for addr == "" {
		select {
		case l, ok := <-logs:
			if !ok {
				t.Fatalf("meterd exited: %q", seen)
			}
			seen = append(seen, l)
			if m := listeningRE.FindStringSubmatch(l); m != nil {
				addr = m[1]
			}
		case <-time.After(30 * time.Second):
			t.Fatal("meterd did not start")
		}
	}

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
		return c
	}
	for range 150 {
		dial()
	}
	for range 300 {
		c := dial()
		fmt.Fprintf(c, "GET /v1/billing/meters HTTP/1.1\r\nHost: x\r\n\r\n")
	}
	start := time.Now()
	sc := stripe.NewClient("sk_test_real", stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL: stripe.String("http://" + addr), MaxNetworkRetries: stripe.Int64(0),
		HTTPClient:    &http.Client{Timeout: 40 * time.Second},
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
	})))
	_, err = sc.V1BillingMeters.Create(context.Background(), meterParams("flood"))
	took := time.Since(start)
	if err != nil {
		t.Fatalf("a real client was not served during the flood (after %v): %v", took, err)
	}
	t.Logf("real client served after %v", took.Round(time.Millisecond))
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Signal(os.Interrupt)
	deadline := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-logs:
			if !ok {
				return
			}
			if strings.Contains(l, "too many open files") {
				t.Fatalf("meterd ran out of descriptors: %s", l)
			}
		case <-deadline:
			t.Fatal("meterd did not stop")
		}
	}
}

// A panicking handler ends the process with status 2 and its stack in
// the log, instead of net/http recovering and serving on with whatever
// the panic left behind; an aborted response passes through.
func TestExitOnPanic(t *testing.T) {
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	code := -1
	h := exitOnPanic(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("bucket arithmetic")
	}), log, func(c int) { code = c })
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/v1/billing/meter_events", nil))
	if code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	if !strings.Contains(logs.String(), "bucket arithmetic") || !strings.Contains(logs.String(), "server_test.go") {
		t.Fatalf("log lacks the panic or its stack: %s", logs.String())
	}

	code = -1
	abort := exitOnPanic(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic(http.ErrAbortHandler)
	}), log, func(c int) { code = c })
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Errorf("recovered %v, want http.ErrAbortHandler", v)
			}
		}()
		abort.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}()
	if code != -1 {
		t.Fatalf("an aborted response exited with %d", code)
	}
}
