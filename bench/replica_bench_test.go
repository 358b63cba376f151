package main

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/internal/sharedlogtest"
	"github.com/meterdb/meterdb/meter"
)

// BenchmarkReplicatedIngest measures the core's cost of the replicated
// write path: in-memory replicas sharing an in-process log (no network,
// no replication), one writer per replica recording batches of 1,000
// typed events, timed until every replica applied every event. One op is
// one event. replicas=1 against BenchmarkIngest shows the cost of going
// through records and the applier; replicas=3 adds that every replica
// applies every writer's events.
func BenchmarkReplicatedIngest(b *testing.B) {
	for _, replicas := range []int{1, 3} {
		b.Run(fmt.Sprintf("replicas=%d/batch=1000/customers=1e3", replicas), func(b *testing.B) {
			benchReplicated(b, replicas, 1000, 1000)
		})
	}
}

func benchReplicated(b *testing.B, replicas, batch, customers int) {
	ctx := context.Background()
	shared := sharedlogtest.New()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	dbs := make([]*meterdb.DB, replicas)
	for i := range dbs {
		db, err := meterdb.Open("", &meterdb.Options{Log: shared.Client(), Now: clock})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		dbs[i] = db
	}
	m, err := dbs[0].CreateMeter(ctx, meter.Params{DisplayName: "calls", EventName: "calls", Formula: meter.Sum})
	if err != nil {
		b.Fatal(err)
	}
	for _, db := range dbs {
		if err := db.WaitApplied(ctx); err != nil {
			b.Fatal(err)
		}
	}
	// Every writer's batches, built before the timer.
	n := (b.N + batch*replicas - 1) / (batch * replicas) * batch * replicas
	us := make([]event.Usage, n)
	for i := range us {
		us[i] = event.Usage{Name: "calls", Customer: fmt.Sprint("cus_", i%customers), Value: int64(i % 7),
			Identifier: fmt.Sprint("ev", i), Timestamp: now.Add(-time.Duration(i%3600) * time.Second)}
	}
	var want int64
	for i := range us {
		want += us[i].Value
	}
	b.ResetTimer()
	var wg sync.WaitGroup
	per := n / replicas
	for w, db := range dbs {
		wg.Go(func() {
			mine := us[w*per : (w+1)*per]
			for len(mine) > 0 {
				errs, err := db.RecordUsage(ctx, mine[:batch])
				if err != nil {
					b.Error(err)
					return
				}
				for _, err := range errs {
					if err != nil {
						b.Error(err)
						return
					}
				}
				mine = mine[batch:]
			}
		})
	}
	wg.Wait()
	for _, db := range dbs {
		if err := db.WaitApplied(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	for i, db := range dbs {
		var got int64
		var count int64
		for c := range customers {
			s, err := db.Summaries(ctx, meterdb.SummaryParams{Meter: m.ID, Customer: fmt.Sprint("cus_", c),
				Start: now.Add(-2 * time.Hour).Truncate(time.Hour), End: now.Add(time.Hour).Truncate(time.Hour)})
			if err != nil {
				b.Fatal(err)
			}
			v, _ := s[0].Value.Int64()
			count, got = count+s[0].Count, got+v
		}
		if count != int64(n) || got != want {
			b.Fatalf("replica %d: %d events of sum %d, want %d and %d", i, count, got, n, want)
		}
	}
}
