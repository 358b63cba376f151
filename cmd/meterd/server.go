package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Timeouts and limits of meterd's http.Server. A client must send its
// request headers within headerTimeout of connecting (or of its previous
// response) and the whole request within readTimeout; a response that the
// client does not read within writeTimeout is dropped with its connection,
// so that a non-reading client pins neither memory nor a connection.
const (
	headerTimeout  = 10 * time.Second
	readTimeout    = 30 * time.Second
	writeTimeout   = 30 * time.Second
	maxHeaderBytes = 64 << 10 // net/http answers larger headers itself (plain-text 431)
	fdReserve      = 64       // descriptors kept free for the database and logs
)

// serverFlags are the flags that shape the listener and the http.Server.
type serverFlags struct {
	tlsCert, tlsKey string
	insecureHTTP    bool
	maxConns        int
	idleTimeout     time.Duration
}

func addServerFlags(fs *flag.FlagSet) *serverFlags {
	sf := &serverFlags{}
	fs.StringVar(&sf.tlsCert, "tls-cert", "", "serve HTTPS with this PEM certificate `file` (with -tls-key)")
	fs.StringVar(&sf.tlsKey, "tls-key", "", "PEM private key `file` of -tls-cert")
	fs.BoolVar(&sf.insecureHTTP, "insecure-http", false, "allow plain HTTP, API keys in clear text, on a non-loopback address")
	fs.IntVar(&sf.maxConns, "max-conns", 4096, "open connections at most; more wait in the listen queue "+
		"(lowered to fit the open-file limit)")
	fs.DurationVar(&sf.idleTimeout, "idle-timeout", 30*time.Second, "close keep-alive connections idle this long")
	return sf
}

// minRemoteKeyLength is the shortest API key accepted when meterd listens
// beyond loopback.
const minRemoteKeyLength = 16

// checkServer validates the server flags against the address and keys.
func checkServer(sf *serverFlags, addr string, keys []string) error {
	if (sf.tlsCert == "") != (sf.tlsKey == "") {
		return errors.New("-tls-cert and -tls-key go together")
	}
	if sf.maxConns < 1 {
		return fmt.Errorf("-max-conns must be at least 1, not %d", sf.maxConns)
	}
	if sf.idleTimeout <= 0 {
		return fmt.Errorf("-idle-timeout must be positive, not %v", sf.idleTimeout)
	}
	if loopback(addr) {
		return nil
	}
	for _, k := range keys {
		if len(k) < minRemoteKeyLength {
			return fmt.Errorf("refusing to listen on %s with an API key of %d characters: keys must be at least %d characters "+
				"beyond loopback", addr, len(k), minRemoteKeyLength)
		}
	}
	if sf.tlsCert == "" && !sf.insecureHTTP {
		return fmt.Errorf("refusing to listen on %s with plain HTTP, which sends API keys in clear text: "+
			"give -tls-cert and -tls-key, or -insecure-http (behind a TLS-terminating proxy)", addr)
	}
	return nil
}

// listen opens the listener: at most maxConns connections at once (fewer
// if the open-file limit is lower), TLS when configured. It raises the
// soft open-file limit to the hard limit first.
func listen(sf *serverFlags, addr string, log *slog.Logger) (net.Listener, error) {
	maxConns := sf.maxConns
	if limit, err := raiseFileLimit(); err == nil && limit < uint64(maxConns)+2*fdReserve {
		lowered := max(1, int(limit)-2*fdReserve)
		if limit <= 2*fdReserve {
			lowered = max(1, int(limit)/2)
		}
		log.Warn("open-file limit is low: lowering -max-conns", "limit", limit, "max_conns", lowered)
		maxConns = lowered
	}
	var tlsConf *tls.Config
	if sf.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(sf.tlsCert, sf.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("loading -tls-cert and -tls-key: %w", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
			NextProtos: []string{"http/1.1"}}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	ln = newLimitListener(ln, maxConns)
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	return ln, nil
}

// exitOnPanic ends the process (exit(2)) when a request's handler panics,
// where net/http would recover and go on serving: a panic inside the
// engine may leave one of its locks held or an aggregate half updated, so
// a server that went on would hang its later writers or count wrongly.
// The database is not closed (that would checkpoint what the panic left):
// a file database restarts from what its log made durable.
// http.ErrAbortHandler, which only aborts a response, passes through.
func exitOnPanic(h http.Handler, log *slog.Logger, exit func(code int)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			log.Error("panic serving a request; exiting", "method", r.Method, "path", r.URL.Path,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			exit(2)
		}()
		h.ServeHTTP(w, r)
	})
}

