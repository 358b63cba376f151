package pipeline

import "time"

// mark says that groups at loc and later were received at or after t.
type mark struct {
	t   int64 // unix seconds
	loc uint64
}

// maintain records a receipt-time mark and the dedupe epoch number at
// most once a second and prunes
// what fell out of the retention window at most once a minute.
func (e *Engine) maintain(st *state, now int64, loc uint64) {
	if last := st.lastMark.Load(); now > last && st.lastMark.CompareAndSwap(last, now) {
		st.marksMu.Lock()
		st.marks = append(st.marks, mark{t: now, loc: loc})
		st.marksMu.Unlock()
		st.idx.SetEpoch(e.epochOf(now))
	}
	if last := st.lastPrune.Load(); now-last >= 60 && st.lastPrune.CompareAndSwap(last, now) {
		e.prune(st, now)
	}
}

// prune drops log groups, dedupe slots and cancellation records that
// everything received before now minus the retention window needs no more.
func (e *Engine) prune(st *state, now int64) {
	st.pruneMu.Lock()
	defer st.pruneMu.Unlock()
	const margin = 60 // seconds
	cutoff := now - e.retention() - 2*margin
	st.cancelMu.Lock()
	for seq, received := range st.cancelled {
		if received < now-int64(e.cfg.CancelWindow/time.Second) {
			delete(st.cancelled, seq)
		}
	}
	st.cancelMu.Unlock()
	st.marksMu.Lock()
	var loc uint64
	i := 0
	for i < len(st.marks) && st.marks[i].t <= cutoff {
		i++
	}
	// A group's receipt time is taken before its location, so a group
	// before a mark's location was received before the mark's time plus
	// the group's processing delay (well under the margin). marks[i-1] is
	// the last mark at or before the cutoff: every group before its location
	// is old. marks[i], the first after the cutoff, also qualifies while it
	// lies within the margin.
	switch {
	case i < len(st.marks) && st.marks[i].t <= cutoff+margin:
		loc = st.marks[i].loc
		st.marks = append([]mark(nil), st.marks[i:]...)
	case i > 0:
		loc = st.marks[i-1].loc
		st.marks = append([]mark(nil), st.marks[i-1:]...)
	}
	st.marksMu.Unlock()
	if loc > 0 {
		if st.mem != nil {
			st.idx.SetMinLoc(st.mem.firstEvent(loc)) // the index's locations are event indexes
		} else {
			st.idx.SetMinLoc(loc)
		}
	}
	st.log.Prune(loc, now)
	if st.file == nil {
		e.freeze(st, now) // file-backed databases freeze after their checkpoints
	}
}

// epochOf is the dedupe epoch number of unix time t: a new one every
// Config.DedupeEpoch, by default every twelfth of the retention window.
func (e *Engine) epochOf(t int64) uint64 {
	d := int64(e.cfg.DedupeEpoch / time.Second)
	if d <= 0 {
		d = max(1, e.retention()/12)
	}
	return uint64(max(0, t) / d)
}
