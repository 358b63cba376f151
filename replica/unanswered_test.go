package replica

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meterdb/meterdb/internal/natstest"
	"github.com/meterdb/meterdb/sharedlog"
)

// muteProxy forwards TCP connections to a NATS server. Once muted, it
// still passes what clients send (the server acts on their requests) but
// drops every byte the server sends back: each request in flight is
// never answered, as when the server that took it dies, while the client
// keeps its connection.
type muteProxy struct {
	ln    net.Listener
	to    string
	muted atomic.Bool
	// muteOn mutes the proxy as soon as a client sends it (nil: never).
	muteOn []byte
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func startMuteProxy(t *testing.T, to string, muteOn string) *muteProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &muteProxy{ln: ln, to: strings.TrimPrefix(to, "nats://")}
	if muteOn != "" {
		p.muteOn = []byte(muteOn)
	}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *muteProxy) url() string { return "nats://" + p.ln.Addr().String() }

func (p *muteProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.to)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(s, c, false) // client to server
		go p.pipe(c, s, true)  // server to client
	}
}

// pipe copies from src to dst; fromServer says which way it goes.
func (p *muteProxy) pipe(dst, src net.Conn, fromServer bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !fromServer && p.muteOn != nil && bytes.Contains(buf[:n], p.muteOn) {
				p.muted.Store(true)
			}
			if !fromServer || !p.muted.Load() {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (p *muteProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// within runs f and fails the test when it has not returned within d: a
// request that is never answered must not hold a call for longer than
// AppendTimeout and a little.
func within(t *testing.T, what string, d time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- f() }()
	select {
	case err := <-done:
		t.Logf("%s returned after %v: %v", what, time.Since(start).Round(time.Millisecond), err)
		return err
	case <-time.After(d):
		t.Fatalf("%s still waits after %v for an answer that will never come", what, d)
		return nil
	}
}

// TestUnansweredRequests checks that no call waits longer than about
// AppendTimeout for an answer that never comes, even with a ctx that
// allows much more: Open (its setup requests), Last, SnapshotInfo, and
// a snapshot's reader, opened before the answers stopped.
func TestUnansweredRequests(t *testing.T) {
	s := natstest.RunServer(t, nil)
	o := Options{Stream: "MUTE", Replicas: 1, AttemptTimeout: 200 * time.Millisecond, AppendTimeout: time.Second,
		Logger: testLogger(t)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const bound = 8 * time.Second // the ctx would allow a minute

	// Open: the first JetStream request of its setup goes unanswered.
	p := startMuteProxy(t, s.ClientURL(), "$JS.API.STREAM.INFO")
	o.URLs = []string{p.url()}
	err := within(t, "Open", bound, func() error {
		l, err := Open(ctx, o)
		if err == nil {
			l.Close()
		}
		return err
	})
	if !errors.Is(err, sharedlog.ErrUnavailable) {
		t.Fatalf("Open whose requests go unanswered: %v; want ErrUnavailable", err)
	}
	if !p.muted.Load() {
		t.Fatal("the proxy never muted: Open sent no stream info request")
	}

	// The other calls: a Log opened while answers come, with a snapshot
	// of several chunks and a reader of it, then muted.
	p = startMuteProxy(t, s.ClientURL(), "")
	o.URLs = []string{p.url()}
	l, err := Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Append(ctx, []byte("one")); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("snapshot "), 100_000) // 900 kB: several chunks
	if err := l.PutSnapshot(ctx, 1, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	_, rc, err := l.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	first := make([]byte, 1000)
	if _, err := io.ReadFull(rc, first); err != nil {
		t.Fatal(err)
	}
	p.muted.Store(true)

	for _, c := range []struct {
		what string
		f    func() error
	}{
		{"Last", func() error { _, err := l.Last(ctx); return err }},
		{"SnapshotInfo", func() error { _, err := l.SnapshotInfo(ctx); return err }},
		{"reading the snapshot", func() error { _, err := io.Copy(io.Discard, rc); return err }},
	} {
		err := within(t, c.what, bound, c.f)
		if !errors.Is(err, sharedlog.ErrUnavailable) {
			t.Errorf("%s without answers: %v; want ErrUnavailable", c.what, err)
		}
	}
}
