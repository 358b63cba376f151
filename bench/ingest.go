package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meterdb/meterdb/event"
)

// apiDoc says what each -api mode feeds the targets.
var apiDoc = map[string]string{
	"map":   "event.Event values whose payload maps are built per event, as a Stripe-shaped client does",
	"typed": "event.Usage values: DB.RecordUsage, and the baselines' typed methods",
}

// UsageRecorder is implemented by targets with a typed ingest path, which
// -api typed measures.
type UsageRecorder interface {
	// RecordUsage records us as one group and returns how many were
	// rejected; us belongs to the caller.
	RecordUsage(ctx context.Context, us []event.Usage) (rejected int, err error)
}

// ingestAPI returns the ingest mode of the running scenario: -api for the
// ingest and durable scenarios; the HTTP scenarios encode request bodies
// from the workload's shared payload maps and take no mode.
func (r *runner) ingestAPI() string {
	if r.scenario == "ingest" || r.scenario == "durable" {
		return r.cfg.API
	}
	return ""
}

// recordBlock is how many events a worker claims at a time in Record mode.
const recordBlock = 64

// runIngest measures one target in every (batch, workers) cell: workers
// record consecutive blocks of the workload as fast as they can for the
// configured duration; then every series is checked against the workload's
// expected totals. The events of a block are built inside the timed loop,
// by the worker that records them: with -api map as event.Event values
// with a payload map per event (Workload.FillMaps), with -api typed as
// event.Usage values (Workload.FillUsage); targets without a typed path
// are skipped in typed mode. In the ingest scenario, targets with SkipRecord run
// batch=1 cells only when named in -targets. A scenario's own batch sizes
// and worker counts apply unless -batches or -workers was given.
func (r *runner) runIngest(spec TargetSpec) ([]Result, error) {
	var rows []Result
	for _, batch := range r.batches {
		for _, workers := range r.workers {
			cell := fmt.Sprintf("batch=%d workers=%d", batch, workers)
			if api := r.ingestAPI(); api != "" {
				cell += " api=" + api
			}
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
	api := r.ingestAPI()
	row := Result{Cell: cell, API: api, Workers: workers, Batch: batch}
	t, ids, cleanup, err := r.openTarget(spec)
	if isUnavailable(err) {
		return skipped(cell, err), nil
	}
	if err != nil {
		return row, err
	}
	defer cleanup()
	ur, _ := t.(UsageRecorder)
	if api == "typed" && ur == nil {
		row.Skipped = "no typed ingest path (-api typed)"
		return row, nil
	}
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
	cpu0 := cpuTime()
	t0 := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			evs := make([]event.Event, block)
			us := make([]event.Usage, block)
			var mine []int64
			for !stop.Load() {
				first := next.Add(block) - block
				switch api {
				case "typed":
					r.w.FillUsage(us, first)
				case "map":
					r.w.FillMaps(evs, first)
				default:
					r.w.Fill(evs, first)
				}
				switch {
				case api == "typed" && batch == 1:
					for j := range us {
						var s time.Time
						if j == 0 {
							s = time.Now()
						}
						n, err := ur.RecordUsage(ctx, us[j:j+1])
						if err == nil && n > 0 {
							err = errors.New("rejected")
						}
						if err != nil {
							fail(fmt.Errorf("event %d: %w", first+uint64(j), err))
							return
						}
						if j == 0 {
							mine = append(mine, int64(time.Since(s)))
						}
					}
				case api == "typed":
					s := time.Now()
					n, err := ur.RecordUsage(ctx, us)
					mine = append(mine, int64(time.Since(s)))
					if err != nil || n > 0 {
						fail(fmt.Errorf("batch at event %d: %d rejected, %v", first, n, err))
						return
					}
				case batch == 1:
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
				default:
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
	cpu := cpuTime() - cpu0
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
	if cpu > 0 && n > 0 {
		// Process CPU time (all threads, GC and building the events
		// included) per event: less sensitive to other load on the
		// machine than events/s.
		row.Metrics = map[string]float64{cpuPerEvent: float64(cpu) / float64(n)}
	}
	r.prog.note("verifying %s after %d events", spec.Name, n)
	row.Verified, err = verifyTotals(ctx, spec.Name, t, r.w, ids, [][2]uint64{{0, n}}, 200_000)
	return row, err
}
