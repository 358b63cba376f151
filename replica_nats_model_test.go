package meterdb_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"pgregory.net/rapid"

	"github.com/meterdb/meterdb/internal/natstest"
	"github.com/meterdb/meterdb/replica"
	"github.com/meterdb/meterdb/sharedlog"
)

// This file runs the replica model (replica_model_test.go) on a
// JetStream stream of an in-process three-node cluster, with an action
// that kills a node and one that restarts it; at most one node is down at
// once, so the stream keeps its quorum.

var natsModelKills = flag.Int("replica-model-kills", 1, "TestReplicaModelNATS: NATS nodes killed at most, over all checks "+
	"(each kill of the stream's leader costs an election; CI keeps to three node kills over all packages)")

// natsLog is one check's stream on the cluster.
type natsLog struct {
	c      *natstest.Cluster
	stream string
	nc     *nats.Conn
	js     jetstream.JetStream
	kills  *atomic.Int64 // over all checks
	down   int           // the node down, -1 when all run
}

var natsModelStreams atomic.Int64

func newNATSLog(t *rapid.T, c *natstest.Cluster, kills *atomic.Int64) *natsLog {
	nc, err := nats.Connect(strings.Join(c.ClientURLs(), ","), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &natsLog{c: c, stream: fmt.Sprintf("MODEL%d", natsModelStreams.Add(1)), nc: nc, js: js, kills: kills, down: -1}
}

func (l *natsLog) client(t *rapid.T) sharedlog.Log {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rl, err := replica.Open(ctx, replica.Options{URLs: l.c.ClientURLs(), Stream: l.stream})
	if err != nil {
		t.Fatalf("replica.Open: %v", err)
	}
	return rl
}

// truncate purges the records before pos, as the stream's age limit
// would.
func (l *natsLog) truncate(t *rapid.T, pos uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := l.js.Stream(ctx, l.stream)
	if err == nil {
		err = s.Purge(ctx, jetstream.WithPurgeSequence(pos))
	}
	if err != nil {
		t.Fatalf("purging %s before %d: %v", l.stream, pos, err)
	}
}

func (l *natsLog) last(t *rapid.T) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		s, err := l.js.Stream(ctx, l.stream)
		if err == nil {
			return s.CachedInfo().State.LastSeq
		}
		if ctx.Err() != nil {
			t.Fatalf("the last sequence of %s: %v", l.stream, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (l *natsLog) actions(*replicaMachine) map[string]func(*rapid.T) {
	return map[string]func(*rapid.T){"KillNode": l.kill, "RestartNode": l.restart}
}

// kill stops a node (the stream's leader, now and then) when all run
// and kills remain.
func (l *natsLog) kill(t *rapid.T) {
	if l.down >= 0 || l.kills.Load() >= int64(*natsModelKills) {
		t.Skip("a node is down, or no kills remain")
	}
	if err := l.c.WaitStreamCurrent(l.stream, 30*time.Second); err != nil {
		t.Fatal(err) // the quorum must hold every record before a node dies
	}
	i := rapid.IntRange(0, natstest.Size-1).Draw(t, "node")
	if rapid.Bool().Draw(t, "leader") {
		var err error
		if i, err = l.c.StreamLeader(l.stream, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	l.kills.Add(1)
	l.c.Kill(i)
	l.down = i
}

// restart starts the node down again.
func (l *natsLog) restart(t *rapid.T) {
	if l.down < 0 {
		t.Skip("every node runs")
	}
	l.c.Restart(l.down)
	l.down = -1
}

// close restarts a node left down and deletes the check's stream and
// snapshot bucket.
func (l *natsLog) close() {
	if l.down >= 0 {
		l.c.Restart(l.down)
		l.down = -1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l.js.DeleteStream(ctx, l.stream)
	l.js.DeleteObjectStore(ctx, l.stream+"_SNAPSHOTS")
	l.nc.Close()
}

// TestReplicaModelNATS checks replicas on a JetStream stream against the
// brute-force model, killing and restarting nodes of the cluster: 3
// checks with at most one node kill by default (CI keeps to three node
// kills over all packages: this one, TestConsistentReadsThroughElection
// and TestReplicaProcessesKill in cmd/meterd); RAPID_CHECKS or
// -rapid.checks and -replica-model-kills set more (see "Kill tests and
// the model on JetStream" in bench/BENCHMARKS.md for the long runs).
// -short skips it.
func TestReplicaModelNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS cluster and kills a node")
	}
	f := flag.Lookup("rapid.checks")
	if _, env := os.LookupEnv("RAPID_CHECKS"); !env && f.Value.String() == rapidDefaults[0].value {
		f.Value.Set("3")
		defer f.Value.Set(rapidDefaults[0].value)
	}
	c := natstest.StartCluster(t)
	var kills atomic.Int64
	start := time.Now()
	rapid.Check(t, func(t *rapid.T) {
		l := newNATSLog(t, c, &kills)
		s := newReplicaMachine(t, l)
		defer s.close()
		t.Repeat(s.actions())
	})
	t.Logf("%v with %d nodes killed", time.Since(start).Round(time.Millisecond), kills.Load())
}
