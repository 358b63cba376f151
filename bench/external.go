package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/stripeapi"
)

// The HTTP scenarios with -external measure servers the way a user runs
// them: each server is a process of its own (a meterd binary built from
// this module, in memory or on a file with its default sync durability,
// and for v1 stripe-mock, the reference), and this process is the client.
// The client holds -conns keep-alive connections over loopback and,
// closed loop, for -duration, sends with a Bearer key and no
// Idempotency-Key either POST /v1/billing/meter_events with a
// form-encoded body, one event per request (http-v1), or POST
// /v2/billing/meter_event_stream with a JSON body of 100 events and the
// token of a meter event session (http-v2). It builds bodies straight
// from the workload and writes requests and reads responses on raw
// connections (HTTP/1.1, Content-Length or chunked), so that the client
// takes as little of the machine as it can; its CPU time per request is
// reported beside the server's.
//
// The server's CPU time per request is the utime+stime of its process
// (/proc/PID/stat) over the measured interval divided by the requests
// answered. After the load, every series of meterd is checked over HTTP
// (GET /v1/billing/meters/{id}/event_summaries, every series) against the
// workload's totals of exactly the events that were answered 200. stripe-mock keeps
// no state and is not verified.

// stripeMockModule is the stripe-mock the comparison installs when none
// is on PATH or in GOBIN.
const stripeMockModule = "github.com/stripe/stripe-mock@v0.203.0"

// externalScenarios replace the HTTP scenarios under -external.
var externalScenarios = map[string]scenario{
	"http-v1": {
		name:    "http-v1",
		doc:     "v1 meter events over loopback HTTP to a server in its own process (-external), one event per request, no Idempotency-Key",
		targets: []string{"meterd-mem", "meterd-file", "stripe-mock"},
		run:     (*runner).runExternal,
	},
	"http-v2": {
		name:    "http-v2",
		doc:     "v2 meter event stream over loopback HTTP to meterd in its own process (-external), 100 events per request, no Idempotency-Key",
		targets: []string{"meterd-mem", "meterd-file"},
		run:     (*runner).runExternal,
	},
}

// externalTargets are the -external servers; they run as processes, not
// through Target.
var externalTargets = map[string]TargetSpec{
	"meterd-mem": {
		Name: "meterd-mem", Baseline: "stripe-mock",
		Doc: "meterd -db= (in memory), its own process; -scenario http-v1 -external",
	},
	"meterd-file": {
		Name: "meterd-file", Baseline: "stripe-mock", Durable: true,
		Doc: "meterd -db FILE (default durability sync: acknowledged after the fsync), its own process; -scenario http-v1 -external",
	},
	"stripe-mock": {
		Name: "stripe-mock",
		Doc:  "baseline: stripe-mock " + strings.TrimPrefix(stripeMockModule, "github.com/stripe/stripe-mock@") + ", its own process; -scenario http-v1 -external",
	},
}

func init() {
	for name, spec := range externalTargets {
		spec.Open = func(*Workload, string) (Target, error) {
			return nil, fmt.Errorf("%w: %s runs as a process of its own: -scenario http-v1 -external", ErrUnavailable, name)
		}
		targets[name] = spec
	}
}

// extProc is a server process on a loopback port.
type extProc struct {
	cmd    *exec.Cmd
	addr   string // 127.0.0.1:port
	logs   *tailBuffer
	exited chan struct{} // closed when the process has exited
}

// tailBuffer keeps the last 4 KiB written to it, for error messages.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	t.mu.Unlock()
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.b))
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startProc starts bin with args (in which "ADDR" stands for the address
// it must listen on) and waits until the address accepts connections.
func startProc(bin string, args ...string) (*extProc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "ADDR", addr)
	}
	p := &extProc{cmd: exec.Command(bin, args...), addr: addr, logs: &tailBuffer{}, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	exited := p.exited
	go func() { p.cmd.Wait(); close(exited) }()
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p, nil
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("%s exited: %s", filepath.Base(bin), p.logs)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.cmd.Process.Kill()
			return nil, fmt.Errorf("%s does not listen on %s after 30s: %s", filepath.Base(bin), addr, p.logs)
		}
	}
}

