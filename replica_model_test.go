package meterdb_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/internal/sharedlogtest"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/sharedlog"
)

// This file runs model_test.go's state machine against several replicas
// of one database sharing one in-process log: every action of the model
// test runs at a randomly drawn replica, and the replicas come and go
// (reopened from their file, crashed, bootstrapped fresh from a snapshot
// after the log was truncated, cut off from the log). Replicas use
// ConsistentReads, so that the model, which sees the acknowledged
// operations in order, is exact for every replica at every step. The
// shared log is a modelLog: the in-process one of sharedlogtest here,
// a JetStream stream in replica_nats_model_test.go.

// modelLog is the shared log the replica model runs on.
type modelLog interface {
	// client opens a handle on the log, as one process would.
	client(t *rapid.T) sharedlog.Log
	// truncate drops the records before position pos.
	truncate(t *rapid.T, pos uint64)
	// last returns the position of the newest record.
	last(t *rapid.T) uint64
	// actions returns the actions on the log itself (an outage, a node
	// killed), beside the model's.
	actions(s *replicaMachine) map[string]func(*rapid.T)
	// close releases what the log holds for one check.
	close()
}

// memLog is the in-process shared log.
type memLog struct{ *sharedlogtest.Shared }

func (l memLog) client(*rapid.T) sharedlog.Log   { return l.Client() }
func (l memLog) truncate(_ *rapid.T, pos uint64) { l.Truncate(pos) }
func (l memLog) last(*rapid.T) uint64            { return l.Last() }
func (l memLog) close()                          {}
func (l memLog) actions(s *replicaMachine) map[string]func(*rapid.T) {
	return map[string]func(*rapid.T){"Outage": func(t *rapid.T) { s.outage(t, l.Shared) }}
}

// replicaMachine is the model test's machine whose db is the replica the
// current action runs at.
type replicaMachine struct {
	*machine
	log    modelLog
	dir    string
	reps   []*modelReplica
	opened int // replicas ever opened, for names
}

type modelReplica struct {
	db   *meterdb.DB
	log  sharedlog.Log // db's handle on the shared log
	path string        // "" in memory
}

func newReplicaMachine(t *rapid.T, log modelLog) *replicaMachine {
	t0 := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC).
		Add(time.Duration(rapid.Int64Range(0, secDay-1).Draw(t, "t0_offset_s")) * time.Second)
	window := rapid.SampledFrom([]time.Duration{0, time.Hour, 30 * time.Hour}).Draw(t, "dedupe_window")
	shards := rapid.SampledFrom([]int{0, 1, 2}).Draw(t, "shards")
	dir, err := os.MkdirTemp("", "meterdb-replica-model-")
	if err != nil {
		t.Fatal(err)
	}
	s := &replicaMachine{machine: &machine{ctx: bg, clock: newTestClock(t0), t0: t0}, log: log, dir: dir}
	s.opts = meterdb.Options{Now: s.clock.Now, DedupeWindow: window, Shards: shards, ConsistentReads: true, NoFsync: true,
		SnapshotInterval: time.Hour, FlushInterval: time.Millisecond}
	if window == 0 {
		window = 24 * time.Hour
	}
	s.m = newModel(window)
	for range rapid.IntRange(2, 3).Draw(t, "replicas") {
		s.add(t, rapid.Bool().Draw(t, "file_backed"))
	}
	s.db = s.reps[0].db
	for range rapid.IntRange(1, 3).Draw(t, "initial_meters") {
		s.CreateMeter(t)
	}
	return s
}

// add opens a new replica.
func (s *replicaMachine) add(t *rapid.T, file bool) *modelReplica {
	r := &modelReplica{}
	if file {
		s.opened++
		r.path = filepath.Join(s.dir, fmt.Sprintf("r%d.db", s.opened))
	}
	s.open(t, r)
	s.reps = append(s.reps, r)
	return r
}

// open opens r's database at r.path with a new handle on the log.
func (s *replicaMachine) open(t *rapid.T, r *modelReplica) {
	o := s.opts
	o.Log = s.log.client(t)
	r.log = o.Log
	r.db = openDB(t, r.path, &o)
}

