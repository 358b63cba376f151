package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

// Target is one system under test: the meterdb engine in one of its modes,
// or a baseline. Every target accepts the same events, applies the same
// validation rules and answers the same summaries, so that the load
// generator can verify each one against the workload's expected totals.
//
// A Target is used by many workers at once: Record, RecordBatch and
// Summaries must be safe for concurrent use. Events and their payload maps
// belong to the caller and must not be retained or modified, except that
// RecordBatch may fill in missing identifiers and timestamps.
type Target interface {
	// CreateMeters creates the workload's meters and returns their ids,
	// in order.
	CreateMeters(ctx context.Context, ps []meter.Params) ([]string, error)
	// Record records one event; a rejection is an error.
	Record(ctx context.Context, ev *event.Event) error
	// RecordBatch records evs as one group and returns how many were
	// rejected.
	RecordBatch(ctx context.Context, evs []event.Event) (rejected int, err error)
	// Summaries answers a summary query with meterdb's semantics. Baselines
	// support hour-aligned ranges only.
	Summaries(ctx context.Context, p meterdb.SummaryParams) ([]meterdb.Summary, error)
	// Close releases the target and everything it holds.
	Close() error
}

// Sizer is implemented by targets that can report their size in domain
// units for the memory scenario.
type Sizer interface {
	// Sizes returns named sizes, such as "dedupe_bytes" or "file_bytes".
	Sizes() map[string]float64
}

// Loader is implemented by targets with a faster path for loading a
// dataset before a query scenario than RecordBatch with its durability.
type Loader interface {
	Load(ctx context.Context, evs []event.Event) (rejected int, err error)
}

// TargetSpec describes a kind of target.
type TargetSpec struct {
	Name string
	// Baseline names the target this one is compared against; empty for
	// baselines.
	Baseline string
	// Durable targets write a file; Open receives a fresh directory.
	Durable bool
	// SkipRecord, when set, says why the ingest scenario skips Record
	// (batch=1) cells unless the target is named in -targets.
	SkipRecord string
	// Doc is one line for the report.
	Doc string
	// Open returns a new, empty target whose clock is w.Now. dir is a
	// fresh directory the target may use.
	Open func(w *Workload, dir string) (Target, error)
}

// ErrUnavailable reports a target that this build of meterdb cannot run
// yet; scenarios skip it and say so in the report.
var ErrUnavailable = errors.New("bench: target not available in this build")

// targets lists every target the generator knows, by name. The HTTP
// targets drive stripeapi over loopback (see http.go) and belong to the
// http-v1 and http-v2 scenarios.
var targets = map[string]TargetSpec{
	"meterdb-mem": {
		Name: "meterdb-mem", Baseline: "mutexmap",
		Doc:  `meterdb.Open("", nil): in-memory engine`,
		Open: openMeterDB(false, meterdb.Options{}),
	},
	"meterdb-file": {
		Name: "meterdb-file", Baseline: "bbolt", Durable: true,
		Doc:  "meterdb.Open(path, nil): file-backed engine, DurabilitySync (acknowledged after the fsync that covers the event)",
		Open: openMeterDB(true, meterdb.Options{}),
	},
	"meterdb-buffered": {
		Name: "meterdb-buffered", Baseline: "bbolt", Durable: true,
		Doc:  "meterdb.Open(path, &Options{Durability: DurabilityBuffered}): acknowledged once applied, synced within FlushInterval",
		Open: openMeterDB(true, meterdb.Options{Durability: meterdb.DurabilityBuffered}),
	},
	"mutexmap": {
		Name: "mutexmap",
		Doc:  "baseline: one global mutex around plain Go maps (hour and day buckets, identifier set)",
		Open: func(w *Workload, _ string) (Target, error) { return newMutexMap(w), nil },
	},
	"bbolt": {
		Name: "bbolt", Durable: true,
		SkipRecord: "one fsync per event measures the disk, not the store; name it in -targets to run it",
		Doc:        "baseline: bbolt, one key per event, one fsynced transaction per call, range scans for queries",
		Open:       func(w *Workload, dir string) (Target, error) { return newBoltTarget(w, filepath.Join(dir, "bolt.db")) },
	},
	"meterdb-aggregate": {
		Name: "meterdb-aggregate", Doc: "memory only: aggregate.Table alone, fed the dataset's entries",
		Open: func(*Workload, string) (Target, error) { return nil, ErrUnavailable },
	},
	"meterdb-dedupe": {
		Name: "meterdb-dedupe", Doc: "memory only: the dedupe index alone, fed the dataset's identifiers",
		Open: func(*Workload, string) (Target, error) { return nil, ErrUnavailable },
	},
	"http-v1": {
		Name: "http-v1", Baseline: "meterdb-mem",
		Doc:  "stripeapi v1 over loopback HTTP: one form-encoded POST /v1/billing/meter_events per event, with an Idempotency-Key; in-memory DB; client in the same process",
		Open: httpOpenTarget(false),
	},
	"meterd": {
		Name: "meterd",
		Doc:  "a meterd process built from ./cmd/meterd, on a file in a tmpfs, over loopback HTTP; the soak scenario's target",
		Open: func(*Workload, string) (Target, error) {
			return nil, fmt.Errorf("%w: meterd runs in the soak scenario only", ErrUnavailable)
		},
	},
	"http-v2": {
		Name: "http-v2", Baseline: "meterdb-mem",
		Doc:  "stripeapi v2 over loopback HTTP: POST /v2/billing/meter_event_stream of up to 100 events with a session token and an Idempotency-Key; in-memory DB; client in the same process",
		Open: httpOpenTarget(true),
	},
}

