package pipeline

import (
	"fmt"
	"runtime"
	"time"

	"github.com/meterdb/meterdb/aggregate"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/store"
)

// load fills st from the store: meters, the checkpointed aggregates, then
// the log after the checkpoint; and rebuilds the dedupe index and the
// cancellation set from the log records of the retention window.
func (e *Engine) load(st *state, sdb *store.DB) (err error) {
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
	restored := 0
	err = sdb.LoadAggregates(func(r *store.AggRecord) error {
		mode, ok := modes[r.Meter]
		if !ok {
			return fmt.Errorf("%w: aggregate record of unknown meter %d", store.ErrCorrupt, r.Meter)
		}
		restored++
		return st.table.Restore(aggregate.Key{Meter: r.Meter, Customer: r.Customer}, mode, r.Start, r.Day, r.State)
	})
	if err != nil {
		return err
	}
	if !e.cfg.Store.ReadOnly {
		st.table.TrackDirty()
	}
	ckMark, err := sdb.LastMark()
	if err != nil {
		return err
	}
	lastSeq := ckMark.LastSeq
	cutoff := e.cfg.Now().Unix() - e.retention() - 60
	replayed, indexed := 0, 0
	loader := st.idx.Loader()
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
				loader.Add([]byte(e.Identifier), loc)
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
	ident := func(loc uint64, received int64, id []byte) {
		if received >= cutoff {
			loader.Add(id, loc)
			indexed++
		}
		lastMark(received, loc)
	}
	if err := sdb.Replay(ckMark.Loc, full, ident); err != nil {
		return err
	}
	st.idx.SetEpoch(e.epochOf(e.cfg.Now().Unix()))
	loader.Finish(runtime.GOMAXPROCS(0))
	st.seq.Store(lastSeq)
	e.cfg.Logger.Info("meterdb opened", "meters", len(ms), "aggregate_records", restored,
		"replayed_events", replayed, "indexed_identifiers", indexed, "took", time.Since(start))
	return nil
}
