package replica

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meterdb/meterdb/internal/natstest"
)

// allKills runs the node-kill tests that CI leaves out (see
// TestClusterLeaderKill).
var allKills = flag.Bool("nats-all-kills", false, "run every node-kill test, not only the three CI runs")

func TestMain(m *testing.M) {
	code := m.Run()
	natstest.Cleanup()
	os.Exit(code)
}

// openLog opens a Log on urls and closes it when the test ends.
func openLog(t testing.TB, urls []string, o Options) *Log {
	t.Helper()
	o.URLs = urls
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := Open(ctx, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// rawJS connects to urls with a plain client, for what the tests do to
// the stream behind the Log's back.
func rawJS(t testing.TB, urls []string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1))
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

type entry struct {
	pos uint64
	rec string
}

var errEnough = errors.New("enough records")

// readN reads n records after after, failing the test on any other end.
func readN(t testing.TB, l *Log, after uint64, n int) []entry {
	t.Helper()
	got, err := readUpTo(l, after, n, 30*time.Second)
	if err != nil {
		t.Fatalf("Read after %d: %v (got %d of %d records)", after, err, len(got), n)
	}
	return got
}

// readUpTo reads up to n records after after; it returns a nil error
// when it got them.
func readUpTo(l *Log, after uint64, n int, timeout time.Duration) ([]entry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var got []entry
	if n == 0 {
		return nil, nil
	}
	err := l.Read(ctx, after, func(pos uint64, rec []byte) error {
		got = append(got, entry{pos, string(rec)})
		if len(got) == n {
			return errEnough
		}
		return nil
	})
	if errors.Is(err, errEnough) {
		err = nil
	}
	return got, err
}

// checkContiguous checks that got holds positions after+1, after+2, ...
// and no record twice.
func checkContiguous(t testing.TB, after uint64, got []entry) {
	t.Helper()
	seen := make(map[string]uint64, len(got))
	for i, e := range got {
		if e.pos != after+1+uint64(i) {
			t.Fatalf("record %d has position %d, want %d", i, e.pos, after+1+uint64(i))
		}
		if p, dup := seen[e.rec]; dup {
			t.Fatalf("record %q at positions %d and %d", e.rec, p, e.pos)
		}
		seen[e.rec] = e.pos
	}
}

// load is what runLoad's writers were acknowledged, and when.
type load struct {
	done chan struct{} // closed when the writers stopped

	mu     sync.Mutex // guards the fields below
	acked  map[string]uint64
	times  []time.Time // of every acknowledgement, in no order
	failed []error
}

// runLoad appends unique records from writers goroutines on each of logs
// until stop is closed.
func runLoad(logs []*Log, writers int, stop <-chan struct{}) *load {
	ld := &load{acked: make(map[string]uint64), done: make(chan struct{})}
	var wg sync.WaitGroup
	for li, l := range logs {
		for w := range writers {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					rec := fmt.Sprintf("log%d-w%d-%d", li, w, i)
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					pos, err := l.Append(ctx, []byte(rec))
					cancel()
					ld.mu.Lock()
					if err != nil {
						ld.failed = append(ld.failed, err)
					} else {
						ld.acked[rec] = pos
						ld.times = append(ld.times, time.Now())
					}
					ld.mu.Unlock()
					if err != nil {
						time.Sleep(10 * time.Millisecond)
					}
				}
			})
		}
	}
	go func() { wg.Wait(); close(ld.done) }()
	return ld
}

// wait waits until the writers stopped.
func (ld *load) wait() { <-ld.done }

// longestGap returns the longest time between two acknowledgements within
// [from, to].
func (ld *load) longestGap(from, to time.Time) time.Duration {
	ld.mu.Lock()
	ts := append([]time.Time{from, to}, ld.times...)
	ld.mu.Unlock()
	var in []time.Time
	for _, t := range ts {
		if !t.Before(from) && !t.After(to) {
			in = append(in, t)
		}
	}
	slicesSortTimes(in)
	var gap time.Duration
	for i := 1; i < len(in); i++ {
		gap = max(gap, in[i].Sub(in[i-1]))
	}
	return gap
}

// verify reads the whole log through reader and checks that it is
// contiguous, holds no record twice, and holds every acknowledged record
// at its acknowledged position.
func (ld *load) verify(t testing.TB, reader *Log) (records int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	last, err := reader.Last(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := readN(t, reader, 0, int(last))
	checkContiguous(t, 0, got)
	at := make(map[string]uint64, len(got))
	for _, e := range got {
		at[e.rec] = e.pos
	}
	ld.mu.Lock()
	defer ld.mu.Unlock()
	for rec, pos := range ld.acked {
		if at[rec] != pos {
			t.Errorf("acknowledged record %q at position %d is at %d in the log (0: missing)", rec, pos, at[rec])
		}
	}
	return len(got)
}

func slicesSortTimes(ts []time.Time) {
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
}
