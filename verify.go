package meterdb

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/meterdb/meterdb/internal/pipeline"
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
	// FrozenBlocks counts the stored blocks of frozen days, each compared
	// with the aggregate records of its days.
	FrozenBlocks int
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
	if r.FrozenBlocks > 0 {
		fmt.Fprintf(&b, "frozen blocks: %d compared with the aggregate records of their days\n", r.FrozenBlocks)
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
//     timestamp, value) are equal;
//  4. that every stored block of frozen days (a file-backed database keeps
//     them so that memory holds only their day cells) agrees with table
//     A on every hour and day of its 32 days: event count, sum and, for
//     last meters, the last value (a frozen cell keeps no sequence or
//     timestamp).
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
		c, err := pipeline.CheckAggregates(sdb, n.FirstLoc, problem)
		if err != nil {
			return r, fmt.Errorf("meterdb: verify: %w", err)
		}
		r.Events, r.Cancels, r.CompleteLog, r.ComparedWindows, r.FrozenBlocks = c.Events, c.Cancels, c.CompleteLog, c.Compared, c.FrozenBlocks
		if !c.CompleteLog && c.From != 0 {
			r.ComparedFrom = time.Unix(c.From, 0).UTC()
		}
	}
	if !r.OK() {
		return r, fmt.Errorf("%w: %s: %d problems, the first: %s", store.ErrCorrupt, path, len(r.Problems), r.Problems[0])
	}
	return r, nil
}
