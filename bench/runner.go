package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime/debug"
	"slices"
	"time"

	"github.com/meterdb/meterdb/event"
)

// Result is one row of the report: one target in one cell of a scenario.
type Result struct {
	Scenario string `json:"scenario"`
	Cell     string `json:"cell"` // what the row measures, e.g. "batch=100 workers=2"
	Target   string `json:"target"`
	Baseline string `json:"baseline,omitempty"`
	Workers  int    `json:"workers,omitempty"`
	Batch    int    `json:"batch,omitempty"`

	Seconds      float64 `json:"seconds,omitempty"`
	Events       int64   `json:"events,omitempty"`
	EventsPerSec float64 `json:"events_per_sec,omitempty"`
	Ops          int64   `json:"ops,omitempty"`
	OpsPerSec    float64 `json:"ops_per_sec,omitempty"`
	// Latency percentiles of one call, nanoseconds.
	Latency *Percentiles `json:"latency_ns,omitempty"`
	// Metrics holds domain figures such as "B/bucket"; Primary names the
	// one compared with the baseline when there is no throughput.
	Metrics map[string]float64 `json:"metrics,omitempty"`
	Primary string             `json:"primary,omitempty"`
	// Ratio is this row's primary figure over its baseline's (throughput:
	// higher is better; bytes: lower is better). Zero when not compared.
	Ratio float64 `json:"ratio,omitempty"`
	// Verified reports how many series were checked against the workload.
	Verified int    `json:"verified_series,omitempty"`
	Skipped  string `json:"skipped,omitempty"`
}

// Percentiles of a latency sample.
type Percentiles struct {
	N    int   `json:"n"`
	P50  int64 `json:"p50"`
	P90  int64 `json:"p90"`
	P99  int64 `json:"p99"`
	P999 int64 `json:"p999"`
	Max  int64 `json:"max"`
}

func percentiles(ns []int64) *Percentiles {
	if len(ns) == 0 {
		return nil
	}
	slices.Sort(ns)
	at := func(q float64) int64 { return ns[min(len(ns)-1, int(q*float64(len(ns))))] }
	return &Percentiles{N: len(ns), P50: at(.5), P90: at(.9), P99: at(.99), P999: at(.999), Max: ns[len(ns)-1]}
}

// scenario is one kind of measurement. run measures one target and returns
// its rows; rows of a target and of its baseline are matched by Cell.
type scenario struct {
	name    string
	doc     string
	targets []string // default targets, baselines included
	// batches and workers, when set, replace the defaults of -batches and
	// -workers for this scenario; the flags, when given, win.
	batches, workers []int
	run              func(r *runner, spec TargetSpec) ([]Result, error)
}

// scenarioTable lists the scenarios. A new scenario (durable ingest modes,
// HTTP) is one entry here plus, when it needs a new system under test, one
// entry in targets.
var scenarioTable = map[string]scenario{
	"ingest": {
		name: "ingest", doc: "in-process ingest: Record (batch=1) and RecordBatch, against worker counts",
		targets: []string{"meterdb-mem", "mutexmap", "bbolt"},
		run:     (*runner).runIngest,
	},
	"durable": {
		name: "durable", doc: "durable ingest into a file, against worker counts",
		targets: []string{"meterdb-file", "meterdb-buffered", "bbolt"},
		run:     (*runner).runIngest,
	},
	"query": {
		name: "query", doc: "summary queries on a loaded dataset: total 30 days, hourly 48 hours, daily 35 days",
		targets: []string{"meterdb-mem", "mutexmap", "bbolt"},
		run:     (*runner).runQuery,
	},
	"memory": {
		name: "memory", doc: "memory per (meter, customer, hour) bucket, per identifier and per event; RSS",
		targets: []string{"meterdb-mem", "meterdb-aggregate", "meterdb-dedupe", "mutexmap", "meterdb-file", "bbolt"},
		run:     (*runner).runMemory,
	},
	"http-v1": {
		name: "http-v1", doc: "v1 meter events over loopback HTTP, one event per request",
		targets: []string{"http-v1", "meterdb-mem"},
		batches: []int{1}, workers: []int{1, 16},
		run: (*runner).runIngest,
	},
	"http-v2": {
		name: "http-v2", doc: "v2 meter event stream over loopback HTTP, 100 events per request",
		targets: []string{"http-v2", "meterdb-mem"},
		batches: []int{100}, workers: []int{1, 16},
		run: (*runner).runIngest,
	},
	"soak": {
		name: "soak", doc: "a meterd process on a tmpfs file under mixed v1, v2 and stream load with duplicates, cancels and summaries for -duration; SIGKILL restarts every few minutes and one disk-full episode; then every acknowledged event checked against meterd's summaries",
		targets: []string{"meterd"},
		run:     (*runner).runSoak,
	},
}

func scenarioNames() []string { return slices.Sorted(maps.Keys(scenarioTable)) }

