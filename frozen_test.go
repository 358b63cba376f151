package meterdb_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/store"
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
			db, m := openWithSumMeter(t, path, opts)
			defer func() { db.Close() }()
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
			err := record("c", old.Add(time.Minute), "1")
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

// v3History is testdata/v3-history.json (see testdata/README.md).
type v3History struct {
	Now     int64
	Events  int
	Queries []struct {
		Meter, Customer string
		Start, End      int64
		Grouping        string
		Want            []string
	}
}

// A file of the previous format with 100 days of history, upgraded: Open
// freezes the history it loads and stores its complete blocks, so that
// memory keeps only their day cells; every summary is what the previous
// code answered, after the upgrade and after a second Open, which reads
// the stored blocks and only the aggregate records after them.
func TestUpgradeV3History(t *testing.T) {
	raw, err := os.ReadFile("testdata/v3-history.json")
	if err != nil {
		t.Fatal(err)
	}
	var h v3History
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	path := copyFixture(t, "testdata/v3-history.db")
	ctx := context.Background()
	clock := newTestClock(time.Unix(h.Now, 0))
	var logs logRecorder
	// A cache too small for any block: every read of a block goes to the file.
	opts := &meterdb.Options{Now: clock.Now, NoFsync: true, Logger: slog.New(&logs), HistoryCacheBytes: 1}
	check := func(db *meterdb.DB, when string) {
		t.Helper()
		ids := map[string]string{}
		ms, _, err := db.ListMeters(ctx, meter.ListParams{Limit: 10})
		if err != nil || len(ms) != 3 {
			t.Fatalf("%s: %d meters, %v", when, len(ms), err)
		}
		for _, m := range ms {
			ids[strings.TrimPrefix(m.EventName, "h_")] = m.ID
		}
		for _, q := range h.Queries {
			ss, err := db.Summaries(ctx, meterdb.SummaryParams{Meter: ids[q.Meter], Customer: q.Customer,
				Start: time.Unix(q.Start, 0), End: time.Unix(q.End, 0), Grouping: meterdb.Grouping(q.Grouping)})
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			var got []string
			for _, s := range ss {
				got = append(got, fmt.Sprintf("%d:%d:%s", s.Start.Unix(), s.Count, s.Value))
			}
			if !slices.Equal(got, q.Want) {
				t.Fatalf("%s: Summaries(%s, %s, [%d, %d), %q) =\n%v\nwant\n%v", when, q.Meter, q.Customer, q.Start, q.End, q.Grouping, got, q.Want)
			}
		}
	}
	db := openDB(t, path, opts)
	st := db.Stats()
	// 100 days from 2026-01-01 (20 days into a 32-day block span): the
	// days before the horizon, about day 62, fill the blocks of days
	// 26-57 and of days -6 to 25, for 6 series.
	if st.FrozenStoredBlocks != 12 {
		t.Fatalf("after the upgrade: %d stored blocks, want 12 (%+v)", st.FrozenStoredBlocks, st)
	}
	check(db, "upgraded")
	firstLoad := logs.int("meterdb opened", "aggregate_records")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, path, opts)
	defer func() { db.Close() }()
	if st2 := db.Stats(); st2.FrozenStoredBlocks != 12 || st2.FrozenDays != st.FrozenDays || st2.HourBuckets != st.HourBuckets ||
		st2.MinuteCells != st.MinuteCells || st2.DayBuckets != st.DayBuckets || st2.FrozenBytes > st.FrozenBytes {
		t.Fatalf("after a second Open: %+v\nwant as after the upgrade: %+v", st2, st)
	}
	check(db, "reopened")
	// The second Open read the blocks, not the hour records they cover.
	if blocks, recs := logs.int("meterdb opened", "frozen_blocks"), logs.int("meterdb opened", "aggregate_records"); blocks != 12 || recs*2 > firstLoad {
		t.Fatalf("second Open: %d blocks and %d aggregate records read; the first read %d records", blocks, recs, firstLoad)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if r, err := meterdb.Verify(path, nil); err != nil || r.FrozenBlocks != 12 {
		t.Fatalf("Verify: %v, %d frozen blocks compared, want 12\n%s", err, r.FrozenBlocks, r.String())
	}
	// A stored block that does not hold what its days' records do (a
	// block of another customer, under a valid checksum) is a problem
	// Verify reports.
	sdb, err := store.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var bs []store.FrozenBlock
	if err := sdb.LoadFrozen(func(b *store.FrozenBlock) error {
		bs = append(bs, store.FrozenBlock{Meter: b.Meter, Customer: b.Customer, First: b.First, Data: slices.Clone(b.Data)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	swapped := bs[0]
	for _, b := range bs {
		if b.Meter == swapped.Meter && b.First == swapped.First && b.Customer != swapped.Customer {
			swapped.Data = b.Data
		}
	}
	if err := sdb.PutFrozen([]store.FrozenBlock{swapped}, 0); err != nil {
		t.Fatal(err)
	}
	if err := sdb.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := meterdb.Verify(path, nil)
	if !errors.Is(err, store.ErrCorrupt) || len(r.Problems) != 2 || !strings.Contains(r.Problems[0], "frozen block of meter") || !strings.Contains(r.Problems[1], "frozen block of meter") {
		t.Fatalf("Verify of a file with a wrong block: %v\n%s", err, r.String())
	}
}

// logRecorder is a slog.Handler that keeps every record.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// int returns the integer attribute key of the last record with message
// msg, or -1.
func (l *logRecorder) int(msg, key string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.recs) - 1; i >= 0; i-- {
		if l.recs[i].Message != msg {
			continue
		}
		v := int64(-1)
		l.recs[i].Attrs(func(a slog.Attr) bool {
			if a.Key == key {
				v = a.Value.Int64()
				return false
			}
			return true
		})
		return v
	}
	return -1
}

// Days before the stored blocks' mark stay final after a restart with the
// clock gone back: an event dated in one is refused as too far in the
// past, for a customer whose block holds that day (Apply would otherwise
// reach a frozen day) and for one without any block there (its record
// would otherwise lie before the mark, which the next Open does not read).
func TestClockBackAfterStoredBlocks(t *testing.T) {
	for _, cus := range []string{"cus", "other"} {
		t.Run(cus, func(t *testing.T) {
			ctx := context.Background()
			t0 := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
			clock := newTestClock(t0)
			path := filepath.Join(t.TempDir(), "f.db")
			opts := &meterdb.Options{Now: clock.Now, NoFsync: true}
			db, m := openWithSumMeter(t, path, opts)
			defer func() { db.Close() }()
			record := func(id, cus string, ts time.Time) error {
				_, err := db.Record(ctx, event.Event{Name: "n", Identifier: id, Timestamp: ts,
					Payload: map[string]string{"stripe_customer_id": cus, "value": "3"}})
				return err
			}
			old := t0.Add(-34 * 24 * time.Hour) // 2026-02-04: its block (spans of 32 days) ends 2026-02-28
			if err := record("a", "cus", old); err != nil {
				t.Fatal(err)
			}
			clock.Add(50 * 24 * time.Hour)
			if err := record("b", "cus", time.Time{}); err != nil {
				t.Fatal(err)
			}
			if err := meterdb.CheckpointForTest(db); err != nil {
				t.Fatal(err)
			}
			if st := db.Stats(); st.FrozenStoredBlocks != 1 {
				t.Fatalf("stored blocks: %d, want 1", st.FrozenStoredBlocks)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			clock.Set(t0.Add(time.Hour)) // back by 50 days: 2026-02-10 is within 35 days again
			db = openDB(t, path, opts)
			ts := time.Date(2026, 2, 10, 12, 0, 0, 0, time.UTC)
			if err := record("c", cus, ts); !errors.Is(err, event.ErrTooFarInPast) {
				t.Fatalf("an event of a day before the stored blocks' mark after the clock went back: %v, want ErrTooFarInPast", err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db = openDB(t, path, opts)
			day := old.Truncate(24 * time.Hour)
			ss, err := db.Summaries(ctx, meterdb.SummaryParams{Meter: m.ID, Customer: "cus", Start: day, End: day.Add(24 * time.Hour), Grouping: meterdb.GroupHour})
			if err != nil || len(ss) != 1 || ss[0].Value != meterdb.Int128Of(3) {
				t.Fatalf("the stored day after two Opens: %+v, %v", ss, err)
			}
		})
	}
}

// openWithSumMeter opens the database at path and creates a sum meter
// recording events named "n".
func openWithSumMeter(t *testing.T, path string, opts *meterdb.Options) (*meterdb.DB, meter.Meter) {
	t.Helper()
	db := openDB(t, path, opts)
	m, err := db.CreateMeter(context.Background(), meter.Params{DisplayName: "n", EventName: "n", Formula: meter.Sum})
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	return db, m
}
