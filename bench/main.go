// Command bench is meterdb's load generator and performance report.
//
// It builds a fixed-seed workload (Zipf-skewed customers, meters of every
// formula, timestamps over the last 30 days, unique identifiers), runs each
// scenario against the engine and against baselines built from the same
// workload (a global mutex around plain Go maps; naive bbolt with one key
// per event), verifies every target's summaries against the workload's
// expected totals after each load, and prints a table in which each row
// shows its ratio to its baseline. A verification failure ends the run with
// a non-zero exit status.
//
//	go run ./bench                         # default scenarios, 10 s per ingest cell
//	go run ./bench -duration 2s -json r.json -out report.html
//	go run ./bench -scenario query,memory -customers 100000
//	go run ./bench -scenario soak -duration 30m -json soak.json -out soak.html
//
// Scenarios: ingest (Record and RecordBatch against worker counts), query
// (summaries: total over 30 days, hourly over 48 hours, daily over 35
// days), memory (heap per bucket, per identifier and per event, RSS),
// durable (file-backed ingest), http-v1 and http-v2 (events through
// stripeapi over loopback HTTP: one v1 meter event per request, or v2
// stream requests of 100 events, with 1 and 16 client workers unless
// -workers says otherwise), and soak (a meterd process under mixed load
// for -duration, killed with SIGKILL every few minutes and once out of
// disk, then checked event by event; see soak.go). See scenarioTable for
// the list and BENCHMARKS.md for results.
//
// Ingest modes: -api map (the default) builds a payload map per event in
// the timed loop, as a client of the Stripe shape does; -api typed records
// event.Usage values through DB.RecordUsage and the baselines' typed
// methods. With -external, the HTTP scenarios run meterd (in memory, and
// on a file with sync durability) and, for v1, stripe-mock as processes of
// their own and drive them from this process over -conns connections,
// reporting req/s and the server's CPU time per request:
//
//	go run ./bench -scenario ingest -targets meterdb-mem,mutexmap -api typed -batches 1000 -workers 4 -customers 1000 -skew 0
//	go run ./bench -scenario http-v1,http-v2 -external -duration 10s
//
// The go test benchmarks of the engine live beside this command:
//
//	go test -run '^$' -bench . ./bench
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/meterdb/meterdb/meter"
)

