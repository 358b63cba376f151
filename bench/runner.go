package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
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
	API      string `json:"api,omitempty"` // ingest and durable: "map" or "typed"
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
	// Rounds holds the primary figure of every round when -rounds
	// repeated the cell; the row is the median round.
	Rounds []float64 `json:"rounds,omitempty"`
	// Note says how the row was measured, when the table cannot.
	Note string `json:"note,omitempty"`
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
	// also lists targets the scenario runs when -targets names them.
	also []string
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
		also:    []string{"meterdb-file", "meterdb-buffered"},
		run:     (*runner).runIngest,
	},
	"durable": {
		name: "durable", doc: "durable ingest into a file, against worker counts",
		targets: []string{"meterdb-file", "meterdb-buffered", "bbolt"},
		also:    []string{"meterdb-mem", "mutexmap"},
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
	"history": {
		name: "history", doc: "400 simulated days of -customers × -meters series: memory at day 35 and at the end (frozen history), summary latency a year back",
		targets: []string{"meterdb-mem", "meterdb-file"},
		run:     (*runner).runHistory,
	},
	"dedupe-day": {
		name: "dedupe-day", doc: "the dedupe index over simulated hours with Options.Now: memory per identifier of the window (heap profile), disk, ingest rate per hour, duplicates caught, confirmation reads, Open time",
		targets: []string{"meterdb-file"},
		also:    []string{"meterdb-mem"},
		run:     (*runner).runDedupeDay,
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

	meterd   string   // the meterd binary of -external, built on first use
	cleanups []func() // run when the run ends

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
	r.w.IDLen = r.cfg.IDLen
	r.w.SetFormulas(r.cfg.Formulas)
	rep := newReport(r.cfg, r.w)
	rep.GenNsPerEvent = measureGenerator(r.w, r.cfg.API)
	defer func() {
		for _, f := range r.cleanups {
			f()
		}
	}()
	var failed error
	for _, name := range r.cfg.Scenarios {
		sc := scenarioTable[name]
		if x, ok := externalScenarios[name]; ok && r.cfg.External {
			sc = x
		}
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
			for _, t := range slices.Concat(sc.targets, sc.also) {
				if slices.Contains(r.cfg.Targets, t) {
					names = append(names, t)
				}
			}
		}
		rounds := 1
		if repeatable[name] {
			rounds = r.cfg.Rounds
		}
		var got []Result
	scenarioRounds:
		for round := range rounds {
			if rounds > 1 {
				r.prog.note("%s: round %d of %d", name, round+1, rounds)
			}
			for _, tn := range names {
				spec := targets[tn]
				rows, err := sc.run(r, spec)
				for i := range rows {
					rows[i].Scenario = name
					rows[i].Target = tn
					rows[i].Baseline = spec.Baseline
				}
				got = append(got, rows...)
				if err != nil {
					failed = fmt.Errorf("scenario %s, target %s: %w", name, tn, err)
					break scenarioRounds
				}
			}
		}
		if failed != nil {
			rep.Results = append(rep.Results, got...)
			break
		}
		rep.Results = append(rep.Results, medianRounds(got)...)
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

// repeatable lists the scenarios that -rounds repeats.
var repeatable = map[string]bool{"ingest": true, "durable": true, "http-v1": true, "http-v2": true}

// medianRounds keeps, of the rows of one target and cell measured in
// several rounds, the round with the median primary figure (the lower of
// the two middle ones for an even count), and records every round's
// figure in its Rounds, in order. Rows keep the order of their first
// round.
func medianRounds(rows []Result) []Result {
	type key struct{ target, cell string }
	var order []key
	groups := map[key][]Result{}
	for _, r := range rows {
		k := key{r.Target, r.Cell}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	out := make([]Result, 0, len(order))
	for _, k := range order {
		g := groups[k]
		if len(g) == 1 {
			out = append(out, g[0])
			continue
		}
		figs := make([]float64, len(g))
		for i := range g {
			figs[i], _ = g[i].primary()
		}
		idx := make([]int, len(g))
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(figs[a], figs[b]) })
		m := g[idx[(len(g)-1)/2]]
		m.Rounds = figs
		out = append(out, m)
	}
	return out
}

// measureGenerator returns the CPU cost of building one event in
// the ingest mode api, which every ingest figure includes: with "map", the
// payload map a caller builds per event; with "typed", an event.Usage.
func measureGenerator(w *Workload, api string) float64 {
	evs := make([]event.Event, 100)
	us := make([]event.Usage, 100)
	t0, cpu0 := time.Now(), cpuTime()
	n := 0
	for time.Since(t0) < 100*time.Millisecond {
		if api == "typed" {
			w.FillUsage(us, uint64(n))
		} else {
			w.FillMaps(evs, uint64(n))
		}
		n += len(evs)
	}
	// The process's CPU time, GC included, when the OS reports it: on a
	// loaded machine the wall time also counts the time spent waiting
	// for a core.
	if cpu := cpuTime() - cpu0; cpu > 0 {
		return float64(cpu) / float64(n)
	}
	return float64(time.Since(t0).Nanoseconds()) / float64(n)
}

// scenarioPath returns the database path of a scenario that opens
// meterdb itself: "" (in memory) unless spec is meterdb-file, for which it
// is file in a new temporary directory that cleanup removes.
func scenarioPath(spec TargetSpec, file string) (path string, cleanup func(), err error) {
	if spec.Name != "meterdb-file" {
		return "", func() {}, nil
	}
	dir, err := os.MkdirTemp("", "meterdb-bench-"+spec.Name+"-")
	if err != nil {
		return "", nil, err
	}
	return filepath.Join(dir, file), func() { os.RemoveAll(dir) }, nil
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
