package pipeline

import (
	"time"

	"github.com/meterdb/meterdb/aggregate"
	"github.com/meterdb/meterdb/event"
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
// from the checkpointed records (store.DB.ReadAggregate). Checkpoints are
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
// A replica (a shared log) does not freeze yet: it applies other writers'
// records, validated against their clocks, and replays a backlog of any
// age after a bootstrap, so its horizon would have to follow the log's
// stamps, not its own clock. Its memory grows with its history as it did
// before.

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
	if e.repl != nil {
		return fs // see "Replicas" above
	}
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

// tooOld reports whether ts (unix seconds) lies before the frozen horizon.
func (st *state) tooOld(ts int64) bool { return ts < st.table.Horizon() }
