package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

// The dedupe-day scenario drives Options.Now through -dedupe-hours
// simulated hours while -dedupe-ids fresh identifiers arrive at an even
// pace, 1 % of them followed by a resend of an identifier received
// earlier within the dedupe window (uniform over the window, ten minutes
// clear of its edge). Every resend must come back as a duplicate and no
// fresh identifier may. At the end it reports the dedupe index's memory
// per identifier of the window from a heap profile (the in-use bytes
// allocated under internal/dedupe), the file's bytes per identifier,
// the ingest rate of every simulated hour, the confirmation reads per
// fresh identifier, and (file) the time Open takes to rebuild the index
// from the full window, after which a sample of resends is checked again.

// dedupeDay holds the scenario's parameters.
type dedupeDay struct {
	ids    int           // fresh identifiers
	hours  int           // simulated hours
	window time.Duration // the dedupe window (the default, 24 h)
	batch  int
}

// dayID returns the identifier of fresh event f: 36 characters.
func dayID(f int) string {
	var b [36]byte
	copy(b[:], "evt_")
	x := splitmix(uint64(f))
	y := splitmix(x)
	const hex = "0123456789abcdef"
	for i := range 16 {
		b[4+i] = hex[x>>(60-4*i)&15]
		b[20+i] = hex[y>>(60-4*i)&15]
	}
	return string(b[:])
}

func splitmix(x uint64) uint64 {
	x += 0x9E3779B97F4A7C15
	x = (x ^ x>>30) * 0xBF58476D1CE4E5B9
	x = (x ^ x>>27) * 0x94D049BB133111EB
	return x ^ x>>31
}

