package main

import (
	"cmp"
	"fmt"
	"html"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// SoakReport is what the soak scenario found; -json writes it as "soak".
// The request rates and latencies by kind are the scenario's rows in
// Results.
type SoakReport struct {
	Plan        SoakPlanReport `json:"plan"`
	LoadSeconds float64        `json:"load_seconds"`
	LoadAvgEnd  string         `json:"load_avg_end"`
	Kills       []SoakKill     `json:"kills"`
	DiskFull    SoakDiskFull   `json:"disk_full"`
	// Errors counts the replies that were not the intended one, by phase,
	// kind of request and reply ("500 api_error", "connection refused").
	Errors []SoakErrorCount `json:"errors"`
	// Sessions is the number of meter event sessions created.
	Sessions int64 `json:"sessions"`
	// RetriesFoundRecorded counts retries answered duplicate_meter_event
	// or meter_event_already_cancelled: an earlier attempt had been
	// recorded, its answer lost.
	RetriesFoundRecorded int64 `json:"retries_found_recorded"`
	// RetriesReplayed counts retries answered 200 with
	// Idempotent-Replayed: true, from the first attempt's record.
	RetriesReplayed      int64 `json:"retries_replayed"`
	UnansweredAfterDrain int   `json:"unanswered_after_drain"`
	// FinalStop is how meterd ended on SIGTERM after the load;
	// FinalStopAfterCheck, after the check.
	FinalStop           string  `json:"final_stop"`
	FinalOpenSeconds    float64 `json:"final_open_seconds"`
	FinalStopAfterCheck string  `json:"final_stop_after_check,omitempty"`
	RSS                 SoakRSS `json:"meterd_rss"`
	// DBFileBytes is the database file's size at the end;
	// DBAllocatedBytes what it occupies in the tmpfs.
	DBFileBytes      int64 `json:"db_file_bytes"`
	DBAllocatedBytes int64 `json:"db_allocated_bytes"`
	// MeterdErrorLines counts meterd's level=ERROR log records, all
	// processes together.
	MeterdErrorLines int64         `json:"meterd_error_lines"`
	MeterdLogTail    []string      `json:"meterd_log_tail,omitempty"`
	Exactness        SoakExactness `json:"exactness"`
	Failed           string        `json:"failed,omitempty"`
}

// SoakPlanReport is the plan of the run.
type SoakPlanReport struct {
	Duration     string   `json:"duration"`
	Rate         int      `json:"offered_events_per_sec"`
	Customers    int      `json:"customers"`
	Meters       []string `json:"meters"`
	Kills        int      `json:"kills"`
	DiskFull     bool     `json:"disk_full"`
	FullHold     string   `json:"full_hold"`
	RecoveryWait string   `json:"recovery_wait"`
	TmpfsBytes   int64    `json:"tmpfs_bytes"`
}

// recoveryWait returns RecoveryWait in seconds.
func (p SoakPlanReport) recoveryWait() float64 {
	d, _ := time.ParseDuration(p.RecoveryWait)
	return d.Seconds()
}

func (p soakPlan) report() SoakPlanReport {
	return SoakPlanReport{
		Duration: p.Duration.String(), Rate: p.Rate, Customers: p.Customers,
		Meters: []string{"soak_tokens (sum)", "soak_requests (count)"}, Kills: p.Kills, DiskFull: p.DiskFull,
		FullHold: p.FullHold.String(), RecoveryWait: p.RecoveryWait.String(), TmpfsBytes: p.TmpfsBytes,
	}
}

// SoakKill is one SIGKILL episode: when (seconds into the load), the
// write requests in flight at the signal, how long meterd was down, how
// long the new process took to open the file and listen, and the requests
// waiting for a retry before and after.
type SoakKill struct {
	AtSeconds    float64 `json:"at_seconds"`
	InFlight     int64   `json:"in_flight"`
	DownSeconds  float64 `json:"down_seconds"`
	OpenSeconds  float64 `json:"open_seconds"`
	QueuedBefore int     `json:"queued_before"`
	QueuedAfter  int     `json:"queued_after"`
}

// SoakDiskFull is the disk-full episode.
type SoakDiskFull struct {
	Skipped     string  `json:"skipped,omitempty"`
	AtSeconds   float64 `json:"at_seconds,omitempty"`
	FillBytes   int64   `json:"fill_bytes,omitempty"`
	FillSeconds float64 `json:"fill_seconds,omitempty"`
	HoldSeconds float64 `json:"hold_seconds,omitempty"`
	// Replies are the failed replies while the disk was full (phase
	// disk-full), after space was freed (phase recovery) and, if writes
	// did not recover, while meterd was restarted (phase restart).
	Replies []SoakErrorCount `json:"replies,omitempty"`
	// AckedWhileFull counts fresh write requests sent and acknowledged
	// while the disk was full.
	AckedWhileFull int64 `json:"acked_while_full"`
	// RecoveredWithoutRestart tells whether a write sent after space was
	// freed was acknowledged within the plan's RecoveryWait, by the same
	// process; RecoverySeconds is how long after the freeing.
	RecoveredWithoutRestart bool    `json:"recovered_without_restart"`
	RecoverySeconds         float64 `json:"recovery_seconds,omitempty"`
	// Restart is how meterd ended on SIGTERM when it had to be restarted.
	Restart            string  `json:"restart,omitempty"`
	RestartOpenSeconds float64 `json:"restart_open_seconds,omitempty"`
}

// SoakErrorCount is one line of the error counts.
type SoakErrorCount struct {
	Phase string `json:"phase"`
	Kind  string `json:"kind"`
	Reply string `json:"reply"`
	Count int64  `json:"count"`
}

// SoakRSS is meterd's resident set size, sampled every second.
type SoakRSS struct {
	MaxBytes     int64           `json:"max_bytes"`
	P50Bytes     int64           `json:"p50_bytes"`
	MaxAnonBytes int64           `json:"max_anon_bytes"`
	Samples      []SoakRSSSample `json:"samples"`
}

// SoakRSSSample is one sample of VmRSS and RssAnon (VmRSS without
// the pages of mapped files, the database file among them); Process
// numbers the meterd processes from 1.
type SoakRSSSample struct {
	Seconds float64 `json:"t"`
	Bytes   int64   `json:"rss"`
	Anon    int64   `json:"rss_anon"`
	Process int     `json:"process"`
}

// SoakExactness is the final check of the ledger against meterd.
type SoakExactness struct {
	OK      bool   `json:"ok"`
	Verdict string `json:"verdict"`
	// Events the clients created, and what became of them.
	Events            int64 `json:"events"`
	Acked             int64 `json:"acked"`
	Cancelled         int64 `json:"cancelled"`
	Rejected          int64 `json:"rejected"`
	Unresolved        int64 `json:"unresolved"`
	CancelsUnresolved int64 `json:"cancels_unresolved"`
	// Series is the number of (meter, customer) summaries compared; Total
	// the sum of their values.
	Series         int      `json:"series"`
	Total          int64    `json:"total"`
	MismatchCount  int      `json:"mismatch_count"`
	Mismatches     []string `json:"mismatches,omitempty"`
	ViolationCount int      `json:"violation_count"`
	Violations     []string `json:"violations,omitempty"`
	AnomalyCount   int      `json:"anomaly_count"`
	Anomalies      []string `json:"anomalies,omitempty"`
}

// rows returns the request figures by kind, over the load's seconds.
func (s *soak) rows(seconds float64) []Result {
	var rows []Result
	for k := range nKinds {
		st := &s.stats[k]
		ok, failed := st.ok.Load(), st.failed.Load()
		if ok+failed == 0 {
			continue
		}
		r := Result{Cell: k.String(), Seconds: seconds, Ops: ok + failed, Events: st.events.Load(),
			Latency: percentiles(st.latencies()), Metrics: map[string]float64{"ok": float64(ok), "failed": float64(failed)}}
		if seconds > 0 {
			r.OpsPerSec, r.EventsPerSec = float64(r.Ops)/seconds, float64(r.Events)/seconds
		}
		rows = append(rows, r)
	}
	return rows
}

// fillReport copies the counters into rep.
func (s *soak) fillReport(rep *SoakReport) {
	load, _ := os.ReadFile("/proc/loadavg")
	rep.LoadAvgEnd = strings.TrimSpace(string(load))
	s.errMu.Lock()
	for k, n := range s.errs {
		e := SoakErrorCount{Phase: k.phase.String(), Kind: k.kind.String(), Reply: k.what, Count: n}
		rep.Errors = append(rep.Errors, e)
		if k.phase == phaseDiskFull || k.phase == phaseRecovery || k.phase == phaseRestart {
			rep.DiskFull.Replies = append(rep.DiskFull.Replies, e)
		}
	}
	s.errMu.Unlock()
	order := func(a, b SoakErrorCount) int {
		return cmp.Or(cmp.Compare(phaseIndex(a.Phase), phaseIndex(b.Phase)), cmp.Compare(b.Count, a.Count),
			strings.Compare(a.Kind, b.Kind), strings.Compare(a.Reply, b.Reply))
	}
	slices.SortFunc(rep.Errors, order)
	slices.SortFunc(rep.DiskFull.Replies, order)
	rep.Sessions = s.sessions.Load()
	rep.RetriesFoundRecorded = s.retryFoundDup.Load()
	rep.RetriesReplayed = s.retryReplayed.Load()
	if s.d != nil {
		rep.MeterdErrorLines, _ = s.d.logs.snapshot()
	}
}

func phaseIndex(name string) int { return slices.Index(phaseNames[:], name) }

// rssReport summarizes the RSS samples.
func (s *soak) rssReport() SoakRSS {
	s.rssMu.Lock()
	defer s.rssMu.Unlock()
	r := SoakRSS{Samples: slices.Clone(s.rss)}
	if len(s.rss) == 0 {
		return r
	}
	b := make([]int64, len(s.rss))
	for i, x := range s.rss {
		b[i] = x.Bytes
		r.MaxAnonBytes = max(r.MaxAnonBytes, x.Anon)
	}
	slices.Sort(b)
	r.MaxBytes, r.P50Bytes = b[len(b)-1], b[len(b)/2]
	return r
}

// errorsByReply sums the error counts by reply, largest first.
func (rep *SoakReport) errorsByReply() string {
	sum := map[string]int64{}
	for _, e := range rep.Errors {
		sum[e.Reply] += e.Count
	}
	if len(sum) == 0 {
		return "none"
	}
	keys := slices.Collect(maps.Keys(sum))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(sum[b], sum[a]), strings.Compare(a, b)) })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, sum[k]))
	}
	return strings.Join(parts, ", ")
}