func (s *replicaMachine) close() {
	for _, r := range s.reps {
		r.db.Close()
		r.log.Close()
	}
	s.log.close()
	os.RemoveAll(s.dir)
}

// at wraps an action of the model machine: it runs at a drawn replica.
func (s *replicaMachine) at(f func(*rapid.T)) func(*rapid.T) {
	return func(t *rapid.T) {
		s.db = s.reps[rapid.IntRange(0, len(s.reps)-1).Draw(t, "replica")].db
		f(t)
	}
}

// fileReplica draws a file-backed replica.
func (s *replicaMachine) fileReplica(t *rapid.T) *modelReplica {
	var files []*modelReplica
	for _, r := range s.reps {
		if r.path != "" {
			files = append(files, r)
		}
	}
	if len(files) == 0 {
		t.Skip("no file-backed replica")
	}
	return files[rapid.IntRange(0, len(files)-1).Draw(t, "file_replica")]
}

// Reopen closes a file-backed replica and opens its file again.
func (s *replicaMachine) Reopen(t *rapid.T) {
	r := s.fileReplica(t)
	if err := r.db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	r.log.Close()
	s.open(t, r)
}

// Crash ends a file-backed replica without its final checkpoint and
// opens its file again.
func (s *replicaMachine) Crash(t *rapid.T) {
	r := s.fileReplica(t)
	if err := meterdb.CrashForTest(r.db); err != nil {
		t.Fatalf("crash: %v", err)
	}
	r.log.Close()
	s.open(t, r)
}

// Checkpoint checkpoints a file-backed replica.
func (s *replicaMachine) Checkpoint(t *rapid.T) {
	if err := meterdb.CheckpointForTest(s.fileReplica(t).db); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
}

// Bootstrap writes a snapshot from a file-backed replica, truncates the
// log after it now and then, and opens a fresh replica, which starts from
// the snapshot (or the log's start); beyond four replicas one goes.
func (s *replicaMachine) Bootstrap(t *rapid.T) {
	src := s.fileReplica(t)
	pos, err := src.db.Snapshot(bg)
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	// The snapshot covers the last record that changed the replica's
	// state; records after it changed nothing.
	if last := s.log.last(t); pos == 0 || pos > last {
		t.Fatalf("snapshot covers %d, the log ends at %d", pos, last)
	}
	if rapid.Bool().Draw(t, "truncate") {
		s.log.truncate(t, pos+1-uint64(rapid.IntRange(0, 1).Draw(t, "keep_last")))
	}
	s.add(t, rapid.Bool().Draw(t, "file_backed"))
	if len(s.reps) > 4 {
		i := rapid.IntRange(0, len(s.reps)-2).Draw(t, "drop")
		s.reps[i].db.Close()
		s.reps[i].log.Close()
		s.reps = append(s.reps[:i], s.reps[i+1:]...)
	}
}

// outage cuts the in-process log off: a write fails with ErrUnavailable
// and changes nothing, a read without ConsistentReads keeps working.
func (s *replicaMachine) outage(t *rapid.T, shared *sharedlogtest.Shared) {
	r := s.reps[rapid.IntRange(0, len(s.reps)-1).Draw(t, "replica")]
	shared.SetAvailable(false)
	defer shared.SetAvailable(true)
	if len(s.m.meters) > 0 {
		mt := s.m.meters[0]
		_, err := r.db.Record(bg, event.Event{Name: mt.EventName, Identifier: "outage",
			Payload: map[string]string{mt.CustomerKey: "cus_a", mt.ValueKey: "1"}})
		if !errors.Is(err, meterdb.ErrUnavailable) {
			t.Fatalf("Record while the log is cut off: %v, want ErrUnavailable", err)
		}
	}
	if _, err := r.db.CreateMeter(bg, meter.Params{DisplayName: "x", EventName: "outage", Formula: meter.Count}); !errors.Is(err, meterdb.ErrUnavailable) {
		t.Fatalf("CreateMeter while the log is cut off: %v, want ErrUnavailable", err)
	}
}