// stop sends SIGTERM (meterd then closes its database cleanly) and waits
// for the process, killing it after 40 s.
func (p *extProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(40 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// cpuNs returns the user plus system CPU time of the process so far, from
// /proc/PID/stat, in nanoseconds.
func (p *extProc) cpuNs() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields count from the
	// last ')'. utime and stime are fields 14 and 15, in clock ticks.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", p.cmd.Process.Pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	const clockTick = int64(time.Second / 100) // USER_HZ, 100 on Linux
	return (ut + st) * clockTick, nil
}

// buildMeterd builds cmd/meterd into dir once per run and returns its
// path.
func (r *runner) buildMeterd() (string, error) {
	if r.meterd != "" {
		return r.meterd, nil
	}
	dir, err := os.MkdirTemp("", "meterdb-bench-meterd-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "meterd")
	r.prog.note("building meterd")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/meterdb/meterdb/cmd/meterd").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("building meterd: %v: %s", err, out)
	}
	r.meterd, r.cleanups = bin, append(r.cleanups, func() { os.RemoveAll(dir) })
	return bin, nil
}

// lookStripeMock returns the path of a stripe-mock binary on PATH, in
// GOBIN or in GOPATH/bin, or "".
func lookStripeMock() string {
	if p, err := exec.LookPath("stripe-mock"); err == nil {
		return p
	}
	out, _ := exec.Command("go", "env", "GOBIN", "GOPATH").Output()
	for _, d := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if d = strings.TrimSpace(d); d == "" {
			continue
		}
		for _, p := range []string{filepath.Join(d, "stripe-mock"), filepath.Join(d, "bin", "stripe-mock")} {
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				return p
			}
		}
	}
	return ""
}

// findStripeMock returns the path of a stripe-mock binary (see
// lookStripeMock), installing it with go install when there is none.
func (r *runner) findStripeMock() (string, error) {
	if p := lookStripeMock(); p != "" {
		return p, nil
	}
	r.prog.note("installing %s", stripeMockModule)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "install", stripeMockModule).CombinedOutput()
	if p := lookStripeMock(); p != "" {
		return p, nil
	}
	return "", fmt.Errorf("stripe-mock is not installed and go install %s failed: %v: %s", stripeMockModule, err, bytes.TrimSpace(out))
}

