package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

// durableEvents builds n events of a sum meter over 1,000 customers, with
// unique identifiers, before any timer starts.
func durableEvents(n int, prefix string) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = event.Event{
			Name:       "durable_usage",
			Identifier: prefix + strconv.Itoa(i),
			Payload: map[string]string{
				"stripe_customer_id": "cus_" + strconv.Itoa(i%1000),
				"value":              strconv.Itoa(1 + i%9),
			},
		}
	}
	return evs
}

func durableOpen(b *testing.B, path string, o *meterdb.Options) (*meterdb.DB, meter.Meter) {
	b.Helper()
	db, err := meterdb.Open(path, o)
	if err != nil {
		b.Fatal(err)
	}
	m, err := db.CreateMeter(context.Background(), meter.Params{DisplayName: "usage", EventName: "durable_usage", Formula: meter.Sum})
	if err != nil {
		b.Fatal(err)
	}
	return db, m
}

// durableTotal returns the event count of every customer together.
func durableTotal(b *testing.B, db *meterdb.DB, m meter.Meter) int64 {
	b.Helper()
	now := time.Now().UTC().Truncate(time.Hour)
	var n int64
	for c := range 1000 {
		s, err := db.Summaries(context.Background(), meterdb.SummaryParams{
			Meter: m.ID, Customer: "cus_" + strconv.Itoa(c), Start: now.Add(-24 * time.Hour), End: now.Add(2 * time.Hour),
		})
		if err != nil {
			b.Fatal(err)
		}
		n += s[0].Count
	}
	return n
}

// BenchmarkDurableIngest measures ingest into a file with fsync before
// every acknowledgement (DurabilitySync), from concurrent writers, each
// calling RecordBatch with batch events (Record when batch=1). One op is
// one event. B/event on disk is the file size after Close over the events.
//
//	go test -run '^$' -bench DurableIngest -benchtime 200000x ./bench
func BenchmarkDurableIngest(b *testing.B) {
	for _, batch := range []int{1, 100, 10_000} {
		for _, writers := range []int{1, 4, 16, 64} {
			b.Run(fmt.Sprintf("batch=%d/writers=%d", batch, writers), func(b *testing.B) {
				path := filepath.Join(b.TempDir(), "bench.db")
				db, m := durableOpen(b, path, nil)
				evs := durableEvents(b.N, "e")
				ctx := context.Background()
				var wg sync.WaitGroup
				chunks := make(chan []event.Event, len(evs)/batch+1)
				for i := 0; i < len(evs); i += batch {
					chunks <- evs[i:min(i+batch, len(evs))]
				}
				close(chunks)
				b.ResetTimer()
				for range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for c := range chunks {
							errs, err := db.RecordBatch(ctx, c)
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
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
				if got := durableTotal(b, db, m); got != int64(b.N) {
					b.Fatalf("counted %d events, recorded %d", got, b.N)
				}
				if err := db.Close(); err != nil {
					b.Fatal(err)
				}
				fi, err := os.Stat(path)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(fi.Size())/float64(b.N), "disk-B/event")
			})
		}
	}
}

// BenchmarkOpen measures Open of a file holding events=N accepted events
// (all within the dedupe window, so every identifier is indexed again):
// closed cleanly (state=checkpointed), or as a killed process leaves it
// with no checkpoint since the first event (state=replay).
//
//	go test -run '^$' -bench Open -benchtime 3x ./bench
func BenchmarkOpen(b *testing.B) {
	for _, n := range []int{1_000_000, 10_000_000} {
		for _, mode := range []string{"checkpointed", "replay"} {
			b.Run(fmt.Sprintf("events=%d/state=%s", n, mode), func(b *testing.B) {
				if testing.Short() && n > 1_000_000 {
					b.Skip("large file")
				}
				dir := b.TempDir()
				path := filepath.Join(dir, "open.db")
				db, m := durableOpen(b, path, &meterdb.Options{NoFsync: true, CheckpointInterval: 24 * time.Hour})
				ctx := context.Background()
				const batch = 10_000
				for i := 0; i < n; i += batch {
					evs := durableEvents(batch, "o"+strconv.Itoa(i)+"-")
					if _, err := db.RecordBatch(ctx, evs); err != nil {
						b.Fatal(err)
					}
				}
				// A copy of the idle, synced file is what a killed process
				// leaves: no checkpoint, the whole log to replay.
				if err := db.Sync(); err != nil {
					b.Fatal(err)
				}
				crashed, err := os.ReadFile(path)
				if err != nil {
					b.Fatal(err)
				}
				if err := db.Close(); err != nil {
					b.Fatal(err)
				}
				fi, _ := os.Stat(path)
				b.ReportMetric(float64(fi.Size())/float64(n), "disk-B/event")
				b.ResetTimer()
				for i := range b.N {
					p := path
					if mode == "replay" {
						b.StopTimer()
						p = filepath.Join(dir, "crashed"+strconv.Itoa(i)+".db")
						if err := os.WriteFile(p, crashed, 0o600); err != nil {
							b.Fatal(err)
						}
						b.StartTimer()
					}
					db, err := meterdb.Open(p, nil)
					if err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					if got := durableTotal(b, db, m); got != int64(n) {
						b.Fatalf("counted %d events after open, recorded %d", got, n)
					}
					db.Close()
					if mode == "replay" {
						os.Remove(p)
					}
					b.StartTimer()
				}
				b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/open")
				// Every event's identifier is within the dedupe window: the
				// index holds n of them after each Open.
				b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "identifiers/s")
			})
		}
	}
}
