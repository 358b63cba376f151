package store_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/store"
)

var writeV3 = flag.Bool("write-v3-fixture", false, "write testdata/v3.db with this code (format 3) and exit")

// TestWriteV3Fixture writes testdata/v3.db through the root package at a
// fixed clock: five meters (sum, count, last, sum with an hour window, sum
// with a day window), events of three customers spread over the twenty
// days before the clock, one cancellation, two key-value records, and the
// checkpoint that Close writes. It runs only with -write-v3-fixture, and
// only with the format 3 code.
func TestWriteV3Fixture(t *testing.T) {
	if !*writeV3 {
		t.Skip("run with -write-v3-fixture to rewrite testdata/v3.db")
	}
	if store.FormatVersion != 3 {
		t.Fatalf("this code writes format %d, not 3", store.FormatVersion)
	}
	ctx := context.Background()
	now := time.Date(2026, 4, 10, 12, 30, 0, 0, time.UTC)
	dir := t.TempDir()
	path := filepath.Join(dir, "v3.db")
	db, err := meterdb.Open(path, &meterdb.Options{Now: func() time.Time { return now }, Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []meter.Params{
		{DisplayName: "sum", EventName: "sum_ev", Formula: meter.Sum},
		{DisplayName: "count", EventName: "count_ev", Formula: meter.Count},
		{DisplayName: "last", EventName: "last_ev", Formula: meter.Last},
		{DisplayName: "sum per hour", EventName: "hour_ev", Formula: meter.Sum, EventTimeWindow: meter.Hour},
		{DisplayName: "sum per day", EventName: "day_ev", Formula: meter.Sum, EventTimeWindow: meter.Day},
	} {
		if _, err := db.CreateMeter(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	var evs []event.Event
	for i := range 150 {
		name := []string{"sum_ev", "count_ev", "last_ev", "hour_ev", "day_ev"}[i%5]
		cus := fmt.Sprintf("cus_%d", i%3)
		// Twenty days back, in steps of 3 h 1 min 7 s: several events
		// share an hour or a day, and minutes vary.
		ts := now.Add(-20*24*time.Hour + time.Duration(i)*(3*time.Hour+time.Minute+7*time.Second))
		evs = append(evs, event.Event{Name: name, Identifier: fmt.Sprintf("v3-%d", i), Timestamp: ts,
			Payload: map[string]string{"stripe_customer_id": cus, "value": fmt.Sprint(i%17 - 3)}})
	}
	for len(evs) > 0 {
		n := min(len(evs), 50)
		errs, err := db.RecordBatch(ctx, evs[:n])
		if err != nil {
			t.Fatal(err)
		}
		for i, err := range errs {
			if err != nil {
				t.Fatalf("event %s: %v", evs[i].Identifier, err)
			}
		}
		evs = evs[n:]
	}
	if err := db.Cancel(ctx, "sum_ev", "v3-5"); err != nil {
		t.Fatal(err)
	}
	if err := db.PutKV(ctx, "idem", "k1", []byte(`{"status":200}`), now.Add(30*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := db.PutKV(ctx, "sessions", "s1", []byte("token"), now.Add(30*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("testdata/v3.db", data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote testdata/v3.db, %d bytes", len(data))
}
