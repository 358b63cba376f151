package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one run measured, as written by -json.
type Report struct {
	Date          string   `json:"date"`
	GoVersion     string   `json:"go_version"`
	OS            string   `json:"os"`
	CPU           string   `json:"cpu"`
	NumCPU        int      `json:"num_cpu"`
	GOMAXPROCS    int      `json:"gomaxprocs"`
	LoadAvg       string   `json:"load_avg"`
	Config        Config   `json:"config"`
	GenNsPerEvent float64  `json:"generator_ns_per_event"`
	WallSeconds   float64  `json:"wall_seconds"`
	Failed        string   `json:"failed,omitempty"`
	Results       []Result `json:"results"`
	// Soak holds what the soak scenario found beyond its rows.
	Soak *SoakReport `json:"soak,omitempty"`
}

// Config is the part of the command line that shapes the results.
type Config struct {
	Duration    string   `json:"duration"`
	Customers   int      `json:"customers"`
	Meters      int      `json:"meters"`
	Workers     []int    `json:"workers"`
	Batches     []int    `json:"batches"`
	Scenarios   []string `json:"scenarios"`
	Seed        uint64   `json:"seed"`
	Skew        float64  `json:"skew"`
	Span        string   `json:"timestamp_span"`
	DatasetSize int      `json:"dataset_events"`
	Anchor      string   `json:"anchor"`
	API         string   `json:"api"`
	IDLen       int      `json:"identifier_length"`
	Formulas    []string `json:"formulas"`
	External    bool     `json:"external,omitempty"`
	Conns       int      `json:"conns,omitempty"`
	Rounds      int      `json:"rounds"`
}

func newReport(cfg config, w *Workload) *Report {
	load, _ := os.ReadFile("/proc/loadavg")
	return &Report{
		Date: time.Now().UTC().Format(time.RFC3339), GoVersion: runtime.Version(),
		OS: runtime.GOOS + "/" + runtime.GOARCH, CPU: cpuModel(), NumCPU: runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), LoadAvg: strings.TrimSpace(string(load)),
		Config: Config{
			Duration: cfg.Duration.String(), Customers: cfg.Customers, Meters: cfg.Meters,
			Workers: cfg.Workers, Batches: cfg.Batches, Scenarios: cfg.Scenarios, Seed: cfg.Seed,
			Skew: cfg.Skew, Span: fmtSpan(cfg.Span), DatasetSize: cfg.DatasetSize, Anchor: w.Anchor.Format(time.RFC3339),
			API: cfg.API, IDLen: cfg.IDLen, Formulas: formulaNames(w), External: cfg.External, Conns: cfg.Conns, Rounds: cfg.Rounds,
		},
	}
}

// formulaNames returns the formulas of w's meters, in order.
func formulaNames(w *Workload) []string {
	var fs []string
	for _, m := range w.Meters {
		fs = append(fs, string(m.Formula))
	}
	return fs
}

// fmtSpan writes whole days as "30d" and other spans as time.Duration does.
func fmtSpan(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// primary returns a row's compared figure.
func (r *Result) primary() (float64, bool) {
	switch r.Primary {
	case "events/s":
		return r.EventsPerSec, r.EventsPerSec > 0
	case "ops/s":
		return r.OpsPerSec, r.OpsPerSec > 0
	}
	v, ok := r.Metrics[r.Primary]
	return v, ok && v > 0
}

// computeRatios sets each row's Ratio to its primary figure over the
// baseline row of the same scenario and cell.
func (rep *Report) computeRatios() {
	type key struct{ scenario, cell, target string }
	idx := map[key]*Result{}
	for i := range rep.Results {
		r := &rep.Results[i]
		idx[key{r.Scenario, r.Cell, r.Target}] = r
	}
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Baseline == "" || r.Skipped != "" {
			continue
		}
		b := idx[key{r.Scenario, r.Cell, r.Baseline}]
		if b == nil || b.Skipped != "" {
			continue
		}
		v, ok1 := r.primary()
		if r.Primary != b.Primary {
			// Compare like with like: bbolt reports file bytes, the
			// in-memory engine heap bytes.
			v, ok1 = r.Metrics[b.Primary], r.Metrics[b.Primary] > 0
		}
		bv, ok2 := b.primary()
		if ok1 && ok2 {
			r.Ratio = v / bv
		}
		if v, bv := r.Metrics[serverCPU], b.Metrics[serverCPU]; v > 0 && bv > 0 {
			r.Metrics[serverCPURatio] = v / bv
		}
	}
}