func (r *runner) runDedupeDay(spec TargetSpec) ([]Result, error) {
	p := dedupeDay{ids: r.cfg.DedupeIDs, hours: r.cfg.DedupeHours, window: 24 * time.Hour, batch: 1000}
	if r.cfg.BatchesSet {
		p.batch = r.cfg.Batches[0]
	}
	cell := fmt.Sprintf("ids=%d hours=%d batch=%d", p.ids, p.hours, p.batch)
	row := Result{Cell: cell, Target: spec.Name, Batch: p.batch, Workers: 2, API: "typed", Metrics: map[string]float64{}}
	runtime.MemProfileRate = 64 << 10
	path, cleanup, err := scenarioPath(spec, "day.db")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var clock atomic.Int64
	clock.Store(t0.UnixNano())
	opts := &meterdb.Options{Now: func() time.Time { return time.Unix(0, clock.Load()) }, Durability: meterdb.DurabilityBuffered}
	db, err := meterdb.Open(path, opts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if db != nil {
			db.Close()
		}
	}()
	if _, err := db.CreateMeter(context.Background(), meter.Params{DisplayName: "calls", EventName: "calls", Formula: meter.Sum}); err != nil {
		return nil, err
	}
	r.prog.note("dedupe-day %-14s %s", spec.Name, cell)

	// One goroutine builds batches and moves the clock; two record them.
	perID := time.Duration(p.hours) * time.Hour / time.Duration(p.ids)
	windowIDs := int(p.window / perID)
	// Resends keep clear of the window's edge by ten simulated minutes or
	// twenty batches, whichever is more: the clock runs ahead of the
	// batches still queued or in flight.
	margin := max(int(10*time.Minute/perID), 20*p.batch)
	type batch struct {
		seq     int // the batch's number; it holds fresh identifiers from seq*p.batch on
		us      []event.Usage
		resend  []bool // us[i] is a resend
		resends int
		hour    int
	}
	batches := make(chan batch, 4)
	var resends, caught, falseDup, accepted atomic.Int64
	hourEvents := make([]atomic.Int64, p.hours+1)
	hourStart := make([]atomic.Int64, p.hours+1) // unix ns of real time
	var failed atomic.Pointer[error]
	// Batches complete out of order (two workers, and a stalled one can
	// fall many batches behind): a resend names an identifier of a batch
	// known to be recorded, below the watermark.
	var (
		doneMu    sync.Mutex
		done      = map[int]bool{}
		watermark atomic.Int64 // batches [0, watermark) are recorded
	)
	complete := func(seq int) {
		doneMu.Lock()
		defer doneMu.Unlock()
		done[seq] = true
		w := int(watermark.Load())
		for done[w] {
			delete(done, w)
			w++
		}
		watermark.Store(int64(w))
	}
	start := time.Now()
	hourStart[0].Store(start.UnixNano())
	go func() {
		defer close(batches)
		rnd := uint64(1)
		hour := 0
		for f, seq := 0, 0; f < p.ids; seq++ {
			b := batch{seq: seq, us: make([]event.Usage, 0, p.batch+p.batch/50+1), resend: make([]bool, 0, p.batch+p.batch/50+1)}
			now := t0.Add(time.Duration(f) * perID)
			if h := int(now.Sub(t0) / time.Hour); h > hour {
				hourStart[h].Store(time.Now().UnixNano())
				r.prog.note("dedupe-day %s: simulated hour %d: %.0f events/s", spec.Name, hour,
					float64(hourEvents[hour].Load())/time.Duration(hourStart[h].Load()-hourStart[hour].Load()).Seconds())
				hour = h
			}
			b.hour = hour
			clock.Store(now.UnixNano())
			for n := 0; n < p.batch && f < p.ids; n++ { // p.batch fresh identifiers, and resends
				b.us = append(b.us, event.Usage{Name: "calls", Customer: "cus_" + strconv.Itoa(f%1000),
					Value: 1, Timestamp: now.Add(-time.Duration(f%3600) * time.Second), Identifier: dayID(f)})
				b.resend = append(b.resend, false)
				rnd = splitmix(rnd)
				lo, hi := max(0, f-windowIDs+margin), min(f-margin, int(watermark.Load())*p.batch)
				if rnd%100 == 0 && hi > lo {
					// A resend of an identifier received within the window,
					// in a batch already recorded.
					j := lo + int(splitmix(rnd)%uint64(hi-lo))
					b.us = append(b.us, event.Usage{Name: "calls", Customer: "cus_" + strconv.Itoa(j%1000),
						Value: 1, Timestamp: now, Identifier: dayID(j)})
					b.resend = append(b.resend, true)
					b.resends++
				}
				f++
			}
			if failed.Load() != nil {
				return
			}
			batches <- b
		}
	}()
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				errs, err := db.RecordUsage(context.Background(), b.us)
				if err != nil {
					failed.Store(&err)
					continue
				}
				for i, e := range errs {
					resend := b.resend[i]
					switch {
					case e == nil && !resend:
						accepted.Add(1)
					case e == nil:
						err := fmt.Errorf("resend of %s accepted", b.us[i].Identifier)
						failed.Store(&err)
					case errors.Is(e, event.ErrDuplicate) && resend:
						caught.Add(1)
					case errors.Is(e, event.ErrDuplicate):
						falseDup.Add(1)
					case e != nil:
						err := fmt.Errorf("event %s: %w", b.us[i].Identifier, e)
						failed.Store(&err)
					}
				}
				resends.Add(int64(b.resends))
				hourEvents[b.hour].Add(int64(len(b.us)))
				complete(b.seq)
			}
		}()
	}
	wg.Wait()
	if e := failed.Load(); e != nil {
		return []Result{row}, *e
	}
	elapsed := time.Since(start)
	end := t0.Add(time.Duration(p.hours) * time.Hour)
	clock.Store(end.UnixNano())
	row.Seconds = elapsed.Seconds()
	row.Events = accepted.Load() + caught.Load() + falseDup.Load()
	row.EventsPerSec = float64(row.Events) / elapsed.Seconds()
	row.Metrics["identifiers"] = float64(accepted.Load())
	row.Metrics["resends"] = float64(resends.Load())
	row.Metrics["duplicates caught"] = float64(caught.Load())
	row.Metrics["fresh refused"] = float64(falseDup.Load())
	var rates []string
	for h := range p.hours {
		s, e := hourStart[h].Load(), hourStart[h+1].Load()
		if h == p.hours-1 {
			e = start.Add(elapsed).UnixNano()
		}
		if s == 0 || e <= s {
			continue
		}
		rate := float64(hourEvents[h].Load()) / (float64(e-s) / 1e9)
		rates = append(rates, fmt.Sprintf("%.0fk", rate/1000))
		row.Metrics[fmt.Sprintf("hour %02d events/s", h)] = rate
	}
	r.prog.note("dedupe-day %s: events/s by simulated hour: %s", spec.Name, strings.Join(rates, " "))

	// Memory, by heap profile, of the index after the window filled.
	st := db.Stats()
	inWindow := float64(windowIDs)
	dedupeHeap, total, err := heapInuse("internal/dedupe.")
	if err != nil {
		return []Result{row}, err
	}
	row.Metrics["window identifiers"] = inWindow
	row.Metrics["heap B/identifier (index, profile)"] = float64(dedupeHeap) / inWindow
	row.Metrics["index B/identifier (Stats)"] = float64(st.DedupeBytes) / inWindow
	row.Metrics["heap B/identifier (all, profile)"] = float64(total) / inWindow
	if path == "" {
		logHeap, _, err := heapInuse("internal/pipeline.(*memLog)")
		if err != nil {
			return []Result{row}, err
		}
		row.Metrics["memory log B/identifier (profile)"] = float64(logHeap) / inWindow
		// The part of it that dedupe confirms against, where the log
		// keeps it in blocks of its own.
		if fpHeap, _, err := heapInuse("internal/pipeline.(*memFPs)"); err == nil && fpHeap > 0 {
			row.Metrics["memory log fingerprints B/identifier (profile)"] = float64(fpHeap) / inWindow
		}
	}
	row.Metrics["index identifiers"] = float64(st.DedupeIdentities)
	row.Metrics["confirm reads per fresh identifier"] = float64(st.DedupeConfirmReads-caught.Load()) / float64(accepted.Load())
	row.Metrics["fresh identifiers confirmed"] = float64(st.DedupeFreshConfirmed) / float64(accepted.Load())
	row.Primary = "heap B/identifier (index, profile)"
	r.prog.note("dedupe-day %s: index %.2f B per window identifier by heap profile (%.2f by Stats), fresh identifiers confirmed %.3f %%",
		spec.Name, float64(dedupeHeap)/inWindow, float64(st.DedupeBytes)/inWindow, 100*float64(st.DedupeFreshConfirmed)/float64(accepted.Load()))
	if caught.Load() != resends.Load() || falseDup.Load() != 0 {
		return []Result{row}, &VerifyError{spec.Name, fmt.Sprintf("%d of %d resends caught, %d fresh identifiers refused",
			caught.Load(), resends.Load(), falseDup.Load())}
	}
	if path == "" {
		return []Result{row}, nil
	}

	// Disk, then Open with a full window.
	if err := db.Close(); err != nil {
		return []Result{row}, err
	}
	db = nil
	fi, err := os.Stat(path)
	if err != nil {
		return []Result{row}, err
	}
	row.Metrics["file B/identifier"] = float64(fi.Size()) / inWindow
	t := time.Now()
	db, err = meterdb.Open(path, opts)
	if err != nil {
		return []Result{row}, err
	}
	took := time.Since(t)
	st = db.Stats()
	row.Metrics["open s"] = took.Seconds()
	row.Metrics["open identifiers/s"] = float64(st.DedupeIdentities) / took.Seconds()
	r.prog.note("dedupe-day %s: file %.1f B per window identifier; Open %.2fs for %d identifiers (%.1f M/s)",
		spec.Name, float64(fi.Size())/inWindow, took.Seconds(), st.DedupeIdentities, float64(st.DedupeIdentities)/took.Seconds()/1e6)
	// Resends after the reopen: every one a duplicate.
	var us []event.Usage
	f := p.ids - 1
	for range 10000 {
		f = (f + 7919) % p.ids
		if p.ids-f > windowIDs-margin {
			continue
		}
		us = append(us, event.Usage{Name: "calls", Customer: "cus_" + strconv.Itoa(f%1000), Value: 1, Timestamp: end, Identifier: dayID(f)})
	}
	errs, err := db.RecordUsage(context.Background(), us)
	if err != nil {
		return []Result{row}, err
	}
	for i, e := range errs {
		if !errors.Is(e, event.ErrDuplicate) {
			return []Result{row}, &VerifyError{spec.Name, fmt.Sprintf("after Open, resend of %s: %v, want a duplicate", us[i].Identifier, e)}
		}
	}
	row.Metrics["resends after open caught"] = float64(len(errs))
	return []Result{row}, nil
}