// runExternal measures one server process in one cell: conns=N for v1,
// conns=N batch=100 for the v2 stream.
func (r *runner) runExternal(spec TargetSpec) ([]Result, error) {
	batch := 1
	cell := fmt.Sprintf("conns=%d", r.cfg.Conns)
	if r.scenario == "http-v2" {
		batch = stripeapi.MaxStreamEvents
		cell += fmt.Sprintf(" batch=%d", batch)
	}
	row := Result{Cell: cell, Workers: r.cfg.Conns, Batch: batch}
	// The server's clock is the real one: the events' timestamps lie in
	// the Span before the last UTC midnight.
	w := *r.w
	w.Anchor = time.Now().UTC().Truncate(24 * time.Hour)
	var (
		bin  string
		args []string
		err  error
	)
	dir, err := os.MkdirTemp("", "meterdb-bench-"+spec.Name+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	switch spec.Name {
	case "stripe-mock":
		if bin, err = r.findStripeMock(); err != nil {
			return []Result{skipped(cell, err)}, nil
		}
		args = []string{"-http-addr", "ADDR"}
		row.Note = "stripe-mock at " + bin + " keeps no state: not verified"
	case "meterd-mem", "meterd-file":
		if bin, err = r.buildMeterd(); err != nil {
			return nil, err
		}
		db := ""
		if spec.Name == "meterd-file" {
			db = filepath.Join(dir, "meter.db")
		}
		args = []string{"-addr", "ADDR", "-db=" + db, "-api-key", httpAPIKey}
	default:
		return nil, fmt.Errorf("%s is not an -external target", spec.Name)
	}
	p, err := startProc(bin, args...)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	if spec.Name != "stripe-mock" {
		row.Note = "meterd " + strings.Join(p.cmd.Args[1:], " ")
	}
	base := "http://" + p.addr
	ctx := context.Background()
	var ids []string
	req := externalRequest{path: "/v1/billing/meter_events", key: httpAPIKey,
		contentType: "application/x-www-form-urlencoded", batch: batch, encode: w.appendV1Body}
	if spec.Name != "stripe-mock" {
		hc := httpNewClient(1)
		defer hc.CloseIdleConnections()
		if ids, err = httpCreateMeters(ctx, hc, base, w.Meters); err != nil {
			return nil, fmt.Errorf("%w (server log: %s)", err, p.logs)
		}
		if batch > 1 {
			if req.key, err = httpSession(ctx, hc, base); err != nil {
				return nil, fmt.Errorf("%w (server log: %s)", err, p.logs)
			}
			req.path, req.contentType, req.encode = "/v2/billing/meter_event_stream", "application/json", w.appendStreamBody
		}
	}

	res, err := externalLoad(p, &w, req, r.cfg.Conns, r.cfg.Duration, r.prog, r.scenario+" "+spec.Name+" "+cell)
	if err != nil {
		return []Result{row}, fmt.Errorf("%w (server log: %s)", err, p.logs)
	}
	row.Seconds = res.elapsed.Seconds()
	row.Events, row.Ops = res.events, res.requests
	row.EventsPerSec = float64(res.events) / row.Seconds
	row.OpsPerSec = float64(res.requests) / row.Seconds
	row.Latency = percentiles(res.lat)
	row.Primary = "ops/s"
	row.Metrics = map[string]float64{
		serverCPU: float64(res.serverCPU) / 1e3 / float64(res.requests),
		clientCPU: float64(res.clientCPU) / 1e3 / float64(res.requests),
	}
	if spec.Name == "stripe-mock" {
		return []Result{row}, nil
	}
	r.prog.note("verifying %s after %d events", spec.Name, res.events)
	hc := httpNewClient(4)
	defer hc.CloseIdleConnections()
	row.Verified, err = verifyOverHTTP(ctx, spec.Name, hc, base, &w, ids, res.ranges, len(w.Meters)*w.Customers)
	return []Result{row}, err
}

// httpCreateMeters creates the meters of ps with POST /v1/billing/meters
// and returns their ids.
func httpCreateMeters(ctx context.Context, hc *http.Client, base string, ps []meter.Params) ([]string, error) {
	t := &httpTarget{hc: hc, srv: &httpServer{URL: base}}
	return t.CreateMeters(ctx, ps)
}

// httpSession creates a v2 meter event session and returns its token.
func httpSession(ctx context.Context, hc *http.Client, base string) (string, error) {
	body, err := httpPost(ctx, hc, base+"/v2/billing/meter_event_session", httpAPIKey, "application/json", nil, "", nil)
	if err != nil {
		return "", err
	}
	var sess struct {
		Token string `json:"authentication_token"`
	}
	if err := json.Unmarshal(body, &sess); err != nil {
		return "", err
	}
	if sess.Token == "" {
		return "", errors.New("meter event session without authentication_token")
	}
	return sess.Token, nil
}

// externalRequest is what the load sends: batch events per POST to path,
// the body of events [first, first+n) appended by encode, with a Bearer
// key.
type externalRequest struct {
	path, key, contentType string
	batch                  int
	encode                 func(buf []byte, first uint64, n int) []byte
}

// appendV1Body appends the form body of POST /v1/billing/meter_events for
// event first of w (n is 1): what httpAppendV1Event writes for it, built
// straight from the workload, whose names, customer ids and identifiers
// need no escaping, so that the client spends its time on the wire.
func (w *Workload) appendV1Body(buf []byte, first uint64, n int) []byte {
	s := w.Spec(first)
	buf = append(buf, "event_name="...)
	buf = append(buf, w.Meters[s.Meter].EventName...)
	buf = append(buf, "&identifier="...)
	buf = w.appendIdent(buf, first)
	buf = append(buf, "&payload%5Bstripe_customer_id%5D="...)
	buf = append(buf, w.customerIDs[s.Customer]...)
	buf = append(buf, "&payload%5Bvalue%5D="...)
	buf = strconv.AppendInt(buf, s.Value, 10)
	buf = append(buf, "&timestamp="...)
	return strconv.AppendInt(buf, s.TS, 10)
}

// appendStreamBody appends the JSON body of POST
// /v2/billing/meter_event_stream carrying events [first, first+n) of w:
// what httpAppendV2Stream writes for them, built straight from the
// workload.
func (w *Workload) appendStreamBody(buf []byte, first uint64, n int) []byte {
	buf = append(buf, `{"events":[`...)
	for j := range uint64(n) {
		s := w.Spec(first + j)
		if j > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"event_name":"`...)
		buf = append(buf, w.Meters[s.Meter].EventName...)
		buf = append(buf, `","identifier":"`...)
		buf = w.appendIdent(buf, first+j)
		buf = append(buf, `","payload":{"stripe_customer_id":"`...)
		buf = append(buf, w.customerIDs[s.Customer]...)
		buf = append(buf, `","value":"`...)
		buf = strconv.AppendInt(buf, s.Value, 10)
		buf = append(buf, `"},"timestamp":"`...)
		buf = time.Unix(s.TS, 0).UTC().AppendFormat(buf, time.RFC3339)
		buf = append(buf, `"}`...)
	}
	return append(buf, "]}"...)
}

// externalResult is what one load against a server process measured.
type externalResult struct {
	requests, events     int64
	elapsed              time.Duration
	serverCPU, clientCPU int64 // nanoseconds over the load
	lat                  []int64
	ranges               [][2]uint64 // workload events answered 200
}

// externalLoad drives p with conns closed-loop connections for d.
// Workers claim blocks of events and send them req.batch events a
// request; ranges lists exactly the events answered 200. A status other
// than 200, or a broken connection, ends the load with an error.
func externalLoad(p *extProc, w *Workload, req externalRequest, conns int, d time.Duration, prog *progress, label string) (externalResult, error) {
	block := uint64(max(recordBlock, req.batch))
	var (
		res     externalResult
		next    atomic.Uint64
		stop    atomic.Bool
		done    atomic.Int64
		mu      sync.Mutex // guards failure, res.requests, res.lat and res.ranges
		failure error
		wg      sync.WaitGroup
	)
	cs := make([]*rawConn, conns)
	for i := range cs {
		c, err := dialRaw(p.addr)
		if err != nil {
			for _, c := range cs[:i] {
				c.Close()
			}
			return res, err
		}
		cs[i] = c
	}
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	cpu0, err := p.cpuNs()
	if err != nil {
		return res, err
	}
	ccpu0 := cpuTime()
	prog.start(label, d, &done)
	t0 := time.Now()
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var body []byte
			var lat []int64
			var ranges [][2]uint64
			var requests int64
			var err error
		loop:
			for !stop.Load() {
				first := next.Add(block) - block
				for j := 0; j < int(block); j += req.batch {
					if stop.Load() {
						ranges = append(ranges, [2]uint64{first, first + uint64(j)})
						break loop
					}
					body = req.encode(body[:0], first+uint64(j), req.batch)
					s := time.Now()
					if err = c.post(req.path, req.key, req.contentType, body); err != nil {
						ranges = append(ranges, [2]uint64{first, first + uint64(j)})
						err = fmt.Errorf("events from %d: %w", first+uint64(j), err)
						break loop
					}
					if j == 0 {
						lat = append(lat, int64(time.Since(s)))
					}
					requests++
				}
				ranges = append(ranges, [2]uint64{first, first + block})
				done.Add(int64(block))
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil && failure == nil {
				failure = err
				stop.Store(true)
			}
			res.requests += requests
			res.lat = append(res.lat, lat...)
			res.ranges = append(res.ranges, ranges...)
		}()
	}
	timer := time.AfterFunc(d, func() { stop.Store(true) })
	wg.Wait()
	timer.Stop()
	res.elapsed = time.Since(t0)
	prog.stop()
	cpu1, err := p.cpuNs()
	if err != nil {
		return res, err
	}
	res.serverCPU, res.clientCPU = cpu1-cpu0, cpuTime()-ccpu0
	for _, rg := range res.ranges {
		res.events += int64(rg[1] - rg[0])
	}
	if failure != nil {
		return res, failure
	}
	if res.requests == 0 {
		return res, errors.New("no request answered")
	}
	return res, nil
}

