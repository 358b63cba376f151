package meterdb_test

import (
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

// TestMemoryEstimate checks that Stats.MemoryBytes is within a factor of
// two of the heap the database actually grows by.
func TestMemoryEstimate(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates")
	}
	clock := newTestClock(t0)
	customers := make([]string, 1000)
	for i := range customers {
		customers[i] = "cus_" + strconv.Itoa(i)
	}
	const n = 200_000
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = event.Event{
			Name: "e", Identifier: "id_" + strconv.Itoa(i),
			Payload:   map[string]string{"stripe_customer_id": customers[i%len(customers)], "value": "3"},
			Timestamp: t0.Add(-time.Duration(i%(30*24*60)) * time.Minute),
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	db, err := meterdb.Open("", &meterdb.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mustMeter(t, db, meter.Params{EventName: "e", Formula: meter.Sum})
	for i := 0; i < n; i += 1000 {
		if _, err := db.RecordBatch(ctx, evs[i:i+1000]); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(evs) // the events' strings are the caller's, before and after
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	est := db.Stats().MemoryBytes
	t.Logf("heap grew %d bytes, estimate %d (%.2f)", grown, est, float64(est)/float64(grown))
	if est < grown/2 || est > grown*2 {
		t.Fatalf("estimate %d bytes, heap grew %d", est, grown)
	}
	runtime.KeepAlive(db)
}
