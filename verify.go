package meterdb

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/meterdb/meterdb/aggregate"
	"github.com/meterdb/meterdb/store"
)

// VerifyOptions configure Verify. A nil *VerifyOptions and zero fields
// mean the defaults.
type VerifyOptions struct {
	// LockTimeout is how long Verify waits for a process that has the file
	// open for writing (such as a running meterd). Zero means 1 s.
	LockTimeout time.Duration
}

// VerifyReport is what Verify read and found.
type VerifyReport struct {
	Path   string
	Format uint64 // the file's format version
	// Records walked, by kind.
	Meters, LogRecords, Events, Cancels, AggregateRecords, KVRecords int
	// The first and last log location, and the location the checkpoint
	// covers.
	FirstLoc, LastLoc, CheckpointLoc uint64
	// CompleteLog reports that the log still holds every record since the
	// first (nothing was pruned), so every window was compared.
	CompleteLog bool
	// ComparedFrom is the start of the earliest window compared when the
	// log was pruned (zero time when CompleteLog).
	ComparedFrom time.Time
	// ComparedWindows counts the hour and day windows compared.
	ComparedWindows int
	// Problems describes each damaged record, log gap and aggregate
	// mismatch found; empty when the file is clean.
	Problems []string
}

// OK reports whether Verify found no problem.
func (r *VerifyReport) OK() bool { return len(r.Problems) == 0 }

// String renders the report for people, one fact a line.
func (r *VerifyReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "file: %s (format %d)\n", r.Path, r.Format)
	fmt.Fprintf(&b, "records: %d meters, %d log (%d events, %d cancellations), %d aggregate, %d key-value\n",
		r.Meters, r.LogRecords, r.Events, r.Cancels, r.AggregateRecords, r.KVRecords)
	fmt.Fprintf(&b, "log: locations %d to %d, checkpoint at %d\n", r.FirstLoc, r.LastLoc, r.CheckpointLoc)
	if r.CompleteLog {
		fmt.Fprintf(&b, "aggregates: %d windows compared (the log is complete: all of them)\n", r.ComparedWindows)
	} else {
		fmt.Fprintf(&b, "aggregates: %d windows compared (from %s; older ones were pruned from the log)\n",
			r.ComparedWindows, r.ComparedFrom.Format(time.RFC3339))
	}
	if r.OK() {
		b.WriteString("ok\n")
		return b.String()
	}
	fmt.Fprintf(&b, "%d problems:\n", len(r.Problems))
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "  %s\n", p)
	}
	return b.String()
}

// Verify checks the database file at path without changing it. It opens
// the file read-only (it fails with store.ErrLocked while another process,
// such as a running meterd, has it open for writing: verify a Backup
// instead) and checks, in order:
//
//  1. every record: its checksum and that it decodes (meters, log, meta,
//     aggregate and key-value records, expired ones included);
//  2. the log's continuity: locations are dense from the first stored one
//     to the last, and the first is at most one past the checkpoint's;
//  3. that the checkpoint plus the log reproduces the aggregates. Table A
//     is what Open builds: the checkpointed aggregate records, then the log
//     records after the checkpoint's location. Table B is every log record
//     still stored, replayed into an empty table. Where the log is complete
//     (its first location is 1), A and B must agree on every hour and UTC
//     day window of every series. Where checkpoints pruned its beginning,
//     A also holds the pruned events and B does not; a pruned record was
//     received before the earliest receipt time R of the stored ones
//     (plus less than a minute of writer delay) and its events carry
//     timestamps at most 5 minutes after receipt, so windows starting at
//     or after R + 1 hour (rounded up to the window) hold stored events
//     only, and those are compared. Two windows agree when their event
//     count, their sum and, for last meters, their newest entry (sequence,
//     timestamp, value) are equal.
//
// The report lists every problem found; when there is any, the error
// wraps store.ErrCorrupt. Other errors (the file missing, locked, not a
// store, unreadable) stop the check and say why.
func Verify(path string, opts *VerifyOptions) (VerifyReport, error) {
	var o VerifyOptions
	if opts != nil {
		o = *opts
	}
	r := VerifyReport{Path: path}
	problem := func(err error) { r.Problems = append(r.Problems, err.Error()) }
	sdb, err := store.Open(path, &store.Options{ReadOnly: true, LockTimeout: o.LockTimeout})
	if err != nil {
		if errors.Is(err, store.ErrCorrupt) {
			problem(err)
			return r, fmt.Errorf("meterdb: verify: %w", err)
		}
		return r, fmt.Errorf("meterdb: verify: %w", err)
	}
	defer sdb.Close()
	n, err := sdb.CheckRecords(problem)
	if err != nil {
		return r, fmt.Errorf("meterdb: verify: %w", err)
	}
	r.Format, r.Meters, r.LogRecords, r.AggregateRecords, r.KVRecords = n.Format, n.Meters, n.Log, n.Aggregates, n.KV
	r.FirstLoc, r.LastLoc, r.CheckpointLoc = n.FirstLoc, n.LastLoc, n.Checkpoint
	if r.OK() {
		// Replay stops at the first damaged record: compare only what reads.
		if err := compareAggregates(sdb, &r, problem); err != nil {
			return r, fmt.Errorf("meterdb: verify: %w", err)
		}
	}
	if !r.OK() {
		return r, fmt.Errorf("%w: %s: %d problems, the first: %s", store.ErrCorrupt, path, len(r.Problems), r.Problems[0])
	}
	return r, nil
}

