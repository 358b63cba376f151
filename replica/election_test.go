package replica_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/internal/natstest"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/replica"
)

// TestConsistentReadsThroughElection kills the node leading the stream
// while a replica with ConsistentReads records events and reads its
// summaries from four goroutines: reads in flight while the stream has
// no leader wait for the election (each has 20 s) instead of failing,
// and every read sees at least every event acknowledged before it began.
func TestConsistentReadsThroughElection(t *testing.T) {
	const stream = "ELECTION"
	c := natstest.StartCluster(t)
	ctx := context.Background()
	l, err := replica.Open(ctx, replica.Options{URLs: c.ClientURLs(), Stream: stream})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	db, err := meterdb.Open(filepath.Join(t.TempDir(), "replica.db"), &meterdb.Options{Log: l, ConsistentReads: true, NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	m, err := db.CreateMeter(ctx, meter.Params{DisplayName: "calls", EventName: "calls", Formula: meter.Count})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitStreamCurrent(stream, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	leader, err := c.StreamLeader(stream, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now().Truncate(time.Hour).Add(2 * time.Hour)
	count := func(ctx context.Context) (int64, error) {
		s, err := db.Summaries(ctx, meterdb.SummaryParams{Meter: m.ID, Customer: "cus_1", Start: end.Add(-24 * time.Hour), End: end})
		if err != nil {
			return 0, err
		}
		var n int64
		for _, x := range s {
			n += x.Count
		}
		return n, nil
	}

	var (
		mu      sync.Mutex // guards the fields below
		acked   int64
		killed  time.Time // zero until the kill
		elected time.Time // zero until a new leader is seen
		during  int       // reads that overlapped the time between the kill and the new leader
		reads   int
		longest time.Duration
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // the writer
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_, err := db.Record(ctx, event.Event{Name: "calls", Identifier: fmt.Sprintf("e%d", i), Payload: map[string]string{"stripe_customer_id": "cus_1"}})
			if err != nil {
				if !errors.Is(err, meterdb.ErrUnavailable) {
					t.Errorf("Record: %v", err)
					return
				}
				i-- // the same identifier again
				continue
			}
			mu.Lock()
			acked++
			mu.Unlock()
		}
	})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				floor, begunAfterElection := acked, !elected.IsZero()
				mu.Unlock()
				start := time.Now()
				rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				n, err := count(rctx)
				cancel()
				took := time.Since(start)
				mu.Lock()
				reads++
				longest = max(longest, took)
				if !killed.IsZero() && !begunAfterElection && time.Now().After(killed) {
					during++
				}
				mu.Unlock()
				if err != nil {
					t.Errorf("a consistent read that began %v after the kill failed after %v: %v", start.Sub(killed).Round(time.Millisecond), took.Round(time.Millisecond), err)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				if n < floor {
					t.Errorf("a consistent read counts %d events; %d were acknowledged before it began", n, floor)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	killed = time.Now()
	mu.Unlock()
	c.Kill(leader)
	for next := leader; next == leader; {
		if next, err = c.StreamLeader(stream, 30*time.Second); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("no new stream leader: %v", err)
		}
	}
	mu.Lock()
	elected = time.Now()
	mu.Unlock()
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	t.Logf("node %d killed; a new leader seen after %v; %d reads, %d of them in flight in between, the longest took %v; %d events acknowledged",
		leader, elected.Sub(killed).Round(time.Millisecond), reads, during, longest.Round(time.Millisecond), acked)
	if during == 0 {
		t.Fatal("no read was in flight while the stream had no leader")
	}
}