// byProcess lists the largest sample of each meterd process, in order.
func (r SoakRSS) byProcess() string {
	var parts []string
	var cur int
	var top int64
	flush := func() {
		if cur > 0 {
			parts = append(parts, fmt.Sprintf("#%d %s", cur, fmtBytes(top)))
		}
	}
	for _, s := range r.Samples {
		if s.Process != cur {
			flush()
			cur, top = s.Process, 0
		}
		top = max(top, s.Bytes)
	}
	flush()
	return strings.Join(parts, ", ")
}

// fmtBytes writes n in MiB (or KiB below one MiB).
func fmtBytes(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// lines returns the soak's findings as lines of text, for the table and
// the HTML report.
func (rep *SoakReport) lines() []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	p := rep.Plan
	add("plan: %s of load, %d fresh events/s offered (80%% in stream requests of 100, 10%% v1, 10%% v2), %d customers, meters %s; %d SIGKILL restarts; tmpfs %s",
		p.Duration, p.Rate, p.Customers, strings.Join(p.Meters, " and "), p.Kills, fmtBytes(p.TmpfsBytes))
	add("load ran %.1fs; load average at the end %s", rep.LoadSeconds, rep.LoadAvgEnd)
	for i, k := range rep.Kills {
		add("kill %d: SIGKILL at %.1fs with %d write requests in flight, down %.2fs (new process open and listening in %.2fs); requests awaiting retry: %d before, %d after",
			i+1, k.AtSeconds, k.InFlight, k.DownSeconds, k.OpenSeconds, k.QueuedBefore, k.QueuedAfter)
	}
	df := rep.DiskFull
	switch {
	case df.Skipped != "":
		add("disk full: skipped (%s)", df.Skipped)
	case df.FillBytes == 0 && df.AtSeconds == 0:
		add("disk full: not reached")
	default:
		add("disk full at %.1fs: %s written until ENOSPC in %.2fs, held %.1fs; %d fresh write requests acknowledged while full",
			df.AtSeconds, fmtBytes(df.FillBytes), df.FillSeconds, df.HoldSeconds, df.AckedWhileFull)
		for _, e := range df.Replies {
			add("  %s: %s: %s ×%d", e.Phase, e.Kind, e.Reply, e.Count)
		}
		if df.RecoveredWithoutRestart {
			add("  after freeing the space: writes acknowledged again after %.2fs WITHOUT a restart", df.RecoverySeconds)
		} else {
			add("  after freeing the space: NO write acknowledged within %s without a restart; meterd on SIGTERM: %s; restarted (open %.2fs)",
				p.RecoveryWait, df.Restart, df.RestartOpenSeconds)
		}
	}
	add("meterd RSS: max %s, p50 %s over %d one-second samples; max by process: %s; RssAnon (without mapped file pages) max %s, %.0f bytes per acknowledged event",
		fmtBytes(rep.RSS.MaxBytes), fmtBytes(rep.RSS.P50Bytes), len(rep.RSS.Samples), rep.RSS.byProcess(), fmtBytes(rep.RSS.MaxAnonBytes),
		float64(rep.RSS.MaxAnonBytes)/float64(max(1, rep.Exactness.Acked)))
	if rep.DBFileBytes > 0 {
		add("database file at the end: %s (%s allocated in the tmpfs), %.0f bytes per event created",
			fmtBytes(rep.DBFileBytes), fmtBytes(rep.DBAllocatedBytes), float64(rep.DBAllocatedBytes)/float64(max(1, rep.Exactness.Events)))
	}
	add("errors by reply: %s", rep.errorsByReply())
	add("errors by phase, kind and reply (events and cancels retried with the same identifiers until answered):")
	for _, e := range rep.Errors {
		add("  %s: %s: %s ×%d", e.Phase, e.Kind, e.Reply, e.Count)
	}
	add("retries whose first attempt had been recorded: %d replayed from the idempotency record, %d answered duplicate_meter_event or meter_event_already_cancelled",
		rep.RetriesReplayed, rep.RetriesFoundRecorded)
	add("meter event sessions: %d; meterd ERROR log records: %d", rep.Sessions, rep.MeterdErrorLines)
	add("after the load: %d requests unanswered after the drain; meterd on SIGTERM: %s; reopened in %.2fs; on SIGTERM after the check: %s",
		rep.UnansweredAfterDrain, rep.FinalStop, rep.FinalOpenSeconds, rep.FinalStopAfterCheck)
	ex := rep.Exactness
	add("ledger: %d events created, %d acknowledged, %d of them cancelled, %d rejected, %d unresolved; %d series, total %d",
		ex.Events, ex.Acked, ex.Cancelled, ex.Rejected, ex.Unresolved, ex.Series, ex.Total)
	for _, m := range ex.Mismatches {
		add("  mismatch: %s", m)
	}
	for _, v := range ex.Violations {
		add("  violation: %s", v)
	}
	for _, a := range ex.Anomalies {
		add("  anomaly: %s", a)
	}
	if ex.Verdict != "" {
		add("exactness: %s", ex.Verdict)
	}
	if rep.Failed != "" {
		add("soak FAILED: %s", rep.Failed)
	}
	if len(rep.MeterdLogTail) > 0 && (rep.Failed != "" || !ex.OK) {
		add("meterd's last log lines:")
		for _, l := range rep.MeterdLogTail {
			add("  %s", l)
		}
	}
	return out
}