// config is the parsed command line.
type config struct {
	Duration    time.Duration
	Customers   int
	Meters      int
	Workers     []int
	Batches     []int
	WorkersSet  bool // -workers was given
	BatchesSet  bool // -batches was given
	Scenarios   []string
	Targets     []string // empty: each scenario's own targets
	Seed        uint64
	Skew        float64
	Span        time.Duration // timestamps lie in [anchor-Span, anchor)
	DatasetSize int           // events loaded for the query and memory scenarios; 0: 20 per customer
	JSON, Out   string
	Progress    bool
	CPUProfile  string
	Formulas    []meter.Formula // the meters cycle through these
	API         string          // ingest and durable: "map" or "typed"
	IDLen       int             // identifier length; 36 is UUID-shaped
	External    bool            // http-v1, http-v2: servers in processes of their own
	Conns       int             // -external: client connections
	Rounds      int             // ingest, durable, HTTP: rounds of every cell
	SoakRate    int             // fresh events per second the soak offers
	SoakDisk    int64           // bytes of the soak's tmpfs; 0: sized from the rate and duration
	DedupeIDs   int             // dedupe-day: fresh identifiers
	DedupeHours int             // dedupe-day: simulated hours
	// The history scenario (history.go).
	HistoryDays          int // simulated days
	HistoryPerHour       int // events per series and hour
	HistoryFileCustomers int // customers of the file-backed run; 0: -customers
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	r := newRunner(cfg, stderr)
	rep, err := r.runAll()
	if rep != nil {
		rep.writeTable(stdout)
		if cfg.JSON != "" {
			if werr := writeFile(cfg.JSON, rep.writeJSON); werr != nil {
				fmt.Fprintln(stderr, "bench:", werr)
				return 1
			}
		}
		if cfg.Out != "" {
			if werr := writeFile(cfg.Out, rep.writeHTML); werr != nil {
				fmt.Fprintln(stderr, "bench:", werr)
				return 1
			}
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench: FAILED:", err)
		return 1
	}
	return 0
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	var workers, batches, scenarios, tgts string
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measuring time of each ingest cell; query cells get a tenth of it"+soakDurationNote)
	fs.IntVar(&cfg.Customers, "customers", 10000, "number of customers (Zipf-skewed)")
	fs.IntVar(&cfg.Meters, "meters", 3, "number of meters; their formulas cycle through -formulas")
	formulaList := fs.String("formulas", "count,sum,last", "comma-separated formulas the meters cycle through (sum: every meter sums)")
	fs.StringVar(&workers, "workers", "1,"+strconv.Itoa(runtime.GOMAXPROCS(0)), "comma-separated worker counts for ingest")
	fs.StringVar(&batches, "batches", "1,100", "comma-separated batch sizes for ingest; 1 means Record")
	fs.StringVar(&scenarios, "scenario", "ingest,query,memory", "comma-separated scenarios: "+strings.Join(scenarioNames(), ", "))
	fs.StringVar(&tgts, "targets", "", "comma-separated targets to run (default: each scenario's own); known: "+strings.Join(targetNames(), ", "))
	fs.Uint64Var(&cfg.Seed, "seed", 1, "workload seed")
	fs.Float64Var(&cfg.Skew, "skew", 1.1, "Zipf exponent of customer popularity; 0 means uniform")
	fs.DurationVar(&cfg.Span, "span", 30*24*time.Hour, "events' timestamps are uniform over this span before the clock (at most 34 days)")
	fs.IntVar(&cfg.DatasetSize, "dataset", 0, "events loaded for the query and memory scenarios (default 20 per customer)")
	fs.StringVar(&cfg.JSON, "json", "", "write machine-readable results to this file")
	fs.StringVar(&cfg.Out, "out", "", "write a self-contained HTML report to this file")
	fs.BoolVar(&cfg.Progress, "progress", true, "show a live progress line on stderr")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	fs.StringVar(&cfg.API, "api", "map", "ingest and durable: `map` records event.Event values whose payload maps the caller builds per event "+
		"inside the timed loop; typed records event.Usage values (DB.RecordUsage; mutexmap's typed method)")
	fs.IntVar(&cfg.IDLen, "id-len", DefaultIDLen, "identifier length, 16 to 100; 36 makes UUID-shaped identifiers")
	fs.BoolVar(&cfg.External, "external", false, "http-v1 and http-v2: run each server (meterd in memory, meterd with a file and sync durability, "+
		"and for v1 stripe-mock) as a process of its own, driven by this process over -conns connections; reports req/s and server CPU per request")
	fs.IntVar(&cfg.Conns, "conns", 16, "-external: concurrent client connections, closed loop")
	fs.IntVar(&cfg.Rounds, "rounds", 1, "ingest, durable and HTTP scenarios: measure every target this many times, targets alternating, "+
		"and report each cell's median round (with every round's figure)")
	fs.IntVar(&cfg.DedupeIDs, "dedupe-ids", 10_000_000, "dedupe-day: fresh identifiers spread over the simulated hours (the issue's figure is 100000000)")
	fs.IntVar(&cfg.DedupeHours, "dedupe-hours", 30, "dedupe-day: simulated hours (the dedupe window is 24)")
	fs.IntVar(&cfg.SoakRate, "soak-rate", 1000, "soak: fresh events per second offered by all clients together")
	fs.IntVar(&cfg.HistoryDays, "history-days", 400, "history: simulated days")
	fs.IntVar(&cfg.HistoryPerHour, "history-per-hour", 1, "history: events per (meter, customer) and hour, at random seconds")
	fs.IntVar(&cfg.HistoryFileCustomers, "history-file-customers", 0, "history: customers of the file-backed run (default -customers)")
	var soakDiskMiB int
	fs.IntVar(&soakDiskMiB, "soak-tmpfs", 0, "soak: size of the tmpfs holding meterd's file, MiB (default: sized from -soak-rate and -duration, at least 64)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) {
		cfg.WorkersSet = cfg.WorkersSet || f.Name == "workers"
		cfg.BatchesSet = cfg.BatchesSet || f.Name == "batches"
	})
	var err error
	if cfg.Workers, err = intList(workers); err != nil {
		return cfg, fmt.Errorf("-workers: %v", err)
	}
	if cfg.Batches, err = intList(batches); err != nil {
		return cfg, fmt.Errorf("-batches: %v", err)
	}
	for _, f := range strings.Split(*formulaList, ",") {
		switch f := meter.Formula(strings.TrimSpace(f)); f {
		case meter.Count, meter.Sum, meter.Last:
			cfg.Formulas = append(cfg.Formulas, f)
		default:
			return cfg, fmt.Errorf("-formulas: %q is not count, sum or last", f)
		}
	}
	cfg.Scenarios = strings.Split(scenarios, ",")
	for _, s := range cfg.Scenarios {
		if _, ok := scenarioTable[s]; !ok {
			return cfg, fmt.Errorf("unknown scenario %q; known: %s", s, strings.Join(scenarioNames(), ", "))
		}
	}
	if tgts != "" {
		cfg.Targets = strings.Split(tgts, ",")
		for _, t := range cfg.Targets {
			if _, ok := targets[t]; !ok {
				return cfg, fmt.Errorf("unknown target %q; known: %s", t, strings.Join(targetNames(), ", "))
			}
		}
	}
	switch {
	case cfg.Duration <= 0:
		return cfg, fmt.Errorf("-duration must be positive")
	case cfg.Customers < 1 || cfg.Customers > 1<<30:
		return cfg, fmt.Errorf("-customers must be between 1 and 2^30")
	case cfg.Meters < 1 || cfg.Meters > 1000:
		return cfg, fmt.Errorf("-meters must be between 1 and 1000")
	case cfg.Span < time.Minute || cfg.Span > 34*24*time.Hour:
		return cfg, fmt.Errorf("-span must be between 1m and 816h (34 days)")
	case cfg.Skew < 0:
		return cfg, fmt.Errorf("-skew must not be negative")
	case cfg.DatasetSize < 0:
		return cfg, fmt.Errorf("-dataset must not be negative")
	case cfg.API != "map" && cfg.API != "typed":
		return cfg, fmt.Errorf("-api must be map or typed, not %q", cfg.API)
	case cfg.IDLen < 16 || cfg.IDLen > 100:
		return cfg, fmt.Errorf("-id-len must be between 16 and 100")
	case cfg.Conns < 1:
		return cfg, fmt.Errorf("-conns must be positive")
	case cfg.Rounds < 1 || cfg.Rounds > 100:
		return cfg, fmt.Errorf("-rounds must be between 1 and 100")
	case cfg.DedupeIDs < 1000:
		return cfg, fmt.Errorf("-dedupe-ids must be at least 1000")
	case cfg.DedupeHours < 1 || cfg.DedupeHours > 1000:
		return cfg, fmt.Errorf("-dedupe-hours must be between 1 and 1000")
	case cfg.SoakRate < 100 || cfg.SoakRate > 1000000:
		return cfg, fmt.Errorf("-soak-rate must be between 100 and 1000000")
	case soakDiskMiB < 0:
		return cfg, fmt.Errorf("-soak-tmpfs must not be negative")
	}
	cfg.SoakDisk = int64(soakDiskMiB) << 20
	if cfg.DatasetSize == 0 {
		cfg.DatasetSize = 20 * cfg.Customers
	}
	return cfg, nil
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}
