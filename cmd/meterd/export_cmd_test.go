package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

// exportFixture writes a database file with a sum meter "tokens" and
// known usage of three customers over the last two days, and returns its
// path, the meter and the start of today (UTC).
func exportFixture(t *testing.T, dir string) (string, meter.Meter, time.Time) {
	t.Helper()
	path := filepath.Join(dir, "export.db")
	db, err := meterdb.Open(path, &meterdb.Options{NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m, err := db.CreateMeter(ctx, meter.Params{DisplayName: "tokens", EventName: "tokens", Formula: meter.Sum})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for i := range 60 {
		ts := now.Add(-time.Duration(i) * 47 * time.Minute)
		e := event.Event{Name: "tokens", Timestamp: ts, Payload: map[string]string{
			meter.DefaultCustomerKey: "cus_" + strconv.Itoa(i%3), meter.DefaultValueKey: strconv.Itoa(i + 1)}}
		if _, err := db.Record(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path, m, now.Truncate(24 * time.Hour)
}

// checkExportCSV checks that out holds exactly the non-empty hourly
// summaries of every customer of m over [from, to), read from the file at
// path opened read-only.
func checkExportCSV(t *testing.T, path string, m meter.Meter, from, to time.Time, out []byte) {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil || len(recs) < 2 || strings.Join(recs[0], ",") != "customer,meter,event_name,start,end,value,count" {
		t.Fatalf("export output: %v\n%s", err, out)
	}
	db, err := meterdb.Open(path, &meterdb.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var want [][]string
	for _, c := range []string{"cus_0", "cus_1", "cus_2"} {
		sums, err := db.Summaries(context.Background(), meterdb.SummaryParams{Meter: m.ID, Customer: c, Start: from, End: to, Grouping: meterdb.GroupHour})
		if err != nil {
			t.Fatal(err)
		}
		for i := len(sums) - 1; i >= 0; i-- {
			s := sums[i]
			want = append(want, []string{c, m.ID, m.EventName, s.Start.Format(time.RFC3339), s.End.Format(time.RFC3339),
				s.Value.String(), strconv.FormatInt(s.Count, 10)})
		}
	}
	got := recs[1:]
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d:\n%s", len(got), len(want), out)
	}
	for i := range want {
		if strings.Join(got[i], ",") != strings.Join(want[i], ",") {
			t.Fatalf("row %d is %q, want %q", i, got[i], want[i])
		}
	}
}

// TestExportCommand builds meterd, exports a file no process holds (read
// only), then serves the file with meterd and exports the same rows over
// HTTP; without -url the locked file gives a clear error, and bad flags
// exit with status 2.
func TestExportCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs meterd")
	}
	dir := t.TempDir()
	bin := buildMeterd(t)
	path, m, today := exportFixture(t, dir)
	from, to := today.Add(-2*24*time.Hour), today.Add(24*time.Hour)
	run := func(args ...string) (stdout, stderr string, code int) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"export"}, args...)...)
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			code = ee.ExitCode()
		case err != nil:
			t.Fatal(err)
		}
		return o.String(), e.String(), code
	}
	args := []string{"-meter", "tokens", "-from", from.Format(time.RFC3339), "-to", strconv.FormatInt(to.Unix(), 10), "-grouping", "hour"}

	fileOut, stderr, code := run(append(args, "-db", path)...)
	if code != 0 {
		t.Fatalf("export from the file: exit %d\n%s", code, stderr)
	}
	checkExportCSV(t, path, m, from, to, []byte(fileOut))

	d := startDaemon(t, bin, path)
	defer d.stop(t)
	httpOut, stderr, code := run(append(args, "-db", path, "-url", "http://"+d.addr, "-api-key", "sk_test_e2e")...)
	if code != 0 || httpOut != fileOut {
		t.Fatalf("export through meterd: exit %d, output equal to the file's: %v\n%s\n%s", code, httpOut == fileOut, stderr, httpOut)
	}
	if _, stderr, code := run(append(args, "-db", path)...); code != 1 || !strings.Contains(stderr, "is held by another process") {
		t.Fatalf("export of a held file without -url: exit %d, %s", code, stderr)
	}
	if _, stderr, code := run(append(args, "-url", "http://"+d.addr, "-api-key", "sk_test_wrong")...); code != 1 || !strings.Contains(stderr, "401") {
		t.Fatalf("export with a wrong key: exit %d, %s", code, stderr)
	}
	if _, stderr, code := run("-meter", "tokens", "-from", "1", "-to", "2", "-grouping", "hour", "-url", "http://"+d.addr, "-api-key", "sk_test_e2e"); code != 2 ||
		!strings.Contains(stderr, "start_time must be aligned with hour boundaries") {
		t.Fatalf("export through meterd with an unaligned -from: exit %d, %s", code, stderr)
	}
	if _, stderr, code := run("-meter", "tokens", "-from", "tomorrow", "-to", "2"); code != 2 || !strings.Contains(stderr, "-from:") {
		t.Fatalf("bad -from: exit %d, %s", code, stderr)
	}
}

// TestExportFlags runs meterd export in-process with bad flags: each gets
// status 2 and a message naming the problem.
func TestExportFlags(t *testing.T) {
	path, _, today := exportFixture(t, t.TempDir())
	from, to := today.Format(time.RFC3339), today.Add(24*time.Hour).Format(time.RFC3339)
	env := func(string) string { return "" }
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"-from", from, "-to", to}, "-meter is required"},
		{[]string{"-meter", "tokens", "-to", to}, "-from: a time is required"},
		{[]string{"-meter", "tokens", "-from", from, "-to", "2026-13-01"}, `-to: "2026-13-01" is neither`},
		{[]string{"-meter", "tokens", "-from", from, "-to", to, "-grouping", "week"}, `-grouping: "week" is not a grouping`},
		{[]string{"-meter", "tokens", "-from", from, "-to", to, "-format", "xml"}, `-format: "xml" is not a format`},
		{[]string{"-meter", "tokens", "-from", from, "-to", to, "extra"}, "unexpected arguments"},
		{[]string{"-nope"}, "flag provided but not defined: -nope"},
		{[]string{"-meter", "nope", "-from", from, "-to", to, "-db", path}, `No meter has id or event_name "nope"`},
		{[]string{"-meter", "tokens", "-from", from, "-to", to, "-db", path, "-grouping", "day", "-from",
			today.Add(time.Hour).Format(time.RFC3339)}, "start_time must be aligned with day (00:00 UTC) boundaries"},
		{[]string{"-meter", "tokens", "-from", to, "-to", from, "-db", path}, "end_time must be after start_time"},
	} {
		var stdout, stderr bytes.Buffer
		code := runExport(context.Background(), tc.args, env, &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), tc.msg) {
			t.Errorf("meterd export %q: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr.String(), tc.msg)
		}
		if stdout.Len() != 0 {
			t.Errorf("meterd export %q wrote %q", tc.args, stdout.String())
		}
	}
}