// compareAggregates is step 3 of Verify.
func compareAggregates(sdb *store.DB, r *VerifyReport, problem func(error)) error {
	ms, err := sdb.Meters()
	if err != nil {
		return err
	}
	modes := map[uint64]aggregate.Mode{}
	last := map[uint64]bool{}
	for _, m := range ms {
		modes[m.Seq] = aggregate.ModeOf(string(m.Formula), string(m.EventTimeWindow))
		last[m.Seq] = m.Formula == "last"
	}
	a, b := aggregate.NewTable(8), aggregate.NewTable(8)
	keys := map[aggregate.Key]bool{}
	minT, maxT := int64(math.MaxInt64), int64(math.MinInt64)
	see := func(t int64) { minT, maxT = min(minT, t), max(maxT, t) }
	err = sdb.LoadAggregates(func(rec *store.AggRecord) error {
		mode, ok := modes[rec.Meter]
		if !ok {
			problem(fmt.Errorf("%w: aggregate record of unknown meter %d", store.ErrCorrupt, rec.Meter))
			return nil
		}
		k := aggregate.Key{Meter: rec.Meter, Customer: rec.Customer}
		keys[k] = true
		see(rec.Start)
		if err := a.Restore(k, mode, rec.Start, rec.Day, rec.State); err != nil {
			problem(fmt.Errorf("%w: aggregate record of meter %d customer %q at %d: %v", store.ErrCorrupt, rec.Meter, rec.Customer, rec.Start, err))
		}
		return nil
	})
	if err != nil {
		return err
	}
	mark, err := sdb.LastMark()
	if err != nil {
		return err
	}
	received := int64(math.MaxInt64) // earliest receipt time in the stored log
	type pendingCancel struct {
		loc uint64
		c   store.Cancel
	}
	var unmatched []pendingCancel // cancellations B could not apply
	err = sdb.Replay(0, func(loc uint64, g *store.Group) error {
		for _, e := range g.Events {
			mode, ok := modes[e.Meter]
			if !ok {
				problem(fmt.Errorf("%w: log record %d names unknown meter %d", store.ErrCorrupt, loc, e.Meter))
				continue
			}
			r.Events++
			k := aggregate.Key{Meter: e.Meter, Customer: e.Customer}
			keys[k] = true
			see(e.Timestamp)
			received = min(received, e.Received)
			en := aggregate.Entry{Seq: e.Seq, Timestamp: e.Timestamp, Value: e.Value}
			if loc > mark.Loc {
				a.Apply(k, mode, en)
			}
			b.Apply(k, mode, en)
		}
		for _, c := range g.Cancels {
			mode, ok := modes[c.Meter]
			if !ok {
				problem(fmt.Errorf("%w: log record %d names unknown meter %d", store.ErrCorrupt, loc, c.Meter))
				continue
			}
			r.Cancels++
			k := aggregate.Key{Meter: c.Meter, Customer: c.Customer}
			received = min(received, c.Received)
			en := aggregate.Entry{Seq: c.Seq, Timestamp: c.Timestamp, Value: c.Value}
			if loc > mark.Loc && !a.Cancel(k, mode, en) {
				problem(fmt.Errorf("%w: log record %d cancels event %d, which is not recorded", store.ErrCorrupt, loc, c.Seq))
			}
			if !b.Cancel(k, mode, en) {
				unmatched = append(unmatched, pendingCancel{loc, c})
			}
		}
		return nil
	}, nil)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		r.CompleteLog = r.FirstLoc <= 1
		return nil
	}
	const hour, day = 3600, 86400
	ceil := func(t, unit int64) int64 { return floorTo(t+unit-1, unit) }
	hourFrom, dayFrom := floorTo(minT, day), floorTo(minT, day)
	r.CompleteLog = r.FirstLoc <= 1
	if !r.CompleteLog {
		if received == math.MaxInt64 {
			return nil // an empty log after pruning: nothing to compare with
		}
		hourFrom, dayFrom = ceil(received+hour, hour), ceil(received+hour, day)
		r.ComparedFrom = time.Unix(hourFrom, 0).UTC()
	}
	end := floorTo(maxT, day) + 2*day
	for _, u := range unmatched {
		// A cancellation of a pruned event is expected (its window is not
		// compared); one whose event lies in a compared window must find it.
		if r.CompleteLog || u.c.Timestamp >= hourFrom {
			problem(fmt.Errorf("%w: log record %d cancels event %d, which the log does not hold", store.ErrCorrupt, u.loc, u.c.Seq))
		}
	}
	for k := range keys {
		for _, g := range []struct {
			grouping aggregate.Grouping
			from     int64
			name     string
		}{{aggregate.Hourly, hourFrom, "hour"}, {aggregate.Daily, dayFrom, "day"}} {
			if g.from >= end {
				continue
			}
			wa, err := a.Query(k, g.from, end, g.grouping)
			if err != nil {
				return err
			}
			wb, err := b.Query(k, g.from, end, g.grouping)
			if err != nil {
				return err
			}
			if d := diffWindows(wa, wb, last[k.Meter]); d != "" {
				problem(fmt.Errorf("%w: aggregates of meter %d customer %q, %s %s", store.ErrCorrupt, k.Meter, k.Customer, g.name, d))
			}
			r.ComparedWindows += max(len(wa), len(wb))
		}
	}
	return nil
}

