package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meterdb/meterdb/meter"
)

// The soak scenario runs meterd, built from ./cmd/meterd, as a separate
// process on a database file in a small tmpfs, and drives it over
// loopback HTTP for -duration with mixed traffic (see soak_load.go) while
// the environment misbehaves: meterd is killed with SIGKILL and restarted
// on the same file every few minutes, and once the tmpfs is filled until
// writes fail, then freed. At the end the clients' ledger is checked
// against meterd's summaries after one more restart: every acknowledged,
// uncancelled event must count exactly once, and nothing else may count.

// soakPlan is what one soak does; soakPlanFor derives it from the command
// line.
type soakPlan struct {
	Duration       time.Duration // of the load
	Rate           int           // fresh events per second offered
	Customers      int
	Skew           float64
	Seed           uint64
	Kills          int           // SIGKILL episodes
	OutageGap      time.Duration // between a kill and the restart
	DiskFull       bool          // whether to make the disk full once
	FullHold       time.Duration // how long the disk stays full
	RecoveryWait   time.Duration // how long writes may take to succeed again once space is back
	TmpfsBytes     int64
	RequestTimeout time.Duration
	DrainTimeout   time.Duration // bound on retrying what is unanswered at the end
	SessionRenew   time.Duration // age at which the stream's session is replaced (sessions last 15 minutes)
}

// soakKillEvery is the spacing of the SIGKILL episodes.
const soakKillEvery = 2 * time.Minute

// A SIGKILL waits up to killAim for killInFlight write requests to be in
// flight.
const (
	killAim      = 2 * time.Second
	killInFlight = 2
)

// soakBytesPerEvent estimates the file bytes one event of the soak's
// traffic costs (its log record, dedupe entry, idempotency record and
// share of the stream's error reports; 293 to 301 were measured). The tmpfs gets
// twice that per offered event.
const soakBytesPerEvent = 300

func soakPlanFor(cfg config) soakPlan {
	d := cfg.Duration
	p := soakPlan{
		Duration: d, Rate: cfg.SoakRate, Customers: min(cfg.Customers, 100), Skew: cfg.Skew, Seed: cfg.Seed,
		Kills: max(1, int(d/soakKillEvery)), OutageGap: time.Second, DiskFull: true,
		FullHold:       min(60*time.Second, max(3*time.Second, d/30)),
		RecoveryWait:   min(30*time.Second, max(5*time.Second, d/60)),
		RequestTimeout: 10 * time.Second, DrainTimeout: 3 * time.Minute,
		SessionRenew: min(10*time.Minute, max(time.Second, d/3)),
	}
	need := int64(float64(p.Rate)*d.Seconds()) * soakBytesPerEvent
	p.TmpfsBytes = max(64<<20, 2*need)
	if cfg.SoakDisk > 0 {
		p.TmpfsBytes = cfg.SoakDisk
	}
	return p
}

// soak is one run of the scenario.
type soak struct {
	plan      soakPlan
	prog      *progress
	d         *meterdProc
	hc        *http.Client
	dir       string // the tmpfs mount (or a plain directory)
	t0        time.Time
	meters    []meter.Params
	meterIDs  []string
	customers []string

	led    ledger
	queue  retryQueue
	stats  [nKinds]kindStats
	seq    atomic.Uint64 // numbers Idempotency-Keys
	phaseV atomic.Int32

	acked          atomic.Int64          // events acknowledged
	cancelledN     atomic.Int64          // cancels acknowledged
	retryReplayed  atomic.Int64          // retries answered from the idempotency record
	retryFoundDup  atomic.Int64          // retries answered "already recorded" or "already cancelled"
	sessions       atomic.Int64          // meter event sessions created
	lastAckSent    atomic.Int64          // send time (unix ns) of the latest acknowledged fresh write
	acksInPhase    [nPhases]atomic.Int64 // fresh writes sent and acknowledged in one phase
	writesInFlight atomic.Int64          // event and cancel requests sent and not answered

	sessMu  sync.Mutex // guards the fields below
	token   string
	tokenAt time.Time

	errMu          sync.Mutex // guards the fields below
	errs           map[errKey]int64
	violations     []string
	violationCount int
	anomalies      []string
	anomalyCount   int

	loadRows []Result    // request figures when the load stopped
	tamper   func(*soak) // called before the final check (tests)

	rssMu sync.Mutex // guards rss
	rss   []SoakRSSSample
}