// rawConn is one keep-alive HTTP/1.1 client connection that writes each
// request with one write and parses only what it needs of the response:
// the status, Content-Length or chunked encoding, and Connection: close.
type rawConn struct {
	addr string
	c    net.Conn
	br   *bufio.Reader
	req  []byte
	resp []byte
}

func dialRaw(addr string) (*rawConn, error) {
	c := &rawConn{addr: addr}
	return c, c.dial()
}

func (c *rawConn) dial() error {
	nc, err := net.Dial("tcp", c.addr)
	if err != nil {
		return err
	}
	c.c, c.br = nc, bufio.NewReaderSize(nc, 16<<10)
	return nil
}

func (c *rawConn) Close() error { return c.c.Close() }

// post sends a POST of body of content type ct to path with a Bearer key
// and reads the response; a status other than 200 is an error quoting the
// body.
func (c *rawConn) post(path, key, ct string, body []byte) error {
	b := c.req[:0]
	b = append(b, "POST "...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, c.addr...)
	b = append(b, "\r\nUser-Agent: meterdb-bench\r\nAuthorization: Bearer "...)
	b = append(b, key...)
	b = append(b, "\r\nContent-Type: "...)
	b = append(b, ct...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	c.req = b
	if _, err := c.c.Write(b); err != nil {
		return err
	}
	status, closing, err := c.readResponse()
	if err != nil {
		return err
	}
	if closing {
		c.c.Close()
		if err := c.dial(); err != nil {
			return err
		}
	}
	if status != http.StatusOK {
		return fmt.Errorf("POST %s: status %d: %s", path, status, bytes.TrimSpace(c.resp))
	}
	return nil
}

// readResponse reads one response into c.resp and returns its status and
// whether the server closes the connection after it.
func (c *rawConn) readResponse() (status int, closing bool, err error) {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	if status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	length, chunked := -1, false
	for {
		line, err = c.br.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		h := bytes.TrimRight(line, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(v)); err != nil {
				return 0, false, fmt.Errorf("bad Content-Length %q", v)
			}
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(v, []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")):
			closing = bytes.EqualFold(v, []byte("close"))
		}
	}
	c.resp = c.resp[:0]
	switch {
	case chunked:
		for {
			line, err = c.br.ReadSlice('\n')
			if err != nil {
				return 0, false, err
			}
			size, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
			n, err := strconv.ParseInt(string(size), 16, 32)
			if err != nil {
				return 0, false, fmt.Errorf("bad chunk size %q", line)
			}
			if n == 0 {
				// Trailers, if any, end with an empty line.
				for {
					line, err = c.br.ReadSlice('\n')
					if err != nil {
						return 0, false, err
					}
					if len(bytes.TrimRight(line, "\r\n")) == 0 {
						return status, closing, nil
					}
				}
			}
			if err := c.readBody(int(n) + 2); err != nil {
				return 0, false, err
			}
			c.resp = c.resp[:len(c.resp)-2]
		}
	case length >= 0:
		err = c.readBody(length)
	default:
		closing = true
		c.resp, err = io.ReadAll(c.br)
	}
	return status, closing, err
}

// readBody appends n bytes of the response to c.resp.
func (c *rawConn) readBody(n int) error {
	m := len(c.resp)
	c.resp = append(c.resp, make([]byte, n)...)
	_, err := io.ReadFull(c.br, c.resp[m:])
	return err
}

// verifyOverHTTP checks the server at base, holding the events in ranges
// of w, as verifyTotals checks a Target, through GET
// /v1/billing/meters/{id}/event_summaries from 4 goroutines: Stripe's
// summaries carry the aggregated value and no count, so each series'
// value is compared (the count itself for count meters). The events of
// ranges must add up to the workload's, series by series.
func verifyOverHTTP(ctx context.Context, name string, hc *http.Client, base string, w *Workload, ids []string, ranges [][2]uint64, maxQueries int) (int, error) {
	exp, pick, start, end, err := verifyPlan(name, w, ranges, maxQueries)
	if err != nil {
		return 0, err
	}
	const workers = 4
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex // guards first
		first  error
		failed atomic.Bool
	)
	for k := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for n := k; n < len(pick) && !failed.Load(); n += workers {
				var err error
				if buf, err = checkSeriesHTTP(ctx, name, hc, base, w, ids, pick[n], exp[pick[n]], start, end, buf[:0]); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					failed.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return 0, first
	}
	return len(pick), nil
}

