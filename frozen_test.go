package meterdb_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

// Days more than 37 days old freeze; when the clock goes back, an event
// dated in a frozen day is refused as too far in the past and the
// cancellation of an event of a frozen day as expired, instead of changing
// a day that is final. Summaries over the frozen day stay exact, also after
// Reopen.
func TestFrozenDaysRefuseChanges(t *testing.T) {
	for _, file := range []bool{false, true} {
		name := map[bool]string{false: "memory", true: "file"}[file]
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			t0 := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
			clock := newTestClock(t0)
			path := ""
			if file {
				path = filepath.Join(t.TempDir(), "frozen.db")
			}
			opts := &meterdb.Options{Now: clock.Now, NoFsync: true}
			db := openDB(t, path, opts)
			defer func() { db.Close() }()
			m, err := db.CreateMeter(ctx, meter.Params{DisplayName: "n", EventName: "n", Formula: meter.Sum})
			if err != nil {
				t.Fatal(err)
			}
			record := func(id string, ts time.Time, v string) error {
				_, err := db.Record(ctx, event.Event{Name: "n", Identifier: id, Timestamp: ts,
					Payload: map[string]string{"stripe_customer_id": "cus", "value": v}})
				return err
			}
			old := t0.Add(-34 * 24 * time.Hour) // accepted now; frozen once the clock is 50 days on
			if err := record("a", old, "5"); err != nil {
				t.Fatal(err)
			}
			clock.Add(50 * 24 * time.Hour)
			if err := record("b", time.Time{}, "7"); err != nil { // its prune freezes in memory
				t.Fatal(err)
			}
			if file {
				if err := meterdb.CheckpointForTest(db); err != nil { // and its checkpoint with a file
					t.Fatal(err)
				}
			}
			st := db.Stats()
			if st.FrozenDays != 1 || st.FrozenBefore.IsZero() || !st.FrozenBefore.After(old) {
				t.Fatalf("after 50 days: FrozenDays %d, FrozenBefore %v; want the day of %v frozen", st.FrozenDays, st.FrozenBefore, old)
			}
			// The clock goes back to an hour after the first event's receipt.
			clock.Set(t0.Add(time.Hour))
			err = record("c", old.Add(time.Minute), "1")
			if !errors.Is(err, event.ErrTooFarInPast) {
				t.Fatalf("an event in a frozen day after the clock went back: %v, want ErrTooFarInPast", err)
			}
			if err := db.Cancel(ctx, "n", "a"); !errors.Is(err, event.ErrCancelExpired) {
				t.Fatalf("cancelling the event of a frozen day: %v, want ErrCancelExpired", err)
			}
			check := func(when string) {
				t.Helper()
				day := old.Truncate(24 * time.Hour)
				for _, p := range []meterdb.SummaryParams{
					{Meter: m.ID, Customer: "cus", Start: day, End: day.Add(24 * time.Hour), Grouping: meterdb.GroupHour},
					{Meter: m.ID, Customer: "cus", Start: old.Truncate(time.Minute), End: old.Truncate(time.Minute).Add(time.Minute)},
					{Meter: m.ID, Customer: "cus", Start: old.Truncate(time.Minute).Add(time.Minute), End: old.Truncate(time.Minute).Add(time.Hour)},
				} {
					ss, err := db.Summaries(ctx, p)
					want := int64(5)
					if p.Start.After(old) {
						want = 0
					}
					if err != nil || len(ss) != 1 || ss[0].Count != min(want, 1) || ss[0].Value != meterdb.Int128Of(want) {
						t.Fatalf("%s: Summaries(%v, %v, %q) = %+v, %v; want one window of %d", when, p.Start, p.End, p.Grouping, ss, err, want)
					}
				}
			}
			check("frozen")
			if file {
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
				clock.Set(t0.Add(50 * 24 * time.Hour))
				db = openDB(t, path, opts)
				if st := db.Stats(); st.FrozenDays != 1 {
					t.Fatalf("after Reopen: FrozenDays %d, want 1", st.FrozenDays)
				}
				check("reopened")
			}
		})
	}
}