// runner runs the scenarios of one invocation.
type runner struct {
	cfg    config
	w      *Workload
	stderr io.Writer
	prog   *progress
	// open overrides TargetSpec.Open when set; tests use it to inject a
	// faulty target.
	open func(spec TargetSpec, w *Workload, dir string) (Target, error)

	scenario string // the scenario running
	// batches and workers are the ingest cells of the scenario running:
	// its own, or those of -batches and -workers.
	batches, workers []int

	dataset []event.Event // events [0, DatasetSize), built on first use
	shape   [2]int        // buckets and series of the dataset, once counted

	// soakPlan, when set, adjusts the soak's plan; tests use it.
	soakPlan func(*soakPlan)
	// soakTamper, when set, is called before the soak's final check; tests
	// use it to break the ledger.
	soakTamper func(*soak)
	soakReport *SoakReport // what the soak scenario found
}

// datasetEvents returns the events of the query and memory datasets. They
// are built once; targets only read them.
func (r *runner) datasetEvents() []event.Event {
	if r.dataset == nil {
		r.dataset = r.w.Events(0, r.cfg.DatasetSize)
	}
	return r.dataset
}

func newRunner(cfg config, stderr io.Writer) *runner {
	return &runner{cfg: cfg, stderr: stderr, prog: newProgress(stderr, cfg.Progress)}
}

// runAll runs every configured scenario and returns the report. A
// verification failure stops the run; the report then holds the rows
// measured so far.
func (r *runner) runAll() (*Report, error) {
	t0 := time.Now()
	r.prog.note("building workload: %d customers, %d meters, seed %d", r.cfg.Customers, r.cfg.Meters, r.cfg.Seed)
	r.w = NewWorkload(r.cfg.Seed, r.cfg.Customers, r.cfg.Meters, r.cfg.Skew)
	r.w.Span = r.cfg.Span
	rep := newReport(r.cfg, r.w)
	rep.GenNsPerEvent = measureGenerator(r.w)
	var failed error
	for _, name := range r.cfg.Scenarios {
		sc := scenarioTable[name]
		r.scenario = name
		r.batches, r.workers = r.cfg.Batches, r.cfg.Workers
		if sc.batches != nil && !r.cfg.BatchesSet {
			r.batches = sc.batches
		}
		if sc.workers != nil && !r.cfg.WorkersSet {
			r.workers = sc.workers
		}
		names := sc.targets
		if len(r.cfg.Targets) > 0 {
			names = nil
			for _, t := range sc.targets {
				if slices.Contains(r.cfg.Targets, t) {
					names = append(names, t)
				}
			}
		}
		for _, tn := range names {
			spec := targets[tn]
			rows, err := sc.run(r, spec)
			for i := range rows {
				rows[i].Scenario = name
				rows[i].Target = tn
				rows[i].Baseline = spec.Baseline
			}
			rep.Results = append(rep.Results, rows...)
			if err != nil {
				failed = fmt.Errorf("scenario %s, target %s: %w", name, tn, err)
				break
			}
		}
		if failed != nil {
			break
		}
	}
	r.prog.done()
	rep.Soak = r.soakReport
	rep.computeRatios()
	rep.WallSeconds = time.Since(t0).Seconds()
	if failed != nil {
		rep.Failed = failed.Error()
	}
	return rep, failed
}

// measureGenerator returns the cost of building one event on one core,
// which every ingest figure includes.
func measureGenerator(w *Workload) float64 {
	evs := make([]event100, 1)
	t0 := time.Now()
	n := 0
	for time.Since(t0) < 100*time.Millisecond {
		w.Fill(evs[0][:], uint64(n))
		n += len(evs[0])
	}
	return float64(time.Since(t0).Nanoseconds()) / float64(n)
}

// openTarget opens a fresh target in a new temporary directory. The
// returned cleanup closes it and removes the directory.
func (r *runner) openTarget(spec TargetSpec) (Target, []string, func(), error) {
	dir, err := os.MkdirTemp("", "meterdb-bench-"+spec.Name+"-")
	if err != nil {
		return nil, nil, nil, err
	}
	open := spec.Open
	if r.open != nil {
		open = func(w *Workload, dir string) (Target, error) { return r.open(spec, w, dir) }
	}
	t, err := open(r.w, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, nil, err
	}
	ids, err := t.CreateMeters(context.Background(), r.w.Meters)
	if err != nil {
		t.Close()
		os.RemoveAll(dir)
		return nil, nil, nil, err
	}
	cleanup := func() {
		t.Close()
		os.RemoveAll(dir)
		debug.FreeOSMemory()
	}
	return t, ids, cleanup, nil
}

// skipped returns the row of a target that could not run.
func skipped(cell string, err error) Result {
	return Result{Cell: cell, Skipped: err.Error()}
}

// isUnavailable reports whether err means "not in this build".
func isUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

// rssBytes returns the process's resident set size from /proc, or 0.
func rssBytes() int64 { return procRSS("self") }
