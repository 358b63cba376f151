package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meterdb/meterdb/internal/natstest"
	"github.com/meterdb/meterdb/sharedlog"
)

// TestClusterLeaderKill stops the node leading the stream while two Logs
// (one of them given only that node's URL) append from eight goroutines
// and a third Log tails the stream: no
// acknowledged record is lost, the tail reads no record twice, out of
// order or after a hole, and the time writes were unavailable is logged.
//
// CI keeps to three node kills over all packages (each election costs
// seconds): TestConsistentReadsThroughElection stops an in-process
// leader, TestReplicaModelNATS (root package) kills one node, and
// TestReplicaProcessesKill (cmd/meterd) SIGKILLs a leader process under
// meterd's load, so this test runs with -nats-all-kills.
func TestClusterLeaderKill(t *testing.T) {
	if !*allKills {
		t.Skip("runs with -nats-all-kills")
	}
	c := natstest.StartCluster(t)
	killLeaderUnderLoad(t, c, false)
}

// TestProcessClusterLeaderKill does the same with nats-server processes:
// the stream leader's process gets SIGKILL, and is restarted while the
// load goes on. It runs with -nats-all-kills, as TestClusterLeaderKill.
func TestProcessClusterLeaderKill(t *testing.T) {
	if !*allKills {
		t.Skip("runs with -nats-all-kills")
	}
	c := natstest.StartProcessCluster(t)
	killLeaderUnderLoad(t, c, true)
}

