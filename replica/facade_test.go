package replica_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/internal/natstest"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/replica"
)

// TestThreeReplicas opens three databases, each through its own Log on
// another node of a three-node cluster: a meter created on one is used on
// another, an event recorded on one is a duplicate on the others, a batch
// recorded on each counts once everywhere, and the summaries agree.
func TestThreeReplicas(t *testing.T) {
	c := natstest.StartCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	var dbs []*meterdb.DB
	for i := range 3 {
		l, err := replica.Open(ctx, replica.Options{URLs: c.ClientURLs()[i : i+1], Stream: "E2E"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() }) // after the database's Close: cleanups run last first
		db, err := meterdb.Open(filepath.Join(dir, fmt.Sprintf("replica%d.db", i)), &meterdb.Options{Log: l, ConsistentReads: true, NoFsync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs = append(dbs, db)
	}
	m, err := dbs[0].CreateMeter(ctx, meter.Params{DisplayName: "API calls", EventName: "calls", Formula: meter.Sum})
	if err != nil {
		t.Fatal(err)
	}
	ev := func(id string, v int) event.Event {
		return event.Event{Name: "calls", Identifier: id, Payload: map[string]string{"stripe_customer_id": "cus_1", "value": fmt.Sprint(v)}}
	}
	if _, err := dbs[1].Record(ctx, ev("e1", 7)); err != nil {
		t.Fatalf("Record on replica 1 with the meter created on replica 0: %v", err)
	}
	for _, i := range []int{0, 2} {
		if _, err := dbs[i].Record(ctx, ev("e1", 7)); !errors.Is(err, event.ErrDuplicate) {
			t.Fatalf("e1 again on replica %d: %v, want a duplicate", i, err)
		}
	}
	// Each replica records 100 new events and 100 that another records.
	for i, db := range dbs {
		var evs []event.Event
		for j := range 200 {
			evs = append(evs, ev(fmt.Sprintf("b%d", (100*i+j)%300), 1))
		}
		if _, err := db.RecordBatch(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	end := time.Now().Truncate(time.Hour).Add(2 * time.Hour)
	for i, db := range dbs {
		got, err := db.Summaries(ctx, meterdb.SummaryParams{Meter: m.ID, Customer: "cus_1", Start: end.Add(-48 * time.Hour), End: end})
		if err != nil {
			t.Fatal(err)
		}
		var count int64
		var sum string
		for _, s := range got {
			count += s.Count
			sum = s.Value.String()
		}
		if count != 301 || len(got) != 1 || sum != "307" {
			t.Errorf("replica %d: %d events in %d windows, value %s; want 301 events, value 307", i, count, len(got), sum)
		}
	}
}

// BenchmarkThreeReplicas records batches of 1,000 events on each of three
// replicas (one Log each, on another node of a three-node R3 cluster) at
// once, and reports the events per second acknowledged and the time from
// a batch's acknowledgement on one replica until the others applied it.
func BenchmarkThreeReplicas(b *testing.B) {
	c := natstest.StartCluster(b)
	ctx := context.Background()
	run := 0
	b.Run("replicas=3/batch=1000", func(b *testing.B) {
		run++
		dir := b.TempDir()
		var dbs []*meterdb.DB
		for i := range 3 {
			l, err := replica.Open(ctx, replica.Options{URLs: c.ClientURLs()[i : i+1], Stream: fmt.Sprintf("BENCH%d", run)})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { l.Close() })
			db, err := meterdb.Open(filepath.Join(dir, fmt.Sprintf("replica%d.db", i)), &meterdb.Options{Log: l, NoFsync: true})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			dbs = append(dbs, db)
		}
		if _, err := dbs[0].CreateMeter(ctx, meter.Params{DisplayName: "calls", EventName: "calls", Formula: meter.Sum}); err != nil {
			b.Fatal(err)
		}
		for _, db := range dbs {
			if err := db.WaitApplied(ctx); err != nil {
				b.Fatal(err)
			}
		}
		// b.N batches, spread over the replicas; inputs made first.
		batches := make([][]event.Event, b.N)
		for n := range batches {
			evs := make([]event.Event, 1000)
			for j := range evs {
				evs[j] = event.Event{Name: "calls", Identifier: fmt.Sprintf("r%d-b%d-e%d", run, n, j),
					Payload: map[string]string{"stripe_customer_id": fmt.Sprintf("cus_%d", j%100), "value": "1"}}
			}
			batches[n] = evs
		}
		var lags []time.Duration
		var mu sync.Mutex
		b.ResetTimer()
		var wg sync.WaitGroup
		for i, db := range dbs {
			wg.Go(func() {
				for n := i; n < b.N; n += len(dbs) {
					errs, err := db.RecordBatch(ctx, batches[n])
					if err != nil {
						b.Error(err)
						return
					}
					for _, e := range errs {
						if e != nil {
							b.Error(e)
							return
						}
					}
					if n%10 == i { // sample: how long until the others applied it
						acked := time.Now()
						st := db.Stats().Replica
						for _, other := range dbs {
							for other.Stats().Replica.Applied < st.Applied {
								time.Sleep(100 * time.Microsecond)
							}
						}
						mu.Lock()
						lags = append(lags, time.Since(acked))
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		for i, db := range dbs {
			if err := db.WaitApplied(ctx); err != nil {
				b.Fatal(err)
			}
			if st := db.Stats(); st.EventsAccepted != int64(1000*b.N) {
				b.Fatalf("replica %d accepted %d events, want %d", i, st.EventsAccepted, 1000*b.N)
			}
		}
		b.ReportMetric(float64(1000*b.N)/b.Elapsed().Seconds(), "events/s")
		if len(lags) > 0 {
			slices.Sort(lags)
			b.ReportMetric(float64(lags[len(lags)/2].Microseconds())/1e3, "lag-p50-ms")
			b.ReportMetric(float64(lags[len(lags)*99/100].Microseconds())/1e3, "lag-p99-ms")
		}
	})
}

// BenchmarkBootstrap records events=N events (batches of 1,000, 100
// customers) on one replica with a file, has it write a snapshot, and then
// measures a fresh replica (a new file) opening on the log: it loads the
// snapshot from the object store and applies the log after it.
func BenchmarkBootstrap(b *testing.B) {
	for _, n := range []int{1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			c := natstest.StartCluster(b)
			ctx := context.Background()
			dir := b.TempDir()
			open := func(name string) *meterdb.DB {
				l, err := replica.Open(ctx, replica.Options{URLs: c.ClientURLs(), Stream: "BOOT"})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { l.Close() })
				db, err := meterdb.Open(filepath.Join(dir, name), &meterdb.Options{Log: l, NoFsync: true})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { db.Close() })
				return db
			}
			src := open("source.db")
			m, err := src.CreateMeter(ctx, meter.Params{DisplayName: "calls", EventName: "calls", Formula: meter.Sum})
			if err != nil {
				b.Fatal(err)
			}
			for k := 0; k < n; k += 1000 {
				evs := make([]event.Event, 1000)
				for j := range evs {
					evs[j] = event.Event{Name: "calls", Identifier: fmt.Sprintf("e%d", k+j),
						Payload: map[string]string{"stripe_customer_id": fmt.Sprintf("cus_%d", j%100), "value": "1"}}
				}
				if _, err := src.RecordBatch(ctx, evs); err != nil {
					b.Fatal(err)
				}
			}
			pos, err := src.Snapshot(ctx)
			if err != nil {
				b.Fatal(err)
			}
			l, err := replica.Open(ctx, replica.Options{URLs: c.ClientURLs(), Stream: "BOOT"})
			if err != nil {
				b.Fatal(err)
			}
			info, err := l.SnapshotInfo(ctx)
			l.Close()
			if err != nil || info.Pos != pos {
				b.Fatalf("snapshot %+v, %v; want position %d", info, err, pos)
			}
			end := time.Now().Truncate(time.Hour).Add(2 * time.Hour)
			b.ResetTimer()
			for i := range b.N {
				fresh := open(fmt.Sprintf("fresh%d.db", i))
				if err := fresh.WaitApplied(ctx); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				var total int64
				for cus := range 100 {
					got, err := fresh.Summaries(ctx, meterdb.SummaryParams{Meter: m.ID, Customer: fmt.Sprintf("cus_%d", cus), Start: end.Add(-48 * time.Hour), End: end})
					if err != nil {
						b.Fatal(err)
					}
					for _, s := range got {
						total += s.Count
					}
				}
				if total != int64(n) {
					b.Fatalf("the fresh replica counts %d events, want %d", total, n)
				}
				fresh.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(info.Size)/1e6, "snapshot-MB")
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/bootstrap")
		})
	}
}
