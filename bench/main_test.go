package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/meterdb/meterdb/event"
)

// tinyArgs is a configuration small enough for go test -race.
func tinyArgs(dir string) []string {
	return []string{"-duration", "200ms", "-customers", "50", "-dataset", "3000",
		"-workers", "1,2", "-batches", "1,10", "-progress=false",
		"-json", filepath.Join(dir, "r.json"), "-out", filepath.Join(dir, "r.html")}
}

func TestRunTiny(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := run(tinyArgs(dir), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"== ingest", "== query", "== memory", "every figure above was verified", "meterdb-mem", "mutexmap", "bbolt"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}

	b, err := os.ReadFile(filepath.Join(dir, "r.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	seen := map[string]int{}
	for _, r := range rep.Results {
		seen[r.Scenario]++
		if r.Skipped != "" {
			continue
		}
		switch r.Scenario {
		case "ingest":
			if r.Events <= 0 || r.EventsPerSec <= 0 || r.Latency == nil || r.Verified == 0 {
				t.Errorf("ingest row without figures: %+v", r)
			}
			if r.Target == "meterdb-mem" && r.Ratio <= 0 {
				t.Errorf("meterdb-mem row without a ratio to its baseline: %+v", r)
			}
		case "query":
			if r.OpsPerSec <= 0 || r.Latency == nil || r.Latency.P99 < r.Latency.P50 {
				t.Errorf("query row without figures: %+v", r)
			}
		case "memory":
			if len(r.Metrics) == 0 {
				t.Errorf("memory row without figures: %+v", r)
			}
		}
	}
	// 2 batch sizes × 2 worker counts × 3 targets; 3 query kinds × 3
	// targets; 6 memory rows.
	if seen["ingest"] != 12 || seen["query"] != 9 || seen["memory"] != 6 {
		t.Errorf("rows per scenario: %v", seen)
	}
	if rep.Failed != "" {
		t.Errorf("report says failed: %s", rep.Failed)
	}

	h, err := os.ReadFile(filepath.Join(dir, "r.html"))
	if err != nil {
		t.Fatal(err)
	}
	checkWellFormed(t, h)
	for _, forbidden := range []string{"<script", "http://", "https://", "@import", "url("} {
		s := strings.ReplaceAll(string(h), `xmlns="http://www.w3.org/2000/svg"`, "")
		if strings.Contains(s, forbidden) {
			t.Errorf("HTML report is not self-contained: contains %q", forbidden)
		}
	}
	if n := strings.Count(string(h), "<svg"); n < 4 {
		t.Errorf("HTML report has %d charts, want at least 4", n)
	}
}

// checkWellFormed parses b as XML: every element closed, attributes quoted,
// no stray ampersands.
func checkWellFormed(t *testing.T, b []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	depth := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("HTML report is not well-formed: %v", err)
		}
		switch tok.(type) {
		case xml.StartElement:
			depth++
		case xml.EndElement:
			depth--
		}
	}
	if depth != 0 {
		t.Fatalf("HTML report leaves %d elements open", depth)
	}
}

// lossy drops every 1000th event of a batch while reporting success.
type lossy struct {
	Target
	n int
}

func (l *lossy) RecordBatch(ctx context.Context, evs []event.Event) (int, error) {
	l.n += len(evs)
	if l.n >= 1000 {
		l.n = 0
		evs = evs[1:]
	}
	return l.Target.RecordBatch(ctx, evs)
}

