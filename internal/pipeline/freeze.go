package pipeline

import (
	"time"

	"github.com/meterdb/meterdb/aggregate"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/store"
)

// Frozen history. An event is accepted only when its timestamp lies
// within event.MaxPast (35 days) of its receipt and cancelled only within
// the cancel window (24 hours) of it, so an aggregate day that ended more
// than freezeAge ago can no longer change: the aggregate table freezes it
// into a packed read-only form (aggregate/freeze.go) and keeps only that in
// memory.
//
// A file-backed database freezes after each checkpoint, only what that
// checkpoint covers: the table reads the minute cells of frozen hours back
// from the checkpointed records (store.DB.ReadAggregate). It then stores
// the blocks of frozen days that became complete (storeFrozen), after
// which memory keeps only their day cells and the table reads their hour
// cells back from the store (store.DB.ReadFrozen); Open reads those blocks
// and the aggregate records from the store's frozen-through mark on, not
// the hour records of every day ever recorded. Checkpoints are
// serialized (checkpointer.mu), so no checkpoint that took a chunk's
// changes is still unwritten when the chunk freezes. An in-memory database
// freezes when it prunes (at most once a minute) and keeps packed minute
// cells in its frozen days.
//
// The horizon only moves forward. An event or cancellation whose
// timestamp lies before it (possible only when Config.Now went back by
// more than the hour of margin) is refused as too far in the past, or as
// past its cancel window; Open chooses a horizon that the log it replays
// cannot reach. The check happens at validation, before the apply lock: a
// freeze that overtakes an event between the two would need the clock to
// move by more than a day (an hour for a cancellation) in between, which
// the aggregate table answers with a panic (a broken invariant), never a
// silent change to a frozen day.

// # Replicas
//
// A replica (a shared log) freezes by its apply time, the greatest writer
// stamp of the prefix it applied (invariant 1 of replica.go), never by its
// own clock: the horizon follows the log. Its applier refuses, as too far
// in the past, an event or cancellation whose timestamp lies before
// horizonAt(apply time) of its record: a rule of the record and the prefix
// only, so every replica decides alike, whenever each froze. The table's
// own horizon never passes that bound (it is computed from an earlier or
// equal apply time), so what the rule lets through never reaches a frozen
// day. Writers' stamps within an hour of each other make the rule refuse
// nothing that the writer accepted: the writer took the event within
// event.MaxPast of its stamp, and the horizon lies a day and an hour
// further back. Open after a restart or a bootstrap freezes by the apply
// time its file records (readPosition).

// freezeAge is how old the end of a day must be before it freezes: the
// oldest timestamp an event may carry, plus the cancel window, plus an
// hour of margin.
const freezeAge = int64((event.MaxPast + 24*time.Hour + time.Hour) / time.Second)

// horizonAt returns the freeze horizon at now (unix seconds): the UTC
// midnight at or before now - freezeAge.
func horizonAt(now int64) int64 {
	h := now - freezeAge
	r := h % 86400
	if r < 0 {
		r += 86400
	}
	return h - r
}

// freeze freezes the aggregate days before the horizon of now. A file-
// backed database calls it right after a checkpoint, under
// checkpointer.mu; skipped reports that some series still had changes
// waiting for a checkpoint, so the next one should freeze again.
func (e *Engine) freeze(st *state, now int64) (fs aggregate.FreezeStats) {
	h := horizonAt(now)
	if h <= st.table.Horizon() && !st.freezeAgain {
		return fs
	}
	fs = st.table.Freeze(h)
	st.freezeAgain = fs.Skipped > 0
	if fs.Days > 0 {
		e.cfg.Logger.Debug("meterdb froze aggregate days", "days", fs.Days, "hours", fs.Hours, "skipped_series", fs.Skipped,
			"horizon", time.Unix(h, 0).UTC())
	}
	return fs
}

// tooOld reports whether ts (unix seconds) lies before the frozen horizon
// for a decision at now: the table's horizon, or on a replica the horizon
// of now, the apply time (see "Replicas" above).
func (st *state) tooOld(ts, now int64) bool {
	if st.rs != nil {
		return ts < horizonAt(now)
	}
	return ts < st.table.Horizon()
}

// tooOldError is the refusal of an event whose timestamp lies before the
// frozen horizon.
func tooOldError() error {
	return &event.Error{Code: event.CodeTooFarInPast, Param: "timestamp", Err: event.ErrTooFarInPast,
		Message: "The timestamp lies in a day whose usage is final (the clock went back, or the writer's clock lags the shared log's)."}
}

// storeBatch bounds the bytes of frozen blocks written in one store
// transaction: after Open upgraded a file, a year of history is stored in
// pieces of about this size.
const storeBatch = 16 << 20

// storeFrozen writes the complete frozen blocks that are not stored yet,
// in transactions of about storeBatch bytes, the last one with the
// table's frozen-through mark; each written piece leaves memory as it is
// stored. The caller holds checkpointer.mu (or is Open), so no Freeze runs
// meanwhile. A failed write leaves the blocks whole in memory, to be
// written by the next call.
func storeFrozen(st *state, sdb *store.DB) error {
	through := st.table.FrozenThrough()
	for {
		bs, more := st.table.TakeFrozen(storeBatch)
		if len(bs) == 0 && !more && through <= st.storedThrough {
			return nil
		}
		recs := make([]store.FrozenBlock, len(bs))
		for i, b := range bs {
			recs[i] = store.FrozenBlock{Meter: b.Key.Meter, Customer: b.Key.Customer, First: b.Span, Data: b.Data}
		}
		th := int64(0)
		if !more {
			th = through
		}
		if err := sdb.PutFrozen(recs, th); err != nil {
			return err
		}
		st.table.Stored(bs)
		if !more {
			st.storedThrough = max(st.storedThrough, through)
			return nil
		}
	}
}
