package meterdb_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/internal/sharedlogtest"
	"github.com/meterdb/meterdb/meter"
)

// replicaSet is several replicas of one database sharing one in-process
// log, with one clock.
type replicaSet struct {
	t      testing.TB
	shared *sharedlogtest.Shared
	clock  *testClock
	dir    string
}

func newReplicaSet(t testing.TB) *replicaSet {
	return &replicaSet{t: t, shared: sharedlogtest.New(), clock: newTestClock(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)), dir: t.TempDir()}
}

// open opens a replica: file-backed under name, or in memory for "".
func (rs *replicaSet) open(name string, consistent bool) *meterdb.DB {
	rs.t.Helper()
	path := ""
	if name != "" {
		path = filepath.Join(rs.dir, name)
	}
	db, err := meterdb.Open(path, &meterdb.Options{Log: rs.shared.Client(), Now: rs.clock.Now, ConsistentReads: consistent, NoFsync: true})
	if err != nil {
		rs.t.Fatalf("opening replica %q: %v", name, err)
	}
	rs.t.Cleanup(func() { db.Close() })
	return db
}

var bg = context.Background()

func replMeter(t testing.TB, db *meterdb.DB, name string, f meter.Formula) meter.Meter {
	t.Helper()
	m, err := db.CreateMeter(bg, meter.Params{DisplayName: name, EventName: name, Formula: f})
	if err != nil {
		t.Fatalf("CreateMeter(%s): %v", name, err)
	}
	return m
}

func usage(name, customer, id string, value int64) event.Event {
	return event.Event{Name: name, Identifier: id, Payload: map[string]string{"stripe_customer_id": customer, "value": fmt.Sprint(value)}}
}

// total returns the count and value of a meter's summary for customer over
// the last 40 days.
func replTotal(t testing.TB, db *meterdb.DB, m meter.Meter, customer string) (int64, string) {
	t.Helper()
	end := db.Now().Truncate(time.Hour).Add(2 * time.Hour)
	got, err := db.Summaries(bg, meterdb.SummaryParams{Meter: m.ID, Customer: customer, Start: end.Add(-40 * 24 * time.Hour), End: end})
	if err != nil {
		t.Fatalf("Summaries: %v", err)
	}
	if len(got) == 0 {
		return 0, "0"
	}
	return got[0].Count, got[0].Value.String()
}

func waitApplied(t testing.TB, dbs ...*meterdb.DB) {
	t.Helper()
	for _, db := range dbs {
		if err := db.WaitApplied(bg); err != nil {
			t.Fatalf("WaitApplied: %v", err)
		}
	}
}