func (rep *SoakReport) writeText(w io.Writer) {
	for _, l := range rep.lines() {
		fmt.Fprintln(w, l)
	}
}

// soakHTML returns the soak's findings and an RSS chart.
func (rep *SoakReport) soakHTML() string {
	var b strings.Builder
	cls := ""
	if !rep.Exactness.OK {
		cls = ` class="fail"`
	}
	fmt.Fprintf(&b, "<p%s>%s</p>\n<pre style=\"white-space:pre-wrap\">", cls, html.EscapeString(rep.Exactness.Verdict))
	for _, l := range rep.lines() {
		b.WriteString(html.EscapeString(l) + "\n")
	}
	b.WriteString("</pre>\n")
	b.WriteString(rep.rssChart())
	return b.String()
}

// rssChart draws meterd's RSS over time, with the kills and the disk-full
// episode marked.
func (rep *SoakReport) rssChart() string {
	ss := rep.RSS.Samples
	if len(ss) < 2 {
		return ""
	}
	const W, H, L, R, T, B = 760, 300, 70, 20, 30, 40
	tmax := max(ss[len(ss)-1].Seconds, rep.LoadSeconds, 1)
	ymax := niceMax(float64(rep.RSS.MaxBytes) / (1 << 20))
	x := func(t float64) float64 { return L + (W-L-R)*t/tmax }
	y := func(mib float64) float64 { return T + (H-T-B)*(1-mib/ymax) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">`, W, H, W, H)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-weight="bold">meterd RSS (MiB, blue; RssAnon green) against seconds; red: SIGKILL; orange: disk full, dashed: restart after it</text>`, L)
	for i := 0; i <= 5; i++ {
		v := ymax * float64(i) / 5
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" text-anchor="end">%.0f</text>`,
			L, W-R, y(v), y(v), L-6, y(v)+4, v)
	}
	for i := 0; i <= 5; i++ {
		t := tmax * float64(i) / 5
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%.0f</text>`, x(t), H-B+16, t)
	}
	if df := rep.DiskFull; df.HoldSeconds > 0 {
		end := df.AtSeconds + df.FillSeconds + df.HoldSeconds
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#ff7f0e" opacity="0.25"/>`,
			x(df.AtSeconds), T, max(1, x(end)-x(df.AtSeconds)), H-T-B)
		if df.Restart != "" {
			rx := x(end + rep.Plan.recoveryWait())
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#ff7f0e" stroke-dasharray="4 3"/>`, rx, rx, T, H-B)
		}
	}
	for _, k := range rep.Kills {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#d62728"/>`, x(k.AtSeconds), x(k.AtSeconds), T, H-B)
	}
	for _, line := range []struct {
		color string
		v     func(SoakRSSSample) int64
	}{{"#1f77b4", func(s SoakRSSSample) int64 { return s.Bytes }}, {"#2ca02c", func(s SoakRSSSample) int64 { return s.Anon }}} {
		var pts []string
		proc := ss[0].Process
		flush := func() {
			if len(pts) > 0 {
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, line.color, strings.Join(pts, " "))
			}
			pts = pts[:0]
		}
		for _, s := range ss {
			if s.Process != proc {
				flush() // a new process: the line breaks
				proc = s.Process
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(s.Seconds), y(float64(line.v(s))/(1<<20))))
		}
		flush()
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// soakDurationNote is appended to -duration's help.
var soakDurationNote = fmt.Sprintf("; the soak's whole load (one SIGKILL restart per %v, at least one)", soakKillEvery.Round(time.Minute))