// newServer returns meterd's http.Server for h.
func newServer(h http.Handler, sf *serverFlags, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: headerTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       sf.idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// raiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit and
// returns the soft limit in effect.
func raiseFileLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		raised := rl
		raised.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			rl = raised
		}
	}
	return rl.Cur, nil
}

// limitListener accepts at most n connections at once: Accept waits for an
// open one to close, and the connections beyond wait in the kernel's
// listen queue, costing meterd no descriptor.
type limitListener struct {
	net.Listener
	slots chan struct{}
	done  chan struct{} // closed by Close
	once  sync.Once
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: stripeErrorConn{c}, raw: c, release: func() { <-l.slots }}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn gives its slot back once, on the first Close.
type limitConn struct {
	net.Conn
	raw     net.Conn // the accepted connection, under the wrappers
	once    sync.Once
	release func()
}

// CloseWrite half-closes the connection when it can, as net/http does
// before closing after an error response.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.raw.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// netHTTPErrorHeaders is what net/http's server writes after the status
// line of the responses it makes itself, before any handler runs: to a
// request line it cannot parse (a bad percent escape in the path), headers
// over MaxHeaderBytes, a missing Host header, an unsupported transfer
// encoding. It writes each such response, complete, in one Write to the
// connection and then closes it.
const netHTTPErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// stripeErrorConn rewrites net/http's own plain-text error responses into
// Stripe-shaped JSON errors with the same status. Handler responses never
// match (they carry a Date header and a JSON Content-Type); over TLS the
// connection sees ciphertext, so net/http's plain text stays.
type stripeErrorConn struct {
	net.Conn
}

func (c stripeErrorConn) Write(p []byte) (int, error) {
	if rewritten, ok := stripeError(p); ok {
		if _, err := c.Conn.Write(rewritten); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// stripeError returns the JSON form of p if p is one of net/http's own
// error responses.
func stripeError(p []byte) ([]byte, bool) {
	s := string(p) // only when small: error responses are a few dozen bytes
	if len(p) > 512 || !strings.HasPrefix(s, "HTTP/1.1 ") {
		return nil, false
	}
	line, body, ok := strings.Cut(s, netHTTPErrorHeaders)
	if !ok || strings.Contains(line, "\r\n") || len(line) < len("HTTP/1.1 400") {
		return nil, false
	}
	code, err := strconv.Atoi(line[len("HTTP/1.1 ") : len("HTTP/1.1 ")+3])
	if err != nil || code < 400 || code > 599 {
		return nil, false
	}
	msg := "Invalid request: " + strings.TrimPrefix(body, line[len("HTTP/1.1 "):len("HTTP/1.1 ")+4]) + "."
	switch code {
	case http.StatusRequestHeaderFieldsTooLarge:
		msg = fmt.Sprintf("Request headers too large: the limit is %d bytes.", maxHeaderBytes)
	case http.StatusBadRequest:
		if !strings.Contains(body, ": ") {
			msg = "Invalid request: the request line or headers could not be parsed (for example a bad percent escape in the path)."
		}
	}
	typ := "invalid_request_error"
	if code >= 500 {
		typ = "api_error"
	}
	js, err := json.Marshal(map[string]map[string]string{"error": {"type": typ, "message": msg}})
	if err != nil {
		return nil, false
	}
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		code, http.StatusText(code), len(js), js), true
}