func TestReplicasAgree(t *testing.T) {
	rs := newReplicaSet(t)
	a, b, c := rs.open("a.db", false), rs.open("b.db", true), rs.open("", false)

	// A meter created on A is usable on B (consistent: it waits for A's
	// create before it validates) and on C once C caught up.
	m := replMeter(t, a, "calls", meter.Sum)
	if _, err := b.Record(bg, usage("calls", "cus_1", "e1", 5)); err != nil {
		t.Fatalf("Record on B of a meter created on A: %v", err)
	}
	waitApplied(t, c)
	got, err := c.Meter(bg, m.ID)
	if err != nil || got != m {
		t.Fatalf("C's meter %+v, %v; want %+v", got, err, m)
	}

	// An event recorded on B is a duplicate on A and C.
	for _, db := range []*meterdb.DB{a, c} {
		waitApplied(t, db)
		if _, err := db.Record(bg, usage("calls", "cus_1", "e1", 7)); !errors.Is(err, event.ErrDuplicate) {
			t.Fatalf("a second e1: %v, want a duplicate", err)
		}
	}
	// Cancel on C of the event recorded on B; then it is already
	// cancelled on A.
	if err := c.Cancel(bg, "calls", "e1"); err != nil {
		t.Fatalf("Cancel on C: %v", err)
	}
	waitApplied(t, a)
	if err := a.Cancel(bg, "calls", "e1"); !errors.Is(err, event.ErrAlreadyCancelled) {
		t.Fatalf("Cancel on A after C: %v, want already cancelled", err)
	}
	if err := a.Cancel(bg, "calls", "nope"); !errors.Is(err, event.ErrNotFound) {
		t.Fatalf("Cancel of an unknown identifier: %v, want not found", err)
	}

	// Events from all three; B, with consistent reads, sees each at once.
	for i, db := range []*meterdb.DB{a, b, c} {
		evs := []event.Event{usage("calls", "cus_1", fmt.Sprint("x", i), int64(10+i)), usage("calls", "cus_2", fmt.Sprint("y", i), 1)}
		if errs, err := db.RecordBatch(bg, evs); err != nil || errs[0] != nil || errs[1] != nil {
			t.Fatalf("RecordBatch on replica %d: %v %v", i, errs, err)
		}
		if n, _ := replTotal(t, b, m, "cus_2"); n != int64(i+1) {
			t.Fatalf("B's read right after replica %d's write: %d events, want %d", i, n, i+1)
		}
	}
	waitApplied(t, a, b, c)
	for i, db := range []*meterdb.DB{a, b, c} {
		if n, v := replTotal(t, db, m, "cus_1"); n != 3 || v != "33" {
			t.Errorf("replica %d: cus_1 count %d value %s, want 3 and 33", i, n, v)
		}
		if n, v := replTotal(t, db, m, "cus_2"); n != 3 || v != "3" {
			t.Errorf("replica %d: cus_2 count %d value %s, want 3 and 3", i, n, v)
		}
	}

	// Claims: the first in log order wins everywhere.
	exp := rs.clock.Now().Add(time.Hour)
	if cur, won, err := a.ClaimKV(bg, "idem", "k", []byte("A"), exp); err != nil || !won || string(cur) != "A" {
		t.Fatalf("first claim: %q %v %v", cur, won, err)
	}
	if cur, won, err := b.ClaimKV(bg, "idem", "k", []byte("B"), exp); err != nil || won || string(cur) != "A" {
		t.Fatalf("second claim: %q %v %v, want A's value and false", cur, won, err)
	}
	// A put on B is read on C.
	if err := b.PutKV(bg, "sessions", "s1", []byte("v1"), exp); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, c)
	if v, ok, err := c.GetKV(bg, "sessions", "s1"); err != nil || !ok || string(v) != "v1" {
		t.Fatalf("GetKV on C: %q %v %v", v, ok, err)
	}
	// An expired claim is taken over, at the writer's stamp.
	rs.clock.Add(2 * time.Hour)
	if cur, won, err := c.ClaimKV(bg, "idem", "k", []byte("C"), rs.clock.Now().Add(time.Hour)); err != nil || !won || string(cur) != "C" {
		t.Fatalf("claim after expiry: %q %v %v", cur, won, err)
	}

	// Meter changes apply everywhere; the first create of an event name
	// wins.
	if _, err := b.DeactivateMeter(bg, m.ID); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, a)
	if _, err := a.Record(bg, usage("calls", "cus_1", "z", 1)); !errors.Is(err, event.ErrArchivedMeter) {
		t.Fatalf("Record on A after B deactivated: %v, want archived", err)
	}
	if _, err := c.CreateMeter(bg, meter.Params{DisplayName: "x", EventName: "calls", Formula: meter.Count}); !errors.Is(err, meter.ErrEventNameTaken) {
		t.Fatalf("second create of event name calls: %v", err)
	}
	if _, ok, _ := c.GetKV(bg, "meterdb.replica", "applied"); ok {
		t.Fatal("the reserved namespace is readable")
	}
}

