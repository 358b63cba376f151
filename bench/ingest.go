package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meterdb/meterdb/event"
)

type event100 [100]event.Event

// recordBlock is how many events a worker claims at a time in Record mode.
const recordBlock = 64

// runIngest measures one target in every (batch, workers) cell: workers
// record consecutive blocks of the workload as fast as they can for the
// configured duration; then every series is checked against the workload's
// expected totals. In the ingest scenario, targets with SkipRecord run
// batch=1 cells only when named in -targets. A scenario's own batch sizes
// and worker counts apply unless -batches or -workers was given.
func (r *runner) runIngest(spec TargetSpec) ([]Result, error) {
	var rows []Result
	for _, batch := range r.batches {
		for _, workers := range r.workers {
			cell := fmt.Sprintf("batch=%d workers=%d", batch, workers)
			if batch == 1 && spec.SkipRecord != "" && r.scenario == "ingest" && !slices.Contains(r.cfg.Targets, spec.Name) {
				rows = append(rows, Result{Cell: cell, Workers: workers, Batch: batch, Skipped: spec.SkipRecord})
				continue
			}
			row, err := r.ingestCell(spec, cell, batch, workers)
			rows = append(rows, row)
			if err != nil {
				return rows, err
			}
		}
	}
	return rows, nil
}

func (r *runner) ingestCell(spec TargetSpec, cell string, batch, workers int) (Result, error) {
	row := Result{Cell: cell, Workers: workers, Batch: batch}
	t, ids, cleanup, err := r.openTarget(spec)
	if isUnavailable(err) {
		return skipped(cell, err), nil
	}
	if err != nil {
		return row, err
	}
	defer cleanup()
	ctx := context.Background()
	block := uint64(batch)
	if batch == 1 {
		block = recordBlock
	}
	var (
		next    atomic.Uint64
		stop    atomic.Bool
		done    atomic.Int64 // events recorded, for the progress line
		failMu  sync.Mutex
		failure error
		latMu   sync.Mutex
		lat     []int64
		wg      sync.WaitGroup
	)
	fail := func(err error) {
		failMu.Lock()
		if failure == nil {
			failure = err
		}
		failMu.Unlock()
		stop.Store(true)
	}
	r.prog.start(fmt.Sprintf("%-8s %-14s %s", "ingest", spec.Name, cell), r.cfg.Duration, &done)
	t0 := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			evs := make([]event.Event, block)
			var mine []int64
			for !stop.Load() {
				first := next.Add(block) - block
				r.w.Fill(evs, first)
				if batch == 1 {
					for j := range evs {
						var s time.Time
						if j == 0 {
							s = time.Now()
						}
						if err := t.Record(ctx, &evs[j]); err != nil {
							fail(fmt.Errorf("event %d: %w", first+uint64(j), err))
							return
						}
						if j == 0 {
							mine = append(mine, int64(time.Since(s)))
						}
					}
				} else {
					s := time.Now()
					n, err := t.RecordBatch(ctx, evs)
					mine = append(mine, int64(time.Since(s)))
					if err != nil || n > 0 {
						fail(fmt.Errorf("batch at event %d: %d rejected, %v", first, n, err))
						return
					}
				}
				done.Add(int64(block))
			}
			latMu.Lock()
			lat = append(lat, mine...)
			latMu.Unlock()
		}()
	}
	timer := time.AfterFunc(r.cfg.Duration, func() { stop.Store(true) })
	wg.Wait()
	timer.Stop()
	elapsed := time.Since(t0)
	r.prog.stop()
	if failure != nil {
		return row, &VerifyError{spec.Name, failure.Error()}
	}
	n := next.Load()
	row.Seconds = elapsed.Seconds()
	row.Events = int64(n)
	row.EventsPerSec = float64(n) / elapsed.Seconds()
	row.Ops = int64(n / uint64(batch))
	row.OpsPerSec = float64(row.Ops) / elapsed.Seconds()
	row.Latency = percentiles(lat)
	row.Primary = "events/s"
	r.prog.note("verifying %s after %d events", spec.Name, n)
	row.Verified, err = verifyTotals(ctx, spec.Name, t, r.w, ids, [][2]uint64{{0, n}}, 200_000)
	return row, err
}
