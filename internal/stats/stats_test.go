package stats

import (
	"slices"
	"sync"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	h := NewHistogram([]int64{1, 10, 100})
	for _, v := range []int64{-5, 0, 1, 2, 10, 11, 100, 101, 1 << 40} {
		h.Observe(v)
	}
	s := h.Snapshot()
	// (-inf,1]: -5 0 1; (1,10]: 2 10; (10,100]: 11 100; (100,+inf): 101 2^40
	if want := []uint64{3, 2, 2, 2}; !slices.Equal(s.Counts, want) {
		t.Errorf("counts %v, want %v", s.Counts, want)
	}
	if want := int64(-5 + 0 + 1 + 2 + 10 + 11 + 100 + 101 + 1<<40); s.Sum != want {
		t.Errorf("sum %d, want %d", s.Sum, want)
	}
	if s.Count() != 9 {
		t.Errorf("count %d, want 9", s.Count())
	}
	h.ObserveDuration(3 * time.Nanosecond)
	if s2 := h.Snapshot(); s2.Counts[1] != 3 || s.Counts[1] != 2 {
		t.Errorf("a snapshot shares its counts: before %v, after %v", s.Counts, s2.Counts)
	}
}

func TestHistogramBoundsChecked(t *testing.T) {
	for _, b := range [][]int64{nil, {1, 1}, {2, 1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewHistogram(%v) did not panic", b)
				}
			}()
			NewHistogram(b)
		}()
	}
	for _, b := range [][]int64{DurationBounds, SizeBounds} {
		NewHistogram(b)
	}
}

// TestConcurrent updates from many goroutines while snapshots are taken;
// run with -race.
func TestConcurrent(t *testing.T) {
	h := NewHistogram(SizeBounds)
	m := NewMeters(3)
	const workers, n = 8, 2000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				h.Snapshot()
				m.Snapshot()
			}
		}
	}()
	for w := range workers {
		wg.Go(func() {
			for i := range n {
				h.Observe(int64(i % 300))
				c := m.Get(uint64(i % 7))
				c.Accepted.Add(1)
				c.Reject(w % 3)
			}
		})
	}
	wg.Wait()
	close(stop)
	if s := h.Snapshot(); s.Count() != workers*n {
		t.Errorf("histogram counted %d, want %d", s.Count(), workers*n)
	}
	var accepted, rejected int64
	for _, s := range m.Snapshot() {
		accepted += s.Accepted
		for _, r := range s.Rejected {
			rejected += r
		}
	}
	if accepted != workers*n || rejected != workers*n {
		t.Errorf("accepted %d, rejected %d, want %d each", accepted, rejected, workers*n)
	}
}

func TestMetersSnapshot(t *testing.T) {
	m := NewMeters(2)
	if s := m.Snapshot(); len(s) != 0 {
		t.Fatalf("empty Meters: %v", s)
	}
	m.Get(5).Accepted.Add(3)
	m.Get(0).Reject(1)
	m.Get(5).Duplicate.Add(1)
	m.Get(2).Cancelled.Add(2)
	if m.Get(5) != m.Get(5) {
		t.Error("Get returned different counters for one key")
	}
	s := m.Snapshot()
	if len(s) != 3 || s[0].Key != 0 || s[1].Key != 2 || s[2].Key != 5 {
		t.Fatalf("snapshot keys: %+v", s)
	}
	if s[0].Rejected[1] != 1 || s[0].Rejected[0] != 0 || s[1].Cancelled != 2 || s[2].Accepted != 3 || s[2].Duplicate != 1 {
		t.Errorf("snapshot: %+v", s)
	}
}

func TestNoAllocations(t *testing.T) {
	h := NewHistogram(DurationBounds)
	m := NewMeters(4)
	m.Get(3)
	if n := testing.AllocsPerRun(1000, func() {
		h.Observe(12345)
		m.Get(3).Accepted.Add(1)
		m.Get(3).Reject(2)
	}); n != 0 {
		t.Errorf("%v allocations per update", n)
	}
}

func BenchmarkObserve(b *testing.B) {
	h := NewHistogram(DurationBounds)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h.Observe(1_234_567)
		}
	})
}

func BenchmarkMetersGet(b *testing.B) {
	m := NewMeters(4)
	m.Get(7)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Get(7).Accepted.Add(1)
		}
	})
}