// TestReplicaConcurrentCreates sends creates of one event name to every
// replica at once: exactly one wins, and every replica holds it.
func TestReplicaConcurrentCreates(t *testing.T) {
	rs := newReplicaSet(t)
	dbs := []*meterdb.DB{rs.open("a.db", false), rs.open("b.db", false), rs.open("", false)}
	var wg sync.WaitGroup
	ids := make([]string, len(dbs))
	errs := make([]error, len(dbs))
	for i, db := range dbs {
		wg.Go(func() {
			m, err := db.CreateMeter(bg, meter.Params{DisplayName: "d", EventName: "same", Formula: meter.Count})
			ids[i], errs[i] = m.ID, err
		})
	}
	wg.Wait()
	winner := ""
	for i := range dbs {
		switch {
		case errs[i] == nil && winner == "":
			winner = ids[i]
		case errs[i] == nil:
			t.Fatalf("two creates of one event name succeeded: %s and %s", winner, ids[i])
		case !errors.Is(errs[i], meter.ErrEventNameTaken):
			t.Fatalf("create %d: %v", i, errs[i])
		}
	}
	waitApplied(t, dbs...)
	for i, db := range dbs {
		m, err := db.MeterByEventName(bg, "same")
		if err != nil || m.ID != winner || m.Seq != 1 {
			t.Fatalf("replica %d holds %+v, %v; want %s with Seq 1", i, m, err, winner)
		}
	}
}