func TestRunFailsOnWrongTotals(t *testing.T) {
	cfg, err := parseFlags([]string{"-duration", "100ms", "-customers", "20", "-workers", "1",
		"-batches", "10", "-scenario", "ingest", "-targets", "meterdb-mem", "-progress=false"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r := newRunner(cfg, io.Discard)
	r.open = func(spec TargetSpec, w *Workload, dir string) (Target, error) {
		tg, err := spec.Open(w, dir)
		if err != nil {
			return nil, err
		}
		return &lossy{Target: tg}, nil
	}
	rep, err := r.runAll()
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("run with a lossy target: err = %v, want a VerifyError", err)
	}
	if rep == nil || rep.Failed == "" {
		t.Fatalf("report does not record the failure")
	}
	var out bytes.Buffer
	rep.writeTable(&out)
	if !strings.Contains(out.String(), "VERIFICATION FAILED") {
		t.Errorf("table does not show the failure:\n%s", out.String())
	}
}

func TestFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-scenario", "nope"}, {"-targets", "nope"}, {"-workers", "0"}, {"-duration", "-1s"}, {"-customers", "0"}, {"extra"},
		{"-api", "json"}, {"-formulas", "sum,max"}, {"-id-len", "8"}, {"-conns", "0"}, {"-rounds", "0"},
	} {
		if code := run(args, io.Discard, io.Discard); code != 2 {
			t.Errorf("run %q: exit %d, want 2", args, code)
		}
	}
}

// The workload must be a pure function of the seed and the index.
func TestWorkloadDeterministic(t *testing.T) {
	a, b := NewWorkload(7, 1000, 3, 1.1), NewWorkload(7, 1000, 3, 1.1)
	ea, eb := a.Events(100, 500), b.Events(100, 500)
	ids := map[string]bool{}
	for i := range ea {
		if ea[i].Identifier != eb[i].Identifier || ea[i].Name != eb[i].Name || !ea[i].Timestamp.Equal(eb[i].Timestamp) ||
			ea[i].Payload["value"] != eb[i].Payload["value"] {
			t.Fatalf("event %d differs between two workloads with one seed", i)
		}
		if ids[ea[i].Identifier] {
			t.Fatalf("identifier %q repeats", ea[i].Identifier)
		}
		ids[ea[i].Identifier] = true
		ts := ea[i].Timestamp
		if !ts.Before(a.Anchor) || ts.Before(a.Anchor.Add(-a.Span)) {
			t.Fatalf("timestamp %v outside the span", ts)
		}
	}
	// Zipf: customer 0 is the most frequent.
	counts := make([]int, a.Customers)
	for i := range uint64(100000) {
		counts[a.Spec(i).Customer]++
	}
	for c := 1; c < a.Customers; c++ {
		if counts[c] > counts[0] {
			t.Fatalf("customer %d drew %d events, more than customer 0 (%d)", c, counts[c], counts[0])
		}
	}
}

// The three ways of building event i describe the same event, and
// identifiers have the configured length and are unique; at 36 characters
// they are UUID-shaped.
func TestWorkloadFills(t *testing.T) {
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	for _, idLen := range []int{36, 16, 19, 100} {
		w := NewWorkload(3, 100, 3, 1.1)
		w.IDLen = idLen
		const n = 5000
		evs, maps, us := make([]event.Event, n), make([]event.Event, n), make([]event.Usage, n)
		w.Fill(evs, 10)
		w.FillMaps(maps, 10)
		w.FillUsage(us, 10)
		ids := map[string]bool{}
		for i := range evs {
			e, m, u := evs[i], maps[i], us[i]
			if len(e.Identifier) != idLen || ids[e.Identifier] {
				t.Fatalf("id-len %d: identifier %q: wrong length or repeated", idLen, e.Identifier)
			}
			ids[e.Identifier] = true
			if idLen == 36 && !uuid.MatchString(e.Identifier) {
				t.Fatalf("identifier %q is not UUID-shaped", e.Identifier)
			}
			v := strconv.FormatInt(u.Value, 10)
			if m.Identifier != e.Identifier || u.Identifier != e.Identifier || m.Name != e.Name || u.Name != e.Name ||
				!m.Timestamp.Equal(e.Timestamp) || !u.Timestamp.Equal(e.Timestamp) ||
				m.Payload["stripe_customer_id"] != e.Payload["stripe_customer_id"] || u.Customer != e.Payload["stripe_customer_id"] ||
				m.Payload["value"] != e.Payload["value"] || v != e.Payload["value"] {
				t.Fatalf("event %d differs between Fill, FillMaps and FillUsage:\n%+v\n%+v\n%+v", i, e, m, u)
			}
		}
	}
}

