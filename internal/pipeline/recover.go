package pipeline

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/meterdb/meterdb/aggregate"
	"github.com/meterdb/meterdb/internal/dedupe"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/store"
)

// load fills st from the store: meters, the checkpointed aggregates, then
// the log after the checkpoint; and rebuilds the dedupe index and the
// cancellation set from the log records of the retention window.
// now (unix seconds) places the retention window: the clock, or a
// replica's apply time.
func (e *Engine) load(st *state, sdb *store.DB, now int64) (err error) {
	start := time.Now()
	ms, err := sdb.Meters()
	if err != nil {
		return err
	}
	if st.reg, err = meter.NewRegistry(ms); err != nil {
		return fmt.Errorf("%w: %v", store.ErrCorrupt, err)
	}
	modes := map[uint64]aggregate.Mode{}
	for _, m := range ms {
		modes[m.Seq] = aggregate.ModeOf(string(m.Formula), string(m.EventTimeWindow))
	}
	ckMark, err := sdb.LastMark()
	if err != nil {
		return err
	}
	// The freeze horizon (freeze.go) that the log still to replay cannot
	// reach: every event in it was received at or after the first record's
	// receipt, so its timestamp lies after that minus event.MaxPast. (A
	// replica's now is the apply time its file records; the shared log
	// after it refuses what lies before its records' horizons.)
	horizon := horizonAt(now)
	if g, err := sdb.Group(ckMark.Loc + 1); err != nil {
		return err
	} else if g != nil {
		for _, ev := range g.Events {
			horizon = min(horizon, horizonAt(ev.Received))
		}
		for _, c := range g.Cancels {
			horizon = min(horizon, horizonAt(c.Received))
		}
	}
	// The stored blocks of frozen days first (their day cells only stay in
	// memory), then the records from the frozen-through mark on: every day
	// before it that has entries is in a stored block (freeze.go).
	if st.storedThrough, err = sdb.FrozenThrough(); err != nil {
		return err
	}
	blocks := 0
	err = sdb.LoadFrozen(func(b *store.FrozenBlock) error {
		if _, ok := modes[b.Meter]; !ok {
			return fmt.Errorf("%w: frozen block of unknown meter %d", store.ErrCorrupt, b.Meter)
		}
		blocks++
		if err := st.table.RestoreBlock(aggregate.Key{Meter: b.Meter, Customer: b.Customer}, b.First, b.Data); err != nil {
			return fmt.Errorf("frozen block of meter %d, customer %q at %d: %w", b.Meter, b.Customer, b.First, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Every day before the mark was final when it was stored, also in
	// series without a block there: the horizon never goes back past it,
	// even when the clock did (an event of such a day is refused as too
	// far in the past, not lost to the next Open, which reads no record
	// before the mark).
	if st.storedThrough > 0 {
		st.table.Freeze(st.storedThrough)
	}
	// Records come by meter, then by start: each meter's days before the
	// horizon freeze as soon as its records have moved past them, so that
	// Open never holds the whole history unfrozen.
	restored := 0
	var fzMeter uint64
	fzAt := int64(math.MinInt64)
	err = sdb.LoadAggregatesFrom(st.storedThrough, func(r *store.AggRecord) error {
		mode, ok := modes[r.Meter]
		if !ok {
			return fmt.Errorf("%w: aggregate record of unknown meter %d", store.ErrCorrupt, r.Meter)
		}
		if r.Meter != fzMeter {
			fzMeter, fzAt = r.Meter, math.MinInt64
		}
		if h := min(horizonAt(r.Start+freezeAge), horizon); !r.Day && h > fzAt {
			st.table.FreezeMeter(r.Meter, h)
			fzAt = h
		}
		restored++
		return st.table.Restore(aggregate.Key{Meter: r.Meter, Customer: r.Customer}, mode, r.Start, r.Day, r.State)
	})
	if err != nil {
		return err
	}
	var fs aggregate.FreezeStats
	if horizon != math.MinInt64 {
		fs = st.table.Freeze(horizon)
	}
	if !e.cfg.Store.ReadOnly {
		// What froze while loading goes to the store now: after a file
		// of the previous format is upgraded, its whole history.
		if err := storeFrozen(st, sdb); err != nil {
			return fmt.Errorf("storing frozen blocks: %w", err)
		}
		st.table.TrackDirty()
	}
	lastSeq := ckMark.LastSeq
	cutoff := now - e.retention() - 60
	replayed, indexed := 0, 0
	lastMark := func(received int64, loc uint64) {
		if n := len(st.marks); n == 0 || st.marks[n-1].t < received {
			st.marks = append(st.marks, mark{t: received, loc: loc})
		}
	}
	full := func(loc uint64, g *store.Group) error {
		apply := loc > ckMark.Loc
		for i := range g.Events {
			e := &g.Events[i]
			mode, ok := modes[e.Meter]
			if !ok {
				return fmt.Errorf("%w: log record %d names unknown meter %d", store.ErrCorrupt, loc, e.Meter)
			}
			lastSeq = max(lastSeq, e.Seq)
			if apply {
				st.table.Apply(aggregate.Key{Meter: e.Meter, Customer: e.Customer}, mode,
					aggregate.Entry{Seq: e.Seq, Timestamp: e.Timestamp, Value: e.Value})
				replayed++
			}
			if e.Received >= cutoff {
				st.idx.Add(e.Identifier, loc)
				indexed++
			}
			lastMark(e.Received, loc)
		}
		for _, c := range g.Cancels {
			mode, ok := modes[c.Meter]
			if !ok {
				return fmt.Errorf("%w: log record %d names unknown meter %d", store.ErrCorrupt, loc, c.Meter)
			}
			if apply && !st.table.Cancel(aggregate.Key{Meter: c.Meter, Customer: c.Customer}, mode,
				aggregate.Entry{Seq: c.Seq, Timestamp: c.Timestamp, Value: c.Value}) {
				return fmt.Errorf("%w: log record %d cancels event %d, which is not recorded", store.ErrCorrupt, loc, c.Seq)
			}
			if c.Received >= cutoff {
				st.cancelled[c.Seq] = c.Received
			}
			lastMark(c.Received, loc)
		}
		return nil
	}
	st.idx.SetEpoch(e.epochOf(now))
	n, err := e.loadIdentifiers(st, sdb, ckMark.Loc, cutoff, lastMark, full)
	if err != nil {
		return err
	}
	indexed += n
	if err := sdb.ReplayAfter(ckMark.Loc, full); err != nil {
		return err
	}
	st.seq.Store(lastSeq)
	e.cfg.Logger.Info("meterdb opened", "meters", len(ms), "aggregate_records", restored, "frozen_blocks", blocks, "frozen_days", st.table.Stats().FrozenDays,
		"frozen_before", time.Unix(horizon, 0).UTC(), "frozen_by_last_pass", fs.Days,
		"replayed_events", replayed, "indexed_identifiers", indexed, "took", time.Since(start))
	return nil
}

// loadIdentifiers rebuilds the dedupe index from the log records at or
// before the checkpoint at ck: a pass over the records' headers counts the
// identifiers received since cutoff and cuts them into dedupe.LoadEpochs
// location ranges of equal counts; the ranges are then loaded in
// parallel from the identifier hashes the records keep (format 3), each
// in two passes (count per dedupe shard, then fill tables of that size).
// Cancellation records are decoded and passed to full. It returns the
// number of identifiers indexed.
func (e *Engine) loadIdentifiers(st *state, sdb *store.DB, ck uint64, cutoff int64,
	lastMark func(received int64, loc uint64), full func(uint64, *store.Group) error) (int, error) {
	total := 0
	var cancels []uint64
	var first, last uint64 // the records at or before ck
	err := sdb.Headers(ck, func(h store.RecordHeader) error {
		if first == 0 {
			first = h.Loc
		}
		last = h.Loc
		switch {
		case h.Cancels:
			cancels = append(cancels, h.Loc)
		case h.Events > 0:
			lastMark(h.Received, h.Loc)
			if h.Received >= cutoff {
				total += h.Events
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, loc := range cancels {
		g, err := sdb.Group(loc)
		if err != nil {
			return 0, err
		}
		if g != nil {
			if err := full(loc, g); err != nil {
				return 0, err
			}
		}
	}
	if first == 0 {
		return 0, nil
	}
	per := (total + dedupe.LoadEpochs - 1) / dedupe.LoadEpochs
	var parts []dedupe.LoadPart
	var ranges [][2]uint64
	err = sdb.Headers(ck, func(h store.RecordHeader) error {
		if h.Events == 0 || h.Received < cutoff {
			return nil
		}
		if k := len(parts); k == 0 {
			parts = append(parts, dedupe.LoadPart{First: h.Loc})
		} else if parts[k-1].Count >= per {
			// Parts are contiguous: the records between two (old ones,
			// cancellations) are scanned with the second.
			parts = append(parts, dedupe.LoadPart{First: parts[k-1].Last + 1})
		}
		p := &parts[len(parts)-1]
		p.Last = h.Loc
		p.Count += h.Events
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, p := range parts {
		ranges = append(ranges, [2]uint64{p.First, p.Last})
	}
	// The records outside the parts are scanned too, for their checksums:
	// Open reads every record of the log.
	switch {
	case len(parts) == 0:
		ranges = append(ranges, [2]uint64{first, last})
	default:
		if first < parts[0].First {
			ranges = append(ranges, [2]uint64{first, parts[0].First - 1})
		}
		if last > parts[len(parts)-1].Last {
			ranges = append(ranges, [2]uint64{parts[len(parts)-1].Last + 1, last})
		}
	}
	l := st.idx.PlannedLoader(parts)
	counts := make([]int, len(parts))
	err = scanParallel(len(ranges), runtime.GOMAXPROCS(0), func(i int) error {
		r := ranges[i]
		if i >= len(parts) {
			return sdb.ScanHashes(r[0], r[1], 1, func(int, uint64, int64, []byte) {})
		}
		// Two passes over the part's hash tables: count per shard, then
		// sort by shard; the build fills tables of exactly that size.
		err := sdb.ScanHashes(r[0], r[1], 2, func(pass int, loc uint64, received int64, hashes []byte) {
			switch {
			case received < cutoff:
			case pass == 0:
				l.Count(i, hashes)
			default:
				l.Fill(i, hashes, loc)
				counts[i] += len(hashes) / 8
			}
		})
		if err == nil {
			l.Build(i)
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	l.Finish()
	n := 0
	for _, c := range counts {
		n += c
	}
	return n, nil
}

// scanParallel calls scan(i) for every i in [0, n) on up to workers
// goroutines and returns the first error.
func scanParallel(n, workers int, scan func(i int) error) error {
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range max(1, min(workers, n)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := scan(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}
