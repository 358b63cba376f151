package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/internal/dedupe"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/store"
)

// Open rebuilds the dedupe index from the identifier hashes of the log
// (recover.go's planned load): it must find exactly what an index fed
// every identifier of the retention window one at a time (Index.Add, as
// the replay after the checkpoint does) finds, over 40 simulated hours
// of two-hour epochs with resends inside and outside the window; and
// after the reopen every identifier of the window is refused again and
// fresh ones are taken.
func TestOpenLoadsIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "open.db")
	var clock atomic.Int64
	clock.Store(now0.Unix())
	cfg := Config{Path: path, Shards: 4, DedupeWindow: 24 * time.Hour, CancelWindow: 24 * time.Hour,
		CheckpointInterval: time.Hour, Now: func() time.Time { return time.Unix(clock.Load(), 0) },
		Logger: slog.New(slog.DiscardHandler), DedupeEpoch: 2 * time.Hour, DedupeMinEpoch: 4}
	e, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := e.CreateMeter(ctx, meter.Params{DisplayName: "calls", EventName: "calls", Formula: meter.Sum}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(13, 1))
	received := map[string]int64{} // newest acceptance of each identifier
	var ids []string
	resent, refused := 0, 0
	for hour := range 40 {
		for batch := range 6 {
			clock.Store(now0.Unix() + int64(hour*3600+batch*600))
			var us []event.Usage
			for i := range 40 {
				id := fmt.Sprintf("h%d-b%d-%d", hour, batch, i)
				us = append(us, usage(id, fmt.Sprint("c", i%7), 1))
			}
			// Resends of earlier identifiers, some inside the window, some
			// outside it.
			for range 4 {
				if len(ids) > 0 {
					us = append(us, usage(ids[rng.IntN(len(ids))], "c0", 1))
				}
			}
			errs, err := e.Record(ctx, &Batch{Usages: us})
			if err != nil {
				t.Fatal(err)
			}
			now := clock.Load()
			for i, u := range us {
				last, seen := received[u.Identifier]
				inWindow := seen && now-last < 24*3600
				switch {
				case errs[i] == nil && inWindow:
					t.Fatalf("hour %d: %s accepted again %d s after its event", hour, u.Identifier, now-last)
				case errs[i] != nil && !inWindow:
					t.Fatalf("hour %d: %s refused: %v", hour, u.Identifier, errs[i])
				case errs[i] == nil:
					if seen {
						resent++
					} else {
						ids = append(ids, u.Identifier)
					}
					received[u.Identifier] = now
				default:
					refused++
				}
			}
		}
	}
	if resent == 0 || refused == 0 {
		t.Fatalf("%d identifiers accepted again after the window, %d refused: the resends miss an edge", resent, refused)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	e, err = Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	st := e.st
	now := clock.Load()
	cutoff := now - e.retention() - 60
	// The reference: every identifier of the retention window added one at
	// a time, as the replay after a checkpoint does.
	ref := dedupe.NewWith(dedupe.Options{MinEpoch: 4})
	ref.SetEpoch(e.epochOf(now))
	locs := map[string][]uint64{}
	err = st.file.Replay(0, func(loc uint64, g *store.Group) error {
		for _, ev := range g.Events {
			if ev.Received >= cutoff {
				ref.Add(ev.Identifier, loc)
				locs[ev.Identifier] = append(locs[ev.Identifier], loc)
			}
		}
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(locs) < 24*6*40 {
		t.Fatalf("%d identifiers in the retention window, want at least %d", len(locs), 24*6*40)
	}
	if got, want := st.idx.Stats().Used, ref.Stats().Used; got != want {
		t.Fatalf("Open indexed %d identifiers, one at a time %d", got, want)
	}
	// Every candidate location each index offers that holds the
	// identifier: the same, and every location of the log that holds it.
	all := func(x *dedupe.Index, id string) []uint64 {
		var found []uint64
		_, _, err := x.Find(id, func(loc uint64) (bool, error) {
			_, ok, err := st.log.FindEvent(loc, id)
			if ok && !slices.Contains(found, loc) {
				found = append(found, loc)
			}
			return false, err
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(found)
		return found
	}
	for id, want := range locs {
		if got, byOne := all(st.idx, id), all(ref, id); !slices.Equal(got, want) || !slices.Equal(byOne, want) {
			t.Fatalf("%s at %v in the log: Open's index finds %v, one at a time %v", id, want, got, byOne)
		}
	}
	// Resend every identifier: those of the window are refused, the
	// others taken; fresh identifiers are taken.
	var us []event.Usage
	for _, id := range ids {
		us = append(us, usage(id, "c0", 1))
	}
	for i := range 500 {
		us = append(us, usage(fmt.Sprint("fresh-", i), "c0", 1))
	}
	errs, err := e.Record(ctx, &Batch{Usages: us})
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range us {
		last, seen := received[u.Identifier]
		if inWindow := seen && now-last < 24*3600; (errs[i] != nil) != inWindow {
			t.Fatalf("%s (received %d s before the reopen) after the reopen: %v", u.Identifier, now-last, errs[i])
		}
	}
}
