package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestRunHTTP runs the http-v1 and http-v2 scenarios on a tiny workload:
// every HTTP row must be measured (not skipped) and verified.
func TestRunHTTP(t *testing.T) {
	rep, out := runReport(t, "-scenario", "http-v1,http-v2", "-duration", "200ms", "-customers", "50", "-progress=false")
	if !strings.Contains(out, "== http-v1") || !strings.Contains(out, "== http-v2") {
		t.Errorf("report lacks an HTTP scenario:\n%s", out)
	}
	cells := map[string]int{}
	for _, r := range rep.Results {
		if !strings.HasPrefix(r.Target, "http-") {
			continue
		}
		if r.Skipped != "" || r.Events <= 0 || r.Verified == 0 || r.Ratio <= 0 {
			t.Errorf("HTTP row not measured, verified and compared: %+v", r)
		}
		cells[r.Target+" "+r.Cell]++
	}
	// The scenarios' own cells: v1 one event per request, v2 100 per
	// request, each with 1 and 16 workers.
	for _, c := range []string{"http-v1 batch=1 workers=1", "http-v1 batch=1 workers=16",
		"http-v2 batch=100 workers=1", "http-v2 batch=100 workers=16"} {
		if cells[c] != 1 {
			t.Errorf("cell %q: %d rows; rows: %v", c, cells[c], cells)
		}
	}
}

// TestRunExternal runs http-v1 and http-v2 with -external on a tiny
// workload: meterd, built from this module, in memory and on a file, each
// in its own process; every meterd row must be measured, verified over
// HTTP and carry the server's CPU time per request, and the v1 rows, when
// stripe-mock is installed, their ratios to it.
func TestRunExternal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds meterd")
	}
	args := []string{"-scenario", "http-v1,http-v2", "-external", "-conns", "4", "-duration", "300ms", "-customers", "50",
		"-progress=false"}
	if lookStripeMock() == "" {
		// Without stripe-mock installed, do not let the test install it.
		args = append(args, "-targets", "meterd-mem,meterd-file")
	}
	rep, out := runReport(t, args...)
	mock := false
	rows := map[string]Result{}
	for _, r := range rep.Results {
		rows[r.Scenario+" "+r.Target+" "+r.Cell] = r
		mock = mock || r.Target == "stripe-mock" && r.Skipped == ""
	}
	for _, name := range []string{"meterd-mem", "meterd-file"} {
		for _, k := range []string{"http-v1 " + name + " conns=4", "http-v2 " + name + " conns=4 batch=100"} {
			r, ok := rows[k]
			if !ok || r.Skipped != "" || r.Ops <= 0 || r.OpsPerSec <= 0 || r.Events < r.Ops || r.Verified == 0 {
				t.Errorf("%s: row not measured and verified: %+v", k, r)
			}
			if _, ok := r.Metrics[serverCPU]; !ok {
				t.Errorf("%s: no server CPU per request: %+v", k, r)
			}
			if mock && r.Scenario == "http-v1" && r.Ratio <= 0 {
				t.Errorf("%s: no ratio to stripe-mock: %+v", k, r)
			}
		}
	}
	if !strings.Contains(out, "server CPU/req") {
		t.Errorf("table lacks the server CPU column:\n%s", out)
	}
}

// The -external client's encoders write what the in-process HTTP
// targets' encoders write for the same events.
func TestExternalBodies(t *testing.T) {
	w := NewWorkload(5, 200, 3, 1.1)
	evs := w.Events(1000, 100)
	for j := range evs {
		want := httpAppendV1Event(nil, &evs[j])
		if got := w.appendV1Body(nil, 1000+uint64(j), 1); !bytes.Equal(got, want) {
			t.Fatalf("v1 body of event %d:\n got %s\nwant %s", 1000+j, got, want)
		}
	}
	want := httpAppendV2Stream(nil, evs)
	if got := w.appendStreamBody(nil, 1000, 100); !bytes.Equal(got, want) {
		t.Fatalf("v2 body:\n got %s\nwant %s", got, want)
	}
}