// Check compares every replica with the model: sizes and every series'
// total over a range holding all its events, and the cross-customer
// queries.
func (s *replicaMachine) Check(t *rapid.T) {
	start := floorTo(s.t0.Unix(), secDay) - 40*secDay
	end := floorTo(s.clock.Unix(), secDay) + 2*secDay
	for i, r := range s.reps {
		if err := r.db.WaitApplied(bg); err != nil {
			t.Fatalf("replica %d: WaitApplied: %v", i, err)
		}
		st := r.db.Stats()
		// Stats asks the log's last position for at most a second; on a
		// real cluster just after a node was killed, that can take longer
		// (the request to the dead server is answered by none): ask again
		// until the log answers, nothing being written meanwhile.
		for try := 0; st.Replica != nil && st.Replica.Err != nil && errors.Is(st.Replica.Err, sharedlog.ErrUnavailable) && try < 20; try++ {
			st = r.db.Stats()
		}
		// Replicas freeze by the log's apply time (internal/pipeline/freeze.go),
		// each when it checkpoints or prunes: the sizes are the model's
		// with each replica's own horizon.
		var frozen int64
		if !st.FrozenBefore.IsZero() {
			frozen = st.FrozenBefore.Unix()
			coverage.frozen.Add(1)
		}
		series, minutes, hours, days, raw, rawFrozen := s.m.sizes(frozen)
		if st.Series != series || st.MinuteCells != minutes || st.HourBuckets != hours || st.DayBuckets != days ||
			st.RawEntries < raw || st.RawEntries > raw+rawFrozen || r.path == "" && st.RawEntries != raw || st.Meters != int64(len(s.m.meters)) {
			t.Fatalf("replica %d (%q): stats %+v, want series %d minute cells %d hour buckets %d day buckets %d raw entries %d (and up to %d more of days before the horizon) meters %d",
				i, r.path, st, series, minutes, hours, days, raw, rawFrozen, len(s.m.meters))
		}
		if st.Replica == nil || st.Replica.Lag != 0 || st.Replica.Err != nil {
			t.Fatalf("replica %d: Stats.Replica %+v after WaitApplied", i, st.Replica)
		}
		s.db = r.db
		for mi := range s.m.meters {
			for _, c := range customers {
				s.compare(t, mi, c, start, end, meter.NoWindow)
			}
			s.compareCustomers(t, mi, start, end, 2)
		}
	}
}

func (s *replicaMachine) actions() map[string]func(*rapid.T) {
	a := map[string]func(*rapid.T){"": s.Check}
	for name, f := range s.machine.actions() {
		switch base, _, _ := strings.Cut(name, "#"); base {
		case "", "Reopen", "Crash", "Checkpoint":
		default:
			a[name] = s.at(f)
		}
	}
	a["Reopen"] = s.Reopen
	a["Crash"] = s.Crash
	a["Checkpoint"] = s.Checkpoint
	a["Bootstrap"] = s.Bootstrap
	for name, f := range s.log.actions(s) {
		a[name] = f
	}
	return a
}

// TestReplicaModel checks replicas against the brute-force model. To keep
// its share of CI in seconds it runs 50 checks when the package runs its
// default 1000 (main_test.go); RAPID_CHECKS or another -rapid.checks
// value sets its checks as for every test. The long run is
// RAPID_CHECKS=1000.
func TestReplicaModel(t *testing.T) {
	f := flag.Lookup("rapid.checks")
	if _, env := os.LookupEnv("RAPID_CHECKS"); !env && f.Value.String() == rapidDefaults[0].value {
		f.Value.Set("50")
		defer f.Value.Set(rapidDefaults[0].value)
	}
	far, frozen := coverage.far.Load(), coverage.frozen.Load()
	rapid.Check(t, func(t *rapid.T) {
		s := newReplicaMachine(t, memLog{sharedlogtest.New()})
		defer s.close()
		t.Repeat(s.actions())
	})
	t.Logf("jumps of weeks %d, replica checks with frozen days %d", coverage.far.Load()-far, coverage.frozen.Load()-frozen)
}