// TestReplicaConcurrentDuplicates sends the same identifiers to different
// replicas at once: each identifier is accepted exactly once, the
// accepting writer's answer is what every replica applied, and every
// replica's sums equal the sum of the accepted answers.
func TestReplicaConcurrentDuplicates(t *testing.T) {
	rs := newReplicaSet(t)
	dbs := []*meterdb.DB{rs.open("a.db", false), rs.open("b.db", false), rs.open("", false)}
	m := replMeter(t, dbs[0], "calls", meter.Sum)
	waitApplied(t, dbs...)
	const ids, rounds = 40, 3
	var mu sync.Mutex
	accepted := map[string]int64{} // identifier -> value of the accepted event
	var wg sync.WaitGroup
	for w, db := range dbs {
		for g := range 2 {
			wg.Go(func() {
				for r := range rounds {
					evs := make([]event.Event, 0, ids)
					for i := range ids {
						// value tells which writer sent it
						evs = append(evs, usage("calls", "cus", fmt.Sprint("id", i), int64(1+w*100+g*10+r)))
					}
					errs, err := db.RecordBatch(bg, evs)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					for i, err := range errs {
						switch {
						case err == nil:
							if old, dup := accepted[evs[i].Identifier]; dup {
								t.Errorf("%s accepted twice (values %d and %s)", evs[i].Identifier, old, evs[i].Payload["value"])
							}
							var v int64
							fmt.Sscan(evs[i].Payload["value"], &v)
							accepted[evs[i].Identifier] = v
						case !errors.Is(err, event.ErrDuplicate):
							t.Errorf("%s: %v", evs[i].Identifier, err)
						}
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if len(accepted) != ids {
		t.Fatalf("%d identifiers accepted, want %d", len(accepted), ids)
	}
	var sum int64
	for _, v := range accepted {
		sum += v
	}
	waitApplied(t, dbs...)
	for i, db := range dbs {
		if n, v := replTotal(t, db, m, "cus"); n != ids || v != fmt.Sprint(sum) {
			t.Errorf("replica %d: count %d value %s, want %d and %d", i, n, v, ids, sum)
		}
		st := db.Stats()
		if st.EventsAccepted != ids || st.EventsDuplicate != int64(len(dbs)*2*rounds*ids-ids) {
			t.Errorf("replica %d: accepted %d duplicates %d", i, st.EventsAccepted, st.EventsDuplicate)
		}
	}
}

// TestReplicaRestart closes a file-backed replica, writes through another,
// and reopens it: it reads on from the position its file covers, and
// counts everything once.
func TestReplicaRestart(t *testing.T) {
	rs := newReplicaSet(t)
	a, b := rs.open("a.db", false), rs.open("b.db", false)
	m := replMeter(t, a, "calls", meter.Sum)
	for i := range 10 {
		if _, err := a.Record(bg, usage("calls", "cus", fmt.Sprint("a", i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	waitApplied(t, b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := a.Record(bg, usage("calls", "cus", fmt.Sprint("b", i), 10)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Cancel(bg, "calls", "a0"); err != nil {
		t.Fatal(err)
	}
	b = rs.open("b.db", false)
	waitApplied(t, b)
	if n, v := replTotal(t, b, m, "cus"); n != 14 || v != "59" {
		t.Fatalf("reopened replica: count %d value %s, want 14 and 59", n, v)
	}
	// It applied only what its file did not cover.
	if st := b.Stats(); st.EventsAccepted != 5 || st.EventsCancelled != 1 || st.EventsDuplicate != 0 {
		t.Fatalf("reopened replica applied %d events, %d cancels and %d duplicates, want 5, 1 and 0",
			st.EventsAccepted, st.EventsCancelled, st.EventsDuplicate)
	}
	if _, err := b.Record(bg, usage("calls", "cus", "b4", 1)); !errors.Is(err, event.ErrDuplicate) {
		t.Fatalf("an identifier recorded while the replica was closed: %v, want a duplicate", err)
	}
}

// TestReplicaBootstrap writes a snapshot, truncates the log and opens a
// fresh file replica, a fresh in-memory replica, and a replica whose file
// the log no longer continues: all bootstrap from the snapshot and agree.
func TestReplicaBootstrap(t *testing.T) {
	rs := newReplicaSet(t)
	a, old := rs.open("a.db", false), rs.open("old.db", false)
	m := replMeter(t, a, "calls", meter.Sum)
	for i := range 20 {
		if _, err := a.Record(bg, usage("calls", "cus", fmt.Sprint("a", i), int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	waitApplied(t, old)
	old.Close()
	pos, err := a.Snapshot(bg)
	if err != nil || pos != rs.shared.Last() {
		t.Fatalf("Snapshot: %d, %v; want position %d", pos, err, rs.shared.Last())
	}
	for i := range 5 {
		if _, err := a.Record(bg, usage("calls", "cus", fmt.Sprint("b", i), 100)); err != nil {
			t.Fatal(err)
		}
	}
	rs.shared.Truncate(pos + 1)
	fresh, mem := rs.open("fresh.db", false), rs.open("", false)
	old = rs.open("old.db", false)
	waitApplied(t, fresh, mem, old)
	for name, db := range map[string]*meterdb.DB{"fresh": fresh, "in-memory": mem, "truncated": old} {
		if n, v := replTotal(t, db, m, "cus"); n != 25 || v != "690" {
			t.Errorf("%s replica: count %d value %s, want 25 and 690", name, n, v)
		}
		// The snapshot carries the dedupe index.
		if _, err := db.Record(bg, usage("calls", "cus", "a3", 1)); !errors.Is(err, event.ErrDuplicate) {
			t.Errorf("%s replica: an identifier of the snapshot: %v, want a duplicate", name, err)
		}
	}
}

// TestReplicaUnavailable cuts the log off: writes fail with an error
// wrapping ErrUnavailable, reads keep working, and writes work again once
// the log is back.
func TestReplicaUnavailable(t *testing.T) {
	rs := newReplicaSet(t)
	a := rs.open("a.db", false)
	m := replMeter(t, a, "calls", meter.Sum)
	if _, err := a.Record(bg, usage("calls", "cus", "1", 4)); err != nil {
		t.Fatal(err)
	}
	rs.shared.SetAvailable(false)
	if _, err := a.Record(bg, usage("calls", "cus", "2", 4)); !errors.Is(err, meterdb.ErrUnavailable) {
		t.Fatalf("Record while the log is cut off: %v, want ErrUnavailable", err)
	}
	if _, err := a.CreateMeter(bg, meter.Params{DisplayName: "x", EventName: "x", Formula: meter.Count}); !errors.Is(err, meterdb.ErrUnavailable) {
		t.Fatalf("CreateMeter while the log is cut off: %v, want ErrUnavailable", err)
	}
	if n, v := replTotal(t, a, m, "cus"); n != 1 || v != "4" {
		t.Fatalf("read while the log is cut off: %d %s", n, v)
	}
	if st := a.Stats(); st.Replica == nil || st.Replica.Err == nil || st.Replica.Lag != -1 {
		t.Fatalf("Stats.Replica while the log is cut off: %+v", st.Replica)
	}
	rs.shared.SetAvailable(true)
	if _, err := a.Record(bg, usage("calls", "cus", "2", 4)); err != nil {
		t.Fatalf("Record once the log is back: %v", err)
	}
	if st := a.Stats(); st.Replica == nil || st.Replica.Lag != 0 || st.Replica.Applied != rs.shared.Last() {
		t.Fatalf("Stats.Replica: %+v", st.Replica)
	}
}

// TestReplicaClocks gives two replicas clocks that are a day and more
// apart and move differently: every time decision of the apply uses the
// writer's stamp, so both decide alike.
func TestReplicaClocks(t *testing.T) {
	shared := sharedlogtest.New()
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	clockA, clockB := newTestClock(t0), newTestClock(t0.Add(30*time.Hour))
	open := func(clock *testClock) *meterdb.DB {
		db, err := meterdb.Open("", &meterdb.Options{Log: shared.Client(), Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	a, b := open(clockA), open(clockB)
	m := replMeter(t, a, "calls", meter.Sum)
	if _, err := a.Record(bg, usage("calls", "cus", "e1", 1)); err != nil {
		t.Fatal(err)
	}
	// B applies e1, then its clock jumps a day: an applier that used its
	// own clock would take the next e1 for a new event and the
	// cancellation for an expired one.
	waitApplied(t, b)
	clockA.Add(time.Hour)
	clockB.Add(25 * time.Hour)
	// Within A's dedupe window.
	if _, err := a.Record(bg, usage("calls", "cus", "e1", 2)); !errors.Is(err, event.ErrDuplicate) {
		t.Fatalf("e1 again an hour later: %v, want a duplicate", err)
	}
	// Within A's cancel window, though not by B's clock.
	if err := a.Cancel(bg, "calls", "e1"); err != nil {
		t.Fatalf("Cancel an hour later: %v", err)
	}
	if _, err := a.Record(bg, usage("calls", "cus", "e2", 5)); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, b)
	for name, db := range map[string]*meterdb.DB{"A": a, "B": b} {
		end := t0.Add(72 * time.Hour)
		got, err := db.Summaries(bg, meterdb.SummaryParams{Meter: m.ID, Customer: "cus", Start: end.Add(-7 * 24 * time.Hour), End: end})
		if err != nil || len(got) != 1 || got[0].Count != 1 || got[0].Value.String() != "5" {
			t.Errorf("replica %s: %+v %v, want one event of value 5", name, got, err)
		}
	}
}

// TestReplicaRecordBatchKV records events with key-value records on one
// replica: the records reach the others, and are written only when an
// event was accepted.
func TestReplicaRecordBatchKV(t *testing.T) {
	rs := newReplicaSet(t)
	a, b := rs.open("a.db", false), rs.open("", false)
	replMeter(t, a, "calls", meter.Sum)
	waitApplied(t, b) // b validates with its own registry: it must know the meter
	exp := rs.clock.Now().Add(time.Hour)
	kv := func(key string) func([]error) []meterdb.KVWrite {
		return func(errs []error) []meterdb.KVWrite {
			return []meterdb.KVWrite{{Namespace: "idem", Key: key, Value: []byte(fmt.Sprint(errs[0] == nil)), Expires: exp}}
		}
	}
	if errs, err := a.RecordBatchKV(bg, []event.Event{usage("calls", "c", "e1", 1)}, kv("k1")); err != nil || errs[0] != nil {
		t.Fatalf("RecordBatchKV: %v %v", errs, err)
	}
	// All duplicates: kv is not called, nothing is written.
	if errs, err := b.RecordBatchKV(bg, []event.Event{usage("calls", "c", "e1", 1)}, kv("k2")); err != nil || !errors.Is(errs[0], event.ErrDuplicate) {
		t.Fatalf("RecordBatchKV of a duplicate: %v %v", errs, err)
	}
	waitApplied(t, a, b)
	for name, db := range map[string]*meterdb.DB{"A": a, "B": b} {
		if v, ok, err := db.GetKV(bg, "idem", "k1"); err != nil || !ok || string(v) != "true" {
			t.Errorf("replica %s: k1 = %q %v %v", name, v, ok, err)
		}
		if _, ok, err := db.GetKV(bg, "idem", "k2"); err != nil || ok {
			t.Errorf("replica %s: k2 stored for a batch of duplicates (%v)", name, err)
		}
	}
}

// TestClaimKVLocal checks ClaimKV on a database of one process: the first
// claim holds the key until it expires, concurrent claims included.
func TestClaimKVLocal(t *testing.T) {
	clock := newTestClock(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	db, err := meterdb.Open(filepath.Join(t.TempDir(), "db"), &meterdb.Options{Now: clock.Now, NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exp := clock.Now().Add(time.Minute)
	var wg sync.WaitGroup
	var mu sync.Mutex
	winners := 0
	start := make(chan struct{})
	for i := range 32 {
		wg.Go(func() {
			<-start
			v := []byte(fmt.Sprint(i))
			cur, won, err := db.ClaimKV(bg, "idem", "k", v, exp)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if won {
				winners++
				if string(cur) != string(v) {
					t.Errorf("winner got %q, want its own %q", cur, v)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if winners != 1 {
		t.Fatalf("%d claims won, want 1", winners)
	}
	clock.Add(time.Minute)
	if cur, won, err := db.ClaimKV(bg, "idem", "k", []byte("late"), exp.Add(time.Minute)); err != nil || !won || string(cur) != "late" {
		t.Fatalf("claim after expiry: %q %v %v", cur, won, err)
	}
}

// TestReplicaSnapshotLoop lets file-backed replicas write snapshots on
// their own, every SnapshotInterval, when the newest one is older than the
// interval.
func TestReplicaSnapshotLoop(t *testing.T) {
	shared := sharedlogtest.New()
	dir := t.TempDir()
	var dbs []*meterdb.DB
	for i := range 2 {
		db, err := meterdb.Open(filepath.Join(dir, fmt.Sprint(i)), &meterdb.Options{Log: shared.Client(), NoFsync: true,
			SnapshotInterval: 20 * time.Millisecond, FlushInterval: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		dbs = append(dbs, db)
	}
	replMeter(t, dbs[0], "calls", meter.Count)
	waitApplied(t, dbs[1])
	for i := range 3 {
		if _, err := dbs[1].Record(bg, usage("calls", "c", fmt.Sprint(i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	last := shared.Last()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := shared.Client().SnapshotInfo(bg)
		if err == nil && info.Pos == last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot at position %d after 10 s: %+v %v", last, info, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReplicaRefusesLocalFile opens a database of one process as a
// replica: it would count the file's events as well as the log's.
func TestReplicaRefusesLocalFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "local.db")
	db, err := meterdb.Open(path, &meterdb.Options{NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	replMeter(t, db, "calls", meter.Count)
	db.Close()
	if db, err := meterdb.Open(path, &meterdb.Options{Log: sharedlogtest.New().Client(), NoFsync: true}); err == nil {
		db.Close()
		t.Fatal("a database of one process opened as a replica")
	}
}