// TestRunTyped runs -api typed on the ingest and durable scenarios, with
// targets from outside a scenario's own list: every row of a target with a
// typed path is measured and verified, meterdb's rows are compared with
// their baselines.
// runReport runs the load generator with args and a -json report, fails
// t unless it exits 0, and returns the report and the standard output.
func runReport(t *testing.T, args ...string) (Report, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "r.json")
	var stdout, stderr bytes.Buffer
	if code := run(append(args, "-json", path), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return rep, stdout.String()
}

func TestRunTyped(t *testing.T) {
	rep, _ := runReport(t, "-scenario", "ingest,durable", "-api", "typed", "-targets", "meterdb-mem,mutexmap,meterdb-file,bbolt",
		"-duration", "100ms", "-customers", "30", "-workers", "2", "-batches", "1,10", "-id-len", "36",
		"-progress=false")
	rows := map[string]int{}
	for _, r := range rep.Results {
		if r.Skipped != "" {
			t.Errorf("row skipped: %+v", r)
			continue
		}
		rows[r.Scenario+" "+r.Target]++
		if r.API != "typed" || !strings.HasSuffix(r.Cell, "api=typed") || r.Events <= 0 || r.Verified == 0 {
			t.Errorf("row not measured in typed mode and verified: %+v", r)
		}
		if strings.HasPrefix(r.Target, "meterdb-") && r.Ratio <= 0 {
			t.Errorf("row without a ratio to its baseline: %+v", r)
		}
	}
	for _, k := range []string{"ingest meterdb-mem", "ingest mutexmap", "ingest meterdb-file", "ingest bbolt",
		"durable meterdb-file", "durable bbolt", "durable meterdb-mem", "durable mutexmap"} {
		if rows[k] != 2 {
			t.Errorf("%s: %d rows, want 2 (batch 1 and 10); rows: %v", k, rows[k], rows)
		}
	}
}

// medianRounds keeps each cell's median round and lists every round.
func TestMedianRounds(t *testing.T) {
	row := func(target string, eps float64) Result {
		return Result{Target: target, Cell: "c", Primary: "events/s", EventsPerSec: eps}
	}
	got := medianRounds([]Result{row("a", 3), row("b", 10), row("a", 1), row("b", 30), row("a", 2), row("b", 20)})
	if len(got) != 2 || got[0].Target != "a" || got[1].Target != "b" {
		t.Fatalf("rows %+v", got)
	}
	if got[0].EventsPerSec != 2 || !slices.Equal(got[0].Rounds, []float64{3, 1, 2}) ||
		got[1].EventsPerSec != 20 || !slices.Equal(got[1].Rounds, []float64{10, 30, 20}) {
		t.Errorf("medians %+v", got)
	}
	if one := medianRounds([]Result{row("a", 5)}); len(one) != 1 || one[0].Rounds != nil {
		t.Errorf("one round: %+v", one)
	}
}

// The dedupe-day scenario at a small scale: every resend caught, none of
// the fresh identifiers refused, the index's memory and the Open time
// reported.
func TestRunDedupeDay(t *testing.T) {
	rep, _ := runReport(t, "-scenario", "dedupe-day", "-targets", "meterdb-file,meterdb-mem", "-dedupe-ids", "200000",
		"-progress=false")
	if len(rep.Results) != 2 {
		t.Fatalf("%d rows, want 2", len(rep.Results))
	}
	for _, r := range rep.Results {
		m := r.Metrics
		if m["resends"] < 1000 || m["duplicates caught"] != m["resends"] || m["fresh refused"] != 0 || m["identifiers"] != 200000 {
			t.Errorf("%s: resends %v, caught %v, fresh refused %v, identifiers %v", r.Target, m["resends"], m["duplicates caught"], m["fresh refused"], m["identifiers"])
		}
		if m["heap B/identifier (index, profile)"] <= 0 || m["index B/identifier (Stats)"] <= 0 {
			t.Errorf("%s: no memory figures: %v", r.Target, m)
		}
		if r.Target == "meterdb-file" && (m["open s"] <= 0 || m["resends after open caught"] < 100) {
			t.Errorf("%s: no Open figures: %v", r.Target, m)
		}
	}
}