func killLeaderUnderLoad(t *testing.T, c *natstest.Cluster, restart bool) {
	const stream = "FAILOVER"
	urls := c.ClientURLs()
	o := Options{Stream: stream, Logger: testLogger(t)}
	w1, r := openLog(t, urls, o), openLog(t, urls, o)
	if err := c.WaitStreamCurrent(stream, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	leader, err := c.StreamLeader(stream, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// The second writer knows only the leader's node: it reconnects to
	// the servers the cluster told it of.
	w2 := openLog(t, urls[leader:leader+1], o)

	// The tail checks order as it reads.
	tctx, tcancel := context.WithCancel(context.Background())
	var tail []entry
	var terr error
	var twg sync.WaitGroup
	twg.Go(func() {
		terr = r.Read(tctx, 0, func(pos uint64, rec []byte) error {
			if pos != uint64(len(tail)+1) {
				return fmt.Errorf("tail: position %d after %d", pos, len(tail))
			}
			tail = append(tail, entry{pos, string(rec)})
			return nil
		})
	})

	stop := make(chan struct{})
	ld := runLoad([]*Log{w1, w2}, 4, stop)
	time.Sleep(time.Second)
	killed := time.Now()
	c.Kill(leader)
	t.Logf("killed node %d, the stream leader", leader)
	// Wait for a new leader, then for a write acknowledged after it.
	next := leader
	for deadline := time.Now().Add(30 * time.Second); next == leader; {
		if next, err = c.StreamLeader(stream, 30*time.Second); err != nil || time.Now().After(deadline) {
			close(stop)
			t.Fatalf("no new stream leader after the kill: %v", err)
		}
	}
	elected := time.Now()
	for deadline := elected.Add(20 * time.Second); ; {
		ld.mu.Lock()
		resumed := slices.ContainsFunc(ld.times, func(at time.Time) bool { return at.After(elected) })
		ld.mu.Unlock()
		if resumed {
			break
		}
		if time.Now().After(deadline) {
			close(stop)
			t.Fatalf("no write acknowledged in 20 s after node %d became the leader", next)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if restart {
		c.Restart(leader)
		t.Logf("restarted node %d", leader)
	}
	time.Sleep(time.Second)
	end := time.Now()
	close(stop)
	ld.wait()
	gap := ld.longestGap(killed.Add(-500*time.Millisecond), end)
	t.Logf("writes unavailable for %v (the longest time without an acknowledgement around the kill); node %d seen leading %v after the kill; %d records acknowledged, %d appends failed",
		gap.Round(time.Millisecond), next, elected.Sub(killed).Round(time.Millisecond), len(ld.acked), len(ld.failed))
	for _, err := range ld.failed {
		if !errors.Is(err, sharedlog.ErrUnavailable) {
			t.Errorf("a failed append does not wrap ErrUnavailable: %v", err)
		}
	}

	n := ld.verify(t, r)
	// The tail read the same log.
	deadline := time.Now().Add(20 * time.Second)
	for {
		tcancel()
		twg.Wait()
		if terr != nil && !errors.Is(terr, context.Canceled) {
			t.Fatalf("tail: %v", terr)
		}
		if len(tail) >= n || time.Now().After(deadline) {
			break
		}
		// The tail lags: let it read on.
		tctx, tcancel = context.WithCancel(context.Background())
		after := uint64(len(tail))
		twg.Go(func() {
			terr = r.Read(tctx, after, func(pos uint64, rec []byte) error {
				tail = append(tail, entry{pos, string(rec)})
				return nil
			})
		})
		time.Sleep(time.Second)
	}
	tcancel()
	if len(tail) < n {
		t.Fatalf("the tail read %d of %d records", len(tail), n)
	}
	checkContiguous(t, 0, tail[:n])
	if got := readN(t, r, 0, n); !equalEntries(got, tail[:n]) {
		t.Fatal("the tail and a read after the load differ")
	}
}

// TestConnectionLoss stops the only server: Append and Last fail with
// ErrUnavailable within AppendTimeout; once the server is back on the
// same port and store, Append works again and a Read that ran throughout
// delivers every record once, in order.
func TestConnectionLoss(t *testing.T) {
	s := natstest.RunServer(t, nil)
	o := Options{Stream: "LOSS", Replicas: 1, AppendTimeout: time.Second, Logger: testLogger(t)}
	l := openLog(t, []string{s.ClientURL()}, o)
	ctx := context.Background()
	got := make(chan entry, 10)
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	go l.Read(rctx, 0, func(pos uint64, rec []byte) error {
		got <- entry{pos, string(rec)}
		return nil
	})
	if _, err := l.Append(ctx, []byte("a")); err != nil {
		t.Fatal(err)
	}

	s.Shutdown()
	start := time.Now()
	_, err := l.Append(ctx, []byte("b"))
	if !errors.Is(err, sharedlog.ErrUnavailable) {
		t.Fatalf("Append without a server: %v; want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Append took %v to fail with AppendTimeout 1s", d)
	}
	if _, err := l.Last(ctx); !errors.Is(err, sharedlog.ErrUnavailable) {
		t.Fatalf("Last without a server: %v; want ErrUnavailable", err)
	}

	s.Restart()
	start = time.Now()
	var pos uint64
	for {
		pos, err = l.Append(ctx, []byte("c"))
		if err == nil {
			break
		}
		if !errors.Is(err, sharedlog.ErrUnavailable) || time.Since(start) > 15*time.Second {
			t.Fatalf("Append after the server came back: %v", err)
		}
	}
	t.Logf("Append works %v after the restart", time.Since(start).Round(time.Millisecond))
	if pos != 2 {
		t.Fatalf("c at position %d, want 2", pos)
	}
	for i, want := range []entry{{1, "a"}, {2, "c"}} {
		select {
		case e := <-got:
			if e != want {
				t.Fatalf("Read delivered %v as record %d, want %v", e, i, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("Read delivered no record %d", i)
		}
	}
	t.Logf("the Read that ran throughout delivered c %v after the restart", time.Since(start).Round(time.Millisecond))
}

// testLogger logs to the test's log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// TestSlowReader blocks Read's callback for longer than two of the
// consumer's heartbeats, which the client may take for a lost consumer
// and replace: the records still come once each, in order.
func TestSlowReader(t *testing.T) {
	s := natstest.RunServer(t, nil)
	l := openLog(t, []string{s.ClientURL()}, Options{Stream: "SLOW", Replicas: 1, Logger: testLogger(t)})
	ctx := context.Background()
	for i := range 600 { // more than one pull batch
		if _, err := l.Append(ctx, fmt.Appendf(nil, "r%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var got []entry
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := l.Read(rctx, 0, func(pos uint64, rec []byte) error {
		got = append(got, entry{pos, string(rec)})
		if pos == 2 {
			time.Sleep(2*readHeartbeat + 500*time.Millisecond)
		}
		if len(got) == 600 {
			return errEnough
		}
		return nil
	})
	if !errors.Is(err, errEnough) {
		t.Fatalf("Read: %v after %d records", err, len(got))
	}
	checkContiguous(t, 0, got)
}