func floorTo(t, unit int64) int64 {
	if r := t % unit; r < 0 {
		return t - r - unit
	} else {
		return t - r
	}
}

// diffWindows describes the first window where a (checkpoint plus replay)
// and b (the log alone) disagree, or returns "".
func diffWindows(a, b []aggregate.Window, last bool) string {
	cell := func(w []aggregate.Window, i int) string {
		if i >= len(w) {
			return "nothing"
		}
		s := fmt.Sprintf("count %d sum %s", w[i].Count, w[i].Sum)
		if last {
			s += fmt.Sprintf(" last (seq %d, at %d, value %d)", w[i].Last.Seq, w[i].Last.Timestamp, w[i].Last.Value)
		}
		return s
	}
	for i := range max(len(a), len(b)) {
		var same bool
		if i < len(a) && i < len(b) {
			x, y := a[i], b[i]
			same = x.Start == y.Start && x.Count == y.Count && x.Sum == y.Sum && (!last || x.Last == y.Last)
		}
		if !same {
			start := int64(0)
			if i < len(a) {
				start = a[i].Start
			} else {
				start = b[i].Start
			}
			return fmt.Sprintf("%s: the checkpoint plus replay gives %s, the log alone %s",
				time.Unix(start, 0).UTC().Format(time.RFC3339), cell(a, i), cell(b, i))
		}
	}
	return ""
}