func (rep *Report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

func fmtNs(ns int64) string {
	d := time.Duration(ns)
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", ns)
	case d < time.Millisecond:
		return fmt.Sprintf("%.1fµs", float64(ns)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(ns)/1e6)
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func fmtRatio(r Result) string {
	if r.Ratio == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f× %s", r.Ratio, r.Baseline)
}

// The server CPU figures of -external rows: microseconds per request, and
// that over the baseline's (lower is better).
const (
	serverCPU      = "server CPU µs/req"
	clientCPU      = "client CPU µs/req"
	serverCPURatio = "server CPU/req vs baseline"
	cpuPerEvent    = "cpu-ns/event" // ingest rows: process CPU time per event
)

// scenarioDoc returns the one-line description of scenario name as run.
func (c Config) scenarioDoc(name string) string {
	if x, ok := externalScenarios[name]; ok && c.External {
		return x.doc
	}
	return scenarioTable[name].doc
}

// memoryColumns are the memory figures the table shows, in order.
var memoryColumns = []string{"heap B/event", "heap B/bucket", "heap B/identifier", "slot B/identifier", "file B/event", "file B/bucket", "RSS delta MiB"}

// writeTable prints one table per scenario; skipped rows follow their
// table as notes.
func (rep *Report) writeTable(w io.Writer) {
	fmt.Fprintf(w, "meterdb bench  %s  %s  %s  %d CPUs (GOMAXPROCS %d)  load %s\n",
		rep.Date, rep.GoVersion, rep.CPU, rep.NumCPU, rep.GOMAXPROCS, rep.LoadAvg)
	c := rep.Config
	fmt.Fprintf(w, "workload: %d customers (Zipf %.2f), %d meters (%s), seed %d, timestamps over the %s before %s, %d-character identifiers; dataset %d events\n",
		c.Customers, c.Skew, c.Meters, strings.Join(c.Formulas, ","), c.Seed, c.Span, c.Anchor, c.IDLen, c.DatasetSize)
	if slices.Contains(c.Scenarios, "ingest") || slices.Contains(c.Scenarios, "durable") {
		fmt.Fprintf(w, "ingest api %s: building one event costs %.0f ns of CPU inside the timed loop (%s)\n", c.API, rep.GenNsPerEvent, apiDoc[c.API])
	}
	for _, sc := range rep.Config.Scenarios {
		var rows, skips []Result
		for _, r := range rep.Results {
			switch {
			case r.Scenario != sc:
			case r.Skipped != "":
				skips = append(skips, r)
			default:
				rows = append(rows, r)
			}
		}
		if len(rows)+len(skips) == 0 && (sc != "soak" || rep.Soak == nil) {
			continue
		}
		fmt.Fprintf(w, "\n== %s: %s\n", sc, c.scenarioDoc(sc))
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', tabwriter.AlignRight)
		switch {
		case externalScenarios[sc].name != "" && c.External:
			fmt.Fprint(tw, "target\tcell\trequests\treq/s\tevents/s\tp50\tp99\tserver CPU/req\tclient CPU/req\tverified\treq/s vs baseline\tCPU/req vs baseline\t\n")
			for _, r := range rows {
				cpuRatio := "-"
				if v := r.Metrics[serverCPURatio]; v > 0 {
					cpuRatio = fmt.Sprintf("%.2f× %s", v, r.Baseline)
				}
				p50, p99 := "-", "-"
				if l := r.Latency; l != nil {
					p50, p99 = fmtNs(l.P50), fmtNs(l.P99)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1fµs\t%.1fµs\t%d\t%s\t%s\t\n",
					r.Target, r.Cell, human(float64(r.Ops)), human(r.OpsPerSec), human(r.EventsPerSec), p50, p99,
					r.Metrics[serverCPU], r.Metrics[clientCPU], r.Verified, fmtRatio(r), cpuRatio)
			}
		case sc == "memory":
			fmt.Fprintf(tw, "target\tcell\t%s\tvs baseline\t\n", strings.Join(memoryColumns, "\t"))
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t", r.Target, r.Cell)
				for _, k := range memoryColumns {
					if v, ok := r.Metrics[k]; ok {
						fmt.Fprintf(tw, "%.1f\t", v)
					} else {
						fmt.Fprint(tw, "-\t")
					}
				}
				fmt.Fprintf(tw, "%s\t\n", fmtRatio(r))
			}
		default:
			fmt.Fprint(tw, "target\tcell\tevents\tevents/s\tCPU/event\tcalls/s\tp50\tp99\tp99.9\tverified\tvs baseline\t\n")
			for _, r := range rows {
				ev, eps := "-", "-"
				if r.Events > 0 {
					ev, eps = human(float64(r.Events)), human(r.EventsPerSec)
				}
				p50, p99, p999 := "-", "-", "-"
				if l := r.Latency; l != nil {
					p50, p99, p999 = fmtNs(l.P50), fmtNs(l.P99), fmtNs(l.P999)
				}
				cpu := "-"
				if v := r.Metrics[cpuPerEvent]; v > 0 {
					cpu = fmtNs(int64(v))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t\n",
					r.Target, r.Cell, ev, eps, cpu, human(r.OpsPerSec), p50, p99, p999, r.Verified, fmtRatio(r))
			}
		}
		tw.Flush()
		if sc == "memory" {
			for _, r := range rows {
				if r.Metrics["buckets"] > 0 {
					fmt.Fprintf(w, "dataset: %.0f events in %.0f (meter, customer, hour) buckets of %.0f series\n",
						r.Metrics["identifiers"], r.Metrics["buckets"], r.Metrics["series"])
					break
				}
			}
		}
		for _, r := range rows {
			if len(r.Rounds) > 1 {
				figs := make([]string, len(r.Rounds))
				for i, v := range r.Rounds {
					figs[i] = human(v)
				}
				fmt.Fprintf(w, "rounds: %s %s: %s %s (the row is the median)\n", r.Target, r.Cell, r.Primary, strings.Join(figs, ", "))
			}
		}
		for _, r := range rows {
			if r.Note != "" {
				fmt.Fprintf(w, "note: %s: %s\n", r.Target, r.Note)
			}
		}
		for _, r := range skips {
			fmt.Fprintf(w, "skipped: %s %s: %s\n", r.Target, r.Cell, r.Skipped)
		}
		if sc == "soak" && rep.Soak != nil {
			rep.Soak.writeText(w)
		}
	}
	if rep.Failed != "" {
		fmt.Fprintf(w, "\nVERIFICATION FAILED: %s\n", rep.Failed)
		return
	}
	against := "the workload's expected totals"
	if rep.Soak != nil {
		against += " (the soak's: against its clients' ledger)"
	}
	fmt.Fprintf(w, "\nevery figure above was verified against %s; wall time %.1fs\n", against, rep.WallSeconds)
}
