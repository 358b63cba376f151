package replica

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/meterdb/meterdb/internal/natstest"
)

// benchServers starts one server (servers=1, R1 streams) or a
// three-node cluster (servers=3, R3 streams).
func benchServers(b *testing.B, servers int) []string {
	if servers == 1 {
		return []string{natstest.RunServer(b, nil).ClientURL()}
	}
	return natstest.StartCluster(b).ClientURLs()
}

// BenchmarkAppend measures acknowledged Appends from 16 goroutines on
// one Log: a record of 100 B stands for one event, one of 64 KiB for a
// batch of about 1,000.
func BenchmarkAppend(b *testing.B) {
	for _, servers := range []int{1, 3} {
		b.Run(fmt.Sprintf("servers=%d", servers), func(b *testing.B) {
			urls := benchServers(b, servers)
			for i, size := range []int{100, 64 << 10} {
				b.Run(fmt.Sprintf("record=%dB/writers=16", size), func(b *testing.B) {
					l := openLog(b, urls, Options{Stream: fmt.Sprintf("APPEND%d_%d", i, b.N), Replicas: servers, Logger: testLogger(b)})
					rec := make([]byte, size)
					ctx := context.Background()
					b.SetParallelism(16 / max(1, runtimeProcs()))
					b.ResetTimer()
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if _, err := l.Append(ctx, rec); err != nil {
								b.Error(err)
								return
							}
						}
					})
					b.StopTimer()
					if last, err := l.Last(ctx); err != nil || last != uint64(b.N) {
						b.Fatalf("Last %d, %v; want %d", last, err, b.N)
					}
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
					b.ReportMetric(float64(b.N)*float64(size)/b.Elapsed().Seconds()/1e6, "MB/s")
				})
			}
		})
	}
}

// BenchmarkRead measures how fast a Log reads records it has not seen
// (a replica catching up), 1 KiB each.
func BenchmarkRead(b *testing.B) {
	for _, servers := range []int{1, 3} {
		b.Run(fmt.Sprintf("servers=%d", servers), func(b *testing.B) {
			urls := benchServers(b, servers)
			run := 0
			b.Run("record=1KiB", func(b *testing.B) {
				run++
				o := Options{Stream: fmt.Sprintf("READ%d", run), Replicas: servers}
				w, r := openLog(b, urls, o), openLog(b, urls, o)
				appendN(b, w, b.N, 1024)
				b.ResetTimer()
				got := readN(b, r, 0, b.N)
				b.StopTimer()
				checkContiguous(b, 0, got)
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			})
		})
	}
}

// BenchmarkTailLag measures, under a load of 16 writers appending 1 KiB
// records on one Log, the time from the start of an Append to the
// delivery of its record by Read on another Log (connected to another
// server of the cluster): how far a remote replica's input lags.
func BenchmarkTailLag(b *testing.B) {
	for _, servers := range []int{1, 3} {
		b.Run(fmt.Sprintf("servers=%d", servers), func(b *testing.B) {
			urls := benchServers(b, servers)
			run := 0
			b.Run("writers=16/record=1KiB", func(b *testing.B) {
				run++
				o := Options{Stream: fmt.Sprintf("LAG%d", run), Replicas: servers, Logger: testLogger(b)}
				w := openLog(b, urls[:1], o)
				r := openLog(b, urls[len(urls)-1:], o)
				lags := make([]time.Duration, 0, b.N)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				done := make(chan struct{})
				go func() {
					defer close(done)
					r.Read(ctx, 0, func(_ uint64, rec []byte) error {
						lags = append(lags, time.Duration(time.Now().UnixNano()-int64(binary.BigEndian.Uint64(rec))))
						if len(lags) == b.N {
							return errEnough
						}
						return nil
					})
				}()
				b.ResetTimer()
				appendN(b, w, b.N, 1024)
				<-done
				b.StopTimer()
				if len(lags) != b.N {
					b.Fatalf("read %d of %d", len(lags), b.N)
				}
				slices.Sort(lags)
				b.ReportMetric(float64(lags[len(lags)/2].Microseconds())/1e3, "p50-ms")
				b.ReportMetric(float64(lags[len(lags)*99/100].Microseconds())/1e3, "p99-ms")
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			})
		})
	}
}

// appendN appends n records of size bytes from 16 goroutines, each
// starting with the time it is sent.
func appendN(b *testing.B, l *Log, n, size int) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	left := n
	for range 16 {
		wg.Go(func() {
			rec := make([]byte, size)
			for {
				mu.Lock()
				if left == 0 {
					mu.Unlock()
					return
				}
				left--
				mu.Unlock()
				binary.BigEndian.PutUint64(rec, uint64(time.Now().UnixNano()))
				if _, err := l.Append(context.Background(), rec); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