// checkSeriesHTTP compares the summary of series i (meter*Customers +
// customer) over [start, end) with e; buf is a reusable response buffer.
func checkSeriesHTTP(ctx context.Context, name string, hc *http.Client, base string, w *Workload, ids []string, i int, e Expect, start, end time.Time, buf []byte) ([]byte, error) {
	m, c := i/w.Customers, i%w.Customers
	u := base + "/v1/billing/meters/" + url.PathEscape(ids[m]) + "/event_summaries?" + url.Values{
		"customer": {w.CustomerID(c)}, "start_time": {strconv.FormatInt(start.Unix(), 10)},
		"end_time": {strconv.FormatInt(end.Unix(), 10)},
	}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return buf, err
	}
	req.Header.Set("Authorization", "Bearer "+httpAPIKey)
	if buf, err = httpDo(hc, req, buf); err != nil {
		return buf, &VerifyError{name, fmt.Sprintf("summary of meter %d customer %d: %v", m, c, err)}
	}
	var list struct {
		Data []struct {
			Value json.Number `json:"aggregated_value"`
		} `json:"data"`
	}
	if err := json.Unmarshal(buf, &list); err != nil {
		return buf, &VerifyError{name, fmt.Sprintf("summary of meter %d customer %d: %v", m, c, err)}
	}
	want := e.Value(w.Meters[m].Formula)
	if e.Count == 0 {
		want = 0
	}
	if len(list.Data) != 1 || list.Data[0].Value.String() != strconv.FormatInt(want, 10) {
		return buf, &VerifyError{name, fmt.Sprintf("meter %d (%s) customer %d: summaries %s, want one with aggregated_value %d",
			m, w.Meters[m].Formula, c, bytes.TrimSpace(buf), want)}
	}
	return buf, nil
}
