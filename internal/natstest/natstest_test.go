package natstest

import (
	"context"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// allKills runs the node kills of this package's tests too: CI keeps to
// three node kills over all packages (each costs seconds), made by the
// replica and meterd tests, so these tests start clusters only.
var allKills = flag.Bool("nats-all-kills", false, "also kill and restart a follower in TestCluster and TestProcessCluster")

func TestMain(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

// TestCluster starts an in-process cluster, stops a follower of an R3
// stream, publishes and restarts the follower; the stream's replicas
// become current again. (The replica package stops stream leaders.)
func TestCluster(t *testing.T) {
	start := time.Now()
	c := StartCluster(t)
	t.Logf("in-process cluster has a meta leader after %v", time.Since(start))
	killFollower(t, c)
}

// TestProcessCluster starts nats-server processes, SIGKILLs a follower
// of an R3 stream and restarts it; the stream's replicas become current
// again. (The replica package kills a stream leader process.)
func TestProcessCluster(t *testing.T) {
	start := time.Now()
	c := StartProcessCluster(t)
	t.Logf("process cluster (build included) has a meta leader after %v", time.Since(start))
	if c.Pid(0) == 0 {
		t.Fatal("node 0 has no process")
	}
	killFollower(t, c)
}

// killFollower stops a follower of a new R3 stream, publishes, restarts
// the follower and waits for the stream's replicas to be current.
func killFollower(t *testing.T, c *Cluster) {
	if !*allKills {
		t.Log("follower kill skipped: it runs with -nats-all-kills")
		return
	}
	js := connect(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	leader, err := c.StreamLeader("T", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	follower := (leader + 1) % Size
	pid := c.Pid(follower)
	c.Kill(follower)
	if c.Pid(follower) != 0 {
		t.Fatalf("node %d still has a process after Kill", follower)
	}
	if _, err := js.Publish(ctx, "t", []byte("one")); err != nil {
		t.Fatal(err)
	}
	c.Restart(follower)
	if p := c.Pid(follower); pid != 0 && (p == 0 || p == pid) {
		t.Fatalf("node %d: pid %d after restart, %d before", follower, p, pid)
	}
	if err := c.WaitStreamCurrent("T", 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

func connect(t *testing.T, c *Cluster) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(strings.Join(c.ClientURLs(), ","), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