func targetNames() []string { return slices.Sorted(maps.Keys(targets)) }

// meterDB adapts *meterdb.DB to Target.
type meterDB struct {
	db   *meterdb.DB
	path string // the file of a file-backed database
}

// openMeterDB opens the engine with options o and the workload's clock, in
// memory or in a file under the target's directory.
func openMeterDB(file bool, o meterdb.Options) func(w *Workload, dir string) (Target, error) {
	return func(w *Workload, dir string) (Target, error) {
		path := ""
		if file {
			path = filepath.Join(dir, "meter.db")
		}
		o.Now = w.Now
		db, err := meterdb.Open(path, &o)
		if err != nil {
			if file {
				// An engine without file support yet is skipped, not failed.
				return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
			}
			return nil, err
		}
		return &meterDB{db: db, path: path}, nil
	}
}

func (t *meterDB) CreateMeters(ctx context.Context, ps []meter.Params) ([]string, error) {
	var ids []string
	for _, p := range ps {
		m, err := t.db.CreateMeter(ctx, p)
		if err != nil {
			return nil, err
		}
		ids = append(ids, m.ID)
	}
	return ids, nil
}

func (t *meterDB) Record(ctx context.Context, ev *event.Event) error {
	_, err := t.db.Record(ctx, *ev)
	return err
}

func (t *meterDB) RecordBatch(ctx context.Context, evs []event.Event) (int, error) {
	return rejected(t.db.RecordBatch(ctx, evs))
}

// RecordUsage records us through DB.RecordUsage, the typed path.
func (t *meterDB) RecordUsage(ctx context.Context, us []event.Usage) (int, error) {
	return rejected(t.db.RecordUsage(ctx, us))
}

// rejected counts the inputs a batch refused, from its per-input errors.
func rejected(errs []error, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range errs {
		if e != nil {
			n++
		}
	}
	return n, nil
}

func (t *meterDB) Summaries(ctx context.Context, p meterdb.SummaryParams) ([]meterdb.Summary, error) {
	return t.db.Summaries(ctx, p)
}

func (t *meterDB) Close() error { return t.db.Close() }

func (t *meterDB) Sizes() map[string]float64 {
	s := t.db.Stats()
	m := map[string]float64{
		"series": float64(s.Series), "hour_buckets": float64(s.HourBuckets),
		"day_buckets": float64(s.DayBuckets), "minute_cells": float64(s.MinuteCells),
		"dedupe_bytes": float64(s.DedupeBytes), "dedupe_identities": float64(s.DedupeIdentities),
	}
	if t.path != "" {
		if err := t.db.Sync(); err == nil {
			m["file_bytes"] = float64(dirSize(filepath.Dir(t.path)))
		}
	}
	return m
}

// dirSize returns the total size of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}