func (s *soak) phase() soakPhase     { return soakPhase(s.phaseV.Load()) }
func (s *soak) setPhase(p soakPhase) { s.phaseV.Store(int32(p)) }
func (s *soak) since() float64       { return time.Since(s.t0).Seconds() }

// runSoak is the soak scenario's entry in scenarioTable.
func (r *runner) runSoak(spec TargetSpec) ([]Result, error) {
	plan := soakPlanFor(r.cfg)
	if r.soakPlan != nil {
		r.soakPlan(&plan)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s := &soak{plan: plan, prog: r.prog, errs: map[errKey]int64{}, tamper: r.soakTamper}
	rep := &SoakReport{Plan: plan.report()}
	r.soakReport = rep
	err := s.run(ctx, rep)
	if err == nil && ctx.Err() != nil {
		err = errors.New("interrupted")
	}
	rows := s.loadRows
	if rows == nil {
		rows = s.rows(rep.LoadSeconds)
	}
	for i := range rows {
		rows[i].Verified = rep.Exactness.Series
	}
	if err != nil || !rep.Exactness.OK {
		if s.d != nil {
			_, rep.MeterdLogTail = s.d.logs.snapshot()
		}
	}
	if err != nil {
		rep.Failed = err.Error()
		return rows, err
	}
	if !rep.Exactness.OK {
		return rows, &VerifyError{Target: spec.Name, Detail: rep.Exactness.Verdict}
	}
	return rows, nil
}

// run sets up, drives the load and the episodes, checks the ledger and
// cleans up; rep is filled as far as the run got.
func (s *soak) run(ctx context.Context, rep *SoakReport) (err error) {
	work, err := os.MkdirTemp("", "meterdb-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	s.prog.note("soak: building meterd")
	bin, err := buildMeterd(ctx, work)
	if err != nil {
		return err
	}
	s.dir = filepath.Join(work, "disk")
	if err := os.Mkdir(s.dir, 0o700); err != nil {
		return err
	}
	if merr := mountTmpfs(s.dir, s.plan.TmpfsBytes); merr != nil {
		rep.DiskFull.Skipped = "no tmpfs: " + merr.Error()
		rep.Plan.TmpfsBytes = 0
		s.plan.DiskFull = false
	} else {
		defer func() {
			if uerr := unmountTmpfs(s.dir); uerr != nil {
				err = errors.Join(err, uerr)
			}
		}()
	}
	key := make([]byte, 16)
	rand.Read(key)
	s.d = &meterdProc{bin: bin, db: filepath.Join(s.dir, "meter.db"), key: "sk_test_soak_" + hex.EncodeToString(key)}
	s.hc = httpNewClient(64)
	defer s.hc.CloseIdleConnections()
	defer func() {
		if s.d.cmd != nil {
			s.d.kill()
		}
	}()

	open, err := s.d.start(ctx)
	if err != nil {
		return err
	}
	s.prog.note("soak: meterd listening at %s (opened in %v); tmpfs %s at %s", s.d.URL(), open.Round(time.Millisecond),
		fmtBytes(rep.Plan.TmpfsBytes), s.dir)
	if err := s.setup(ctx); err != nil {
		return err
	}

	s.t0 = time.Now()
	rssQuit := make(chan struct{})
	rssDone := s.sampleRSS(rssQuit)
	defer func() {
		close(rssQuit)
		<-rssDone
		rep.RSS = s.rssReport()
	}()

	stopLoad, quitRetry := make(chan struct{}), make(chan struct{})
	load := s.runLoad(ctx, stopLoad)
	retries := s.runRetries(ctx, quitRetry)
	s.prog.start(fmt.Sprintf("soak: %d events/s offered, %d kills, disk full %v; events acknowledged", s.plan.Rate, s.plan.Kills, s.plan.DiskFull),
		s.plan.Duration, &s.acked)
	cerr := s.control(ctx, rep)
	close(stopLoad)
	load.Wait()
	s.prog.stop()
	rep.LoadSeconds = s.since()
	s.loadRows = s.rows(rep.LoadSeconds)
	if cerr == nil && ctx.Err() != nil {
		cerr = errors.New("interrupted")
	}
	if cerr != nil {
		close(quitRetry)
		retries.Wait()
		s.fillReport(rep)
		return cerr
	}

	// Retry whatever is still unanswered.
	s.setPhase(phaseDrain)
	s.prog.note("soak: load stopped after %.1fs; retrying %d unanswered requests", rep.LoadSeconds, s.queue.size())
	deadline := time.Now().Add(s.plan.DrainTimeout)
	for s.queue.size() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	close(quitRetry)
	retries.Wait()
	rep.UnansweredAfterDrain = s.queue.size()

	// One more restart, then the check.
	rep.FinalStop = s.d.stop(30 * time.Second)
	open, err = s.d.start(ctx)
	if err != nil {
		s.fillReport(rep)
		return fmt.Errorf("final restart: %w", err)
	}
	rep.FinalOpenSeconds = open.Seconds()
	s.setPhase(phaseFinal)
	s.prog.note("soak: meterd stopped (%s) and restarted in %v; checking", rep.FinalStop, open.Round(time.Millisecond))
	s.probeDuplicates(ctx)
	if s.tamper != nil {
		s.tamper(s)
	}
	ex, err := s.checkExactness(ctx)
	rep.Exactness = ex
	s.fillReport(rep)
	if err != nil {
		return err
	}
	rep.Exactness = s.verdict(rep.Exactness)
	if fi, err := os.Stat(s.d.db); err == nil {
		rep.DBFileBytes, rep.DBAllocatedBytes = fi.Size(), allocatedBytes(fi)
	}
	rep.FinalStopAfterCheck = s.d.stop(30 * time.Second)
	return nil
}

// setup creates the soak's meters (a sum and a count meter) and
// customers.
func (s *soak) setup(ctx context.Context) error {
	s.meters = []meter.Params{
		{DisplayName: "soak tokens", EventName: "soak_tokens", Formula: meter.Sum},
		{DisplayName: "soak requests", EventName: "soak_requests", Formula: meter.Count},
	}
	for _, p := range s.meters {
		form := url.Values{"display_name": {p.DisplayName}, "event_name": {p.EventName}, "default_aggregation[formula]": {string(p.Formula)}}
		rep := s.do(ctx, http.MethodPost, "/v1/billing/meters", s.d.key, []byte(form.Encode()), s.idemKey())
		if rep.status != http.StatusOK {
			return fmt.Errorf("creating meter %s: %s: %s", p.EventName, rep.describe(), rep.body)
		}
		var m struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(rep.body, &m); err != nil || m.ID == "" {
			return fmt.Errorf("creating meter %s: no id in %s", p.EventName, rep.body)
		}
		s.meterIDs = append(s.meterIDs, m.ID)
	}
	for c := range s.plan.Customers {
		s.customers = append(s.customers, fmt.Sprintf("cus_soak_%04d", c))
	}
	return nil
}

// control runs the episodes at their times: plan.Kills SIGKILL restarts
// and, in the middle slot, the disk-full episode; it returns when
// plan.Duration has passed and the last episode is over.
func (s *soak) control(ctx context.Context, rep *SoakReport) error {
	slots := s.plan.Kills
	if s.plan.DiskFull {
		slots++
	}
	full := -1
	if s.plan.DiskFull {
		full = slots / 2
	}
	wait := func(until time.Time) bool {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for i := range slots {
		at := s.t0.Add(s.plan.Duration * time.Duration(i+1) / time.Duration(slots+1))
		if !wait(at) {
			return nil
		}
		if i == full {
			if err := s.diskFull(ctx, &rep.DiskFull); err != nil {
				return err
			}
			continue
		}
		k, err := s.kill(ctx)
		rep.Kills = append(rep.Kills, k)
		if err != nil {
			return err
		}
	}
	wait(s.t0.Add(s.plan.Duration))
	return nil
}

// kill is one SIGKILL episode. The signal goes out while write requests
// are in flight (waiting up to killAim for killInFlight of them), so that
// some die with the process after their commit and before their answer,
// and their retries must find them recorded.
func (s *soak) kill(ctx context.Context) (SoakKill, error) {
	k := SoakKill{AtSeconds: s.since(), QueuedBefore: s.queue.size()}
	for aim := time.Now().Add(killAim); s.writesInFlight.Load() < killInFlight && time.Now().Before(aim); {
		time.Sleep(50 * time.Microsecond)
	}
	k.InFlight = s.writesInFlight.Load()
	s.setPhase(phaseOutage)
	t0 := time.Now()
	if err := s.d.kill(); err != nil {
		return k, fmt.Errorf("SIGKILL: %w", err)
	}
	time.Sleep(s.plan.OutageGap)
	open, err := s.d.start(ctx)
	if err != nil {
		return k, fmt.Errorf("restart after SIGKILL: %w", err)
	}
	s.setPhase(phaseSteady)
	k.OpenSeconds, k.DownSeconds = open.Seconds(), time.Since(t0).Seconds()
	k.QueuedAfter = s.queue.size()
	s.prog.note("soak: SIGKILL at %.1fs; meterd back after %.2fs (open %.2fs); %d requests to retry",
		k.AtSeconds, k.DownSeconds, k.OpenSeconds, k.QueuedAfter)
	return k, nil
}

// diskFull is the disk-full episode: fill the tmpfs, keep the load on for
// plan.FullHold, free the space, and wait up to plan.RecoveryWait for a
// write sent after that to be acknowledged; without one, restart meterd.
func (s *soak) diskFull(ctx context.Context, df *SoakDiskFull) error {
	df.AtSeconds = s.since()
	fill := filepath.Join(s.dir, "fill")
	t0 := time.Now()
	n, ferr := fillDisk(fill)
	df.FillBytes, df.FillSeconds = n, time.Since(t0).Seconds()
	if ferr != nil {
		os.Remove(fill)
		return fmt.Errorf("filling the tmpfs: %w", ferr)
	}
	// The phase starts once the file system is full: what fails from now
	// on failed for want of space.
	s.setPhase(phaseDiskFull)
	t0 = time.Now()
	s.prog.note("soak: disk full at %.1fs (%s written); holding %v", df.AtSeconds, fmtBytes(n), s.plan.FullHold)
	time.Sleep(s.plan.FullHold)
	df.HoldSeconds = time.Since(t0).Seconds()
	df.AckedWhileFull = s.acksInPhase[phaseDiskFull].Load()
	if err := os.Remove(fill); err != nil {
		return fmt.Errorf("freeing the tmpfs: %w", err)
	}
	freed := time.Now()
	s.setPhase(phaseRecovery)
	for time.Since(freed) < s.plan.RecoveryWait && ctx.Err() == nil {
		if s.lastAckSent.Load() >= freed.UnixNano() {
			df.RecoveredWithoutRestart = true
			df.RecoverySeconds = time.Since(freed).Seconds()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if df.RecoveredWithoutRestart {
		s.setPhase(phaseSteady)
		s.prog.note("soak: space freed; writes acknowledged again after %.2fs, no restart", df.RecoverySeconds)
		return nil
	}
	s.setPhase(phaseRestart)
	df.Restart = s.d.stop(30 * time.Second)
	open, err := s.d.start(ctx)
	if err != nil {
		return fmt.Errorf("restart after the disk-full episode: %w", err)
	}
	df.RestartOpenSeconds = open.Seconds()
	s.setPhase(phaseSteady)
	s.prog.note("soak: space freed; no write acknowledged within %v, so meterd was restarted (%s)", s.plan.RecoveryWait, df.Restart)
	return nil
}

// fillDisk writes zeros to path until the file system is full and returns
// how many bytes it wrote. ENOSPC is the expected end, not an error.
func fillDisk(path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for range 1 << 16 { // at most 64 GiB
		w, err := f.Write(buf)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			// Fill the last partial pages too.
			for _, sz := range []int{64 << 10, 4 << 10} {
				for {
					w, err := f.Write(buf[:sz])
					n += int64(w)
					if err != nil {
						break
					}
				}
			}
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, errors.New("no ENOSPC after 64 GiB")
}

// sampleRSS records meterd's RSS every second until quit is closed.
func (s *soak) sampleRSS(quit <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			pid := s.d.pid.Load()
			if pid == 0 {
				continue
			}
			if rss, anon := procMemory(strconv.FormatInt(pid, 10)); rss > 0 {
				s.rssMu.Lock()
				s.rss = append(s.rss, SoakRSSSample{Seconds: s.since(), Bytes: rss, Anon: anon, Process: int(s.d.gen.Load())})
				s.rssMu.Unlock()
			}
		}
	}()
	return done
}

// checkExactness compares the ledger with meterd's summaries: for every
// meter and customer, the total over a range covering every event sent.
func (s *soak) checkExactness(ctx context.Context) (SoakExactness, error) {
	var ex SoakExactness
	s.led.mu.Lock()
	evs := slices.Clone(s.led.evs)
	s.led.mu.Unlock()
	nm, nc := len(s.meters), len(s.customers)
	want := make([]int64, nm*nc)
	pending := make([]int64, nm*nc) // what unresolved events could add
	for _, e := range evs {
		ex.Events++
		i := int(e.meter)*nc + int(e.cust)
		v := int64(e.value)
		if s.meters[e.meter].Formula == meter.Count {
			v = 1
		}
		switch e.state {
		case evPending:
			ex.Unresolved++
			pending[i] += v
		case evRejected:
			ex.Rejected++
		case evAcked:
			ex.Acked++
			switch e.cancel {
			case cancelDone:
				ex.Cancelled++
			case cancelPending:
				ex.CancelsUnresolved++
				want[i] += v
				pending[i] -= v
			default:
				want[i] += v
			}
		}
	}
	start := s.t0.Add(-2 * time.Hour).Truncate(time.Minute)
	end := time.Now().Add(10 * time.Minute).Truncate(time.Minute)
	for m := range nm {
		for c := range nc {
			i := m*nc + c
			q := url.Values{"customer": {s.customers[c]}, "start_time": {strconv.FormatInt(start.Unix(), 10)},
				"end_time": {strconv.FormatInt(end.Unix(), 10)}}
			rep := s.do(ctx, http.MethodGet, "/v1/billing/meters/"+s.meterIDs[m]+"/event_summaries?"+q.Encode(), s.d.key, nil, "")
			if rep.status != http.StatusOK {
				return ex, fmt.Errorf("summary of %s for %s: %s: %s", s.meters[m].EventName, s.customers[c], rep.describe(), rep.body)
			}
			var list struct {
				Data []struct {
					Value json.Number `json:"aggregated_value"`
				} `json:"data"`
			}
			if err := json.Unmarshal(rep.body, &list); err != nil || len(list.Data) != 1 {
				return ex, fmt.Errorf("summary of %s for %s: want one summary, got %s", s.meters[m].EventName, s.customers[c], rep.body)
			}
			got, err := list.Data[0].Value.Int64()
			if err != nil {
				return ex, fmt.Errorf("summary of %s for %s: aggregated_value %s is not an integer", s.meters[m].EventName, s.customers[c], list.Data[0].Value)
			}
			ex.Series++
			ex.Total += got
			if got != want[i] {
				ex.MismatchCount++
				if len(ex.Mismatches) < 20 {
					note := ""
					if pending[i] != 0 {
						note = fmt.Sprintf(" (unresolved requests could account for %+d)", pending[i])
					}
					ex.Mismatches = append(ex.Mismatches, fmt.Sprintf("%s %s: meterd %d, ledger %d, difference %+d%s",
						s.meters[m].EventName, s.customers[c], got, want[i], got-want[i], note))
				}
			}
		}
	}
	return ex, nil
}

// verdict decides the exactness check: no mismatch, no violation seen by
// a client, no valid request rejected, nothing left unresolved.
func (s *soak) verdict(ex SoakExactness) SoakExactness {
	s.errMu.Lock()
	ex.Violations, ex.ViolationCount = slices.Clone(s.violations), s.violationCount
	ex.Anomalies, ex.AnomalyCount = slices.Clone(s.anomalies), s.anomalyCount
	s.errMu.Unlock()
	var why []string
	if ex.MismatchCount > 0 {
		why = append(why, fmt.Sprintf("%d of %d series differ from the ledger", ex.MismatchCount, ex.Series))
	}
	if ex.ViolationCount > 0 {
		why = append(why, fmt.Sprintf("%d duplicates or cancels answered wrongly", ex.ViolationCount))
	}
	if ex.AnomalyCount > 0 {
		why = append(why, fmt.Sprintf("%d valid events or cancels rejected for good", ex.AnomalyCount))
	}
	if ex.Unresolved > 0 || ex.CancelsUnresolved > 0 {
		why = append(why, fmt.Sprintf("%d events and %d cancels still unanswered after the drain", ex.Unresolved, ex.CancelsUnresolved))
	}
	if ex.Series == 0 || ex.Acked == 0 {
		why = append(why, "nothing was checked")
	}
	ex.OK = len(why) == 0
	if ex.OK {
		ex.Verdict = fmt.Sprintf("exact: %d acknowledged events (%d cancelled) match meterd's summaries in all %d series",
			ex.Acked, ex.Cancelled, ex.Series)
	} else {
		ex.Verdict = "NOT exact: " + strings.Join(why, "; ")
	}
	return ex
}