// heapInuse returns the in-use heap bytes allocated by stacks that
// contain a function whose name has the given substring, and in total,
// from a heap profile taken after a collection; samples are scaled by
// the sampling rate as pprof scales them.
func heapInuse(substr string) (match, total int64, err error) {
	runtime.GC()
	runtime.GC()
	var buf bytes.Buffer
	if err := pprof.Lookup("heap").WriteTo(&buf, 1); err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(&buf)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	rate := float64(runtime.MemProfileRate)
	var cur float64
	inRecord := false
	hit := false
	flush := func() {
		if inRecord {
			total += int64(cur)
			if hit {
				match += int64(cur)
			}
		}
		inRecord, hit, cur = false, false, 0
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "heap profile:"):
			if i := strings.Index(line, "@ heap/"); i >= 0 {
				// The text format prints twice the sampling rate, for
				// historical reasons (runtime/pprof).
				if v, err := strconv.ParseFloat(strings.TrimSpace(line[i+len("@ heap/"):]), 64); err == nil && v > 0 {
					rate = v / 2
				}
			}
		case strings.HasPrefix(line, "#"):
			if inRecord && strings.Contains(line, substr) {
				hit = true
			}
		case line == "":
			flush()
		default:
			// "count: bytes [allocs: allocbytes] @ ..."
			flush()
			var n, b, an, ab int64
			if _, err := fmt.Sscanf(line, "%d: %d [%d: %d]", &n, &b, &an, &ab); err != nil || n == 0 {
				continue
			}
			avg := float64(b) / float64(n)
			scale := 1 / (1 - math.Exp(-avg/rate))
			cur, inRecord = float64(b)*scale, true
		}
	}
	flush()
	return match, total, sc.Err()
}
