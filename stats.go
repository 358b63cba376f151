package meterdb

import (
	"time"

	"github.com/meterdb/meterdb/internal/pipeline"
	"github.com/meterdb/meterdb/internal/stats"
)

// Stats is a snapshot of a database's counters and sizes. Counters
// (Events*, ByMeter, the histograms, Checkpoints) only grow while the
// database is open and start at zero when it opens; the other fields are
// current values. The slices and maps are the caller's: each call to
// DB.Stats returns new ones.
type Stats struct {
	EventsAccepted  int64 // events recorded
	EventsRejected  int64 // events that failed validation (duplicates aside)
	EventsDuplicate int64 // events rejected as duplicates
	EventsCancelled int64 // events cancelled
	Meters          int64
	Series          int64 // (meter, customer) pairs with data
	HourBuckets     int64 // hours with events, frozen ones included
	DayBuckets      int64 // days with events, frozen ones included
	MinuteCells     int64 // minutes with events, frozen ones included
	RawEntries      int64 // entries kept for last and pre-aggregated meters; frozen days keep none
	// FrozenDays counts the (meter, customer, day) aggregates that can no
	// longer change and are kept in a packed read-only form, FrozenBytes
	// the memory that form takes (part of MemoryBytes), and FrozenBefore
	// the UTC midnight before which every day is frozen or due to freeze
	// (zero before the first freeze). See "Memory" in the package doc.
	FrozenDays   int64
	FrozenBytes  int64
	FrozenBefore time.Time
	// FrozenStoredBlocks counts the blocks of 32 frozen days of a series
	// that a file-backed database keeps in its file, only their day cells
	// in memory.
	FrozenStoredBlocks int64
	DedupeSlots        int64 // 4 bytes each
	DedupeIdentities   int64 // identifiers remembered
	DedupeBytes        int64 // memory of the dedupe index: its tables and pending sets
	// DedupeConfirmReads counts the reads that confirmed or refuted a
	// candidate location of an identifier; DedupeFreshConfirmed counts the
	// identifiers accepted as new that paid at least one (a false match of
	// the index's tag: 14 bits with a file, where a read is a disk read; 9
	// bits in memory, where it compares one event's fingerprint).
	DedupeConfirmReads   int64
	DedupeFreshConfirmed int64
	// Reopens counts the times the database reopened its file after a
	// write failure that left unclear what reached the disk.
	Reopens int64
	// MemoryBytes estimates the heap held by aggregates, the dedupe index
	// and (in-memory databases) what the log keeps of the events of the
	// retention window (fingerprints and what Cancel needs); it is
	// computed from counts and structure sizes, not measured.
	MemoryBytes int64

	// ByMeter splits the Events counters by meter: one entry per meter, in
	// creation order, after an entry with an empty ID for events whose
	// event name matches no meter (present once there was one).
	ByMeter []MeterStats
	// BatchEvents is the number of events of each RecordBatch call (a
	// Record call is a batch of one).
	BatchEvents Histogram

	// Durability is the database's durability mode; InMemory reports a
	// database opened without a file, for which the fields below are zero.
	Durability Durability
	InMemory   bool
	// CommitEvents is the number of events and cancellations of each
	// group commit to the log.
	CommitEvents Histogram
	// CommitDuration is the time of each group commit, in seconds, from
	// the start of its transaction until it is synced.
	CommitDuration Histogram
	// SyncDuration is the part of each commit spent writing and syncing
	// the file (two fdatasyncs per commit unless Options.NoFsync), in
	// seconds.
	SyncDuration Histogram
	// LogRecords and LogBytes are the records in the file's event log and
	// their encoded size; checkpoints delete the records no longer needed.
	LogRecords int64
	LogBytes   int64
	// FileBytes is the size of the database file.
	FileBytes int64
	// Checkpoints counts the checkpoints written since Open (Close writes
	// one more); LastCheckpoint is the time of the latest one (by
	// Options.Now, whole seconds), zero before the first.
	Checkpoints    int64
	LastCheckpoint time.Time
	// CheckpointDuration is the time each checkpoint took, in seconds.
	CheckpointDuration Histogram
	// WriteFailed reports that the database refuses writes after a write
	// failure: while it reopens its file, or waits for disk space (see
	// Ready for the reason).
	WriteFailed bool

	// Replica is the progress of a replica of a shared log (Options.Log);
	// nil for a database of one process.
	Replica *ReplicaStats
}

// ReplicaStats describe how far a replica of a shared log has applied it.
type ReplicaStats struct {
	// Applied is the shared log position this replica applied; Last the
	// log's newest position as Stats asked it (waiting at most a second),
	// 0 when it could not be asked.
	Applied, Last uint64
	// Lag is Last minus Applied: the records this replica has still to
	// apply; -1 when Last is unknown.
	Lag int64
	// StampAge is the time since the writer of the record at Applied
	// stamped it, by Options.Now: with Lag 0 it is the time since the last
	// write anywhere, otherwise how far behind this replica is. Zero
	// before the first record.
	StampAge time.Duration
	// Err is why the log's last position could not be asked, or why the
	// replica cannot apply the log (it retries), or nil.
	Err error
}

// MeterStats are the event counters of one meter.
type MeterStats struct {
	ID        string // the meter's id; "" for events naming no meter
	EventName string
	Accepted  int64
	Rejected  int64 // failed validation, duplicates aside
	Duplicate int64
	Cancelled int64
	// RejectedByCode splits Rejected by Stripe error code (such as
	// "timestamp_too_far_in_past"); codes with no rejection are absent.
	RejectedByCode map[string]int64
}

// Histogram is a fixed-bucket histogram's state. Counts are per bucket,
// not cumulative: Counts[i] observations were at most Bounds[i] and above
// Bounds[i-1]; the last, Counts[len(Bounds)], exceeded every bound.
// Bounds and Sum are in the unit the field documents (seconds or events).
type Histogram struct {
	Bounds []float64 // ascending upper bounds
	Counts []uint64  // len(Bounds)+1, or nil for an empty Histogram
	Sum    float64
}

// Count returns the number of observations.
func (h Histogram) Count() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// Sub returns h minus o, bucket by bucket; o must have h's bounds or be
// empty.
func (h Histogram) Sub(o Histogram) Histogram {
	if o.Counts == nil {
		return h
	}
	if len(o.Counts) != len(h.Counts) {
		panic("meterdb: Histogram.Sub of histograms with different bounds")
	}
	d := Histogram{Bounds: h.Bounds, Counts: make([]uint64, len(h.Counts)), Sum: h.Sum - o.Sum}
	for i := range h.Counts {
		d.Counts[i] = h.Counts[i] - o.Counts[i]
	}
	return d
}

// Sub returns s minus o, field by field: the activity between two
// snapshots. Histograms and ByMeter subtract by bucket and by meter ID
// (meters missing from o count from zero); Durability, InMemory,
// LastCheckpoint, FrozenBefore, WriteFailed and Replica are s's.
func (s Stats) Sub(o Stats) Stats {
	d := Stats{
		EventsAccepted: s.EventsAccepted - o.EventsAccepted, EventsRejected: s.EventsRejected - o.EventsRejected,
		EventsDuplicate: s.EventsDuplicate - o.EventsDuplicate, EventsCancelled: s.EventsCancelled - o.EventsCancelled,
		Meters: s.Meters - o.Meters, Series: s.Series - o.Series, HourBuckets: s.HourBuckets - o.HourBuckets,
		DayBuckets: s.DayBuckets - o.DayBuckets, MinuteCells: s.MinuteCells - o.MinuteCells,
		RawEntries: s.RawEntries - o.RawEntries, DedupeSlots: s.DedupeSlots - o.DedupeSlots,
		FrozenDays: s.FrozenDays - o.FrozenDays, FrozenBytes: s.FrozenBytes - o.FrozenBytes, FrozenBefore: s.FrozenBefore,
		FrozenStoredBlocks: s.FrozenStoredBlocks - o.FrozenStoredBlocks,
		DedupeIdentities:   s.DedupeIdentities - o.DedupeIdentities, DedupeBytes: s.DedupeBytes - o.DedupeBytes,
		DedupeConfirmReads: s.DedupeConfirmReads - o.DedupeConfirmReads, DedupeFreshConfirmed: s.DedupeFreshConfirmed - o.DedupeFreshConfirmed,
		MemoryBytes: s.MemoryBytes - o.MemoryBytes,
		Reopens:     s.Reopens - o.Reopens,
		BatchEvents: s.BatchEvents.Sub(o.BatchEvents),
		Durability:  s.Durability, InMemory: s.InMemory,
		CommitEvents: s.CommitEvents.Sub(o.CommitEvents), CommitDuration: s.CommitDuration.Sub(o.CommitDuration),
		SyncDuration: s.SyncDuration.Sub(o.SyncDuration),
		LogRecords:   s.LogRecords - o.LogRecords, LogBytes: s.LogBytes - o.LogBytes, FileBytes: s.FileBytes - o.FileBytes,
		Checkpoints: s.Checkpoints - o.Checkpoints, LastCheckpoint: s.LastCheckpoint,
		CheckpointDuration: s.CheckpointDuration.Sub(o.CheckpointDuration),
		WriteFailed:        s.WriteFailed, Replica: s.Replica,
	}
	if s.ByMeter != nil {
		d.ByMeter = make([]MeterStats, len(s.ByMeter))
	}
	for i, m := range s.ByMeter {
		for _, p := range o.ByMeter {
			if p.ID == m.ID {
				m.Accepted, m.Rejected, m.Duplicate, m.Cancelled = m.Accepted-p.Accepted, m.Rejected-p.Rejected,
					m.Duplicate-p.Duplicate, m.Cancelled-p.Cancelled
				byCode := map[string]int64{}
				for c, n := range m.RejectedByCode {
					if n -= p.RejectedByCode[c]; n != 0 {
						byCode[c] = n
					}
				}
				m.RejectedByCode = byCode
				break
			}
		}
		d.ByMeter[i] = m
	}
	return d
}

// Stats returns current counters and sizes. It works after Close too.
func (db *DB) Stats() Stats {
	es := db.e.Stats()
	t, d := es.Table, es.Dedupe
	s := Stats{
		EventsAccepted: es.Accepted, EventsRejected: es.Rejected,
		EventsDuplicate: es.Duplicates, EventsCancelled: es.Cancels,
		Meters: es.Meters, Series: t.Series, HourBuckets: t.HourBuckets,
		DayBuckets: t.DayBuckets, MinuteCells: t.MinuteCells, RawEntries: t.RawEntries,
		FrozenDays: t.FrozenDays, FrozenBytes: t.FrozenBytes, FrozenStoredBlocks: t.StoredBlocks,
		DedupeSlots: d.Slots, DedupeIdentities: d.Used, DedupeBytes: d.Bytes,
		DedupeConfirmReads: d.ConfirmReads, DedupeFreshConfirmed: d.FreshConfirmed,
		MemoryBytes: t.Bytes + d.Bytes + es.LogMemory,
		Reopens:     es.Reopens,
		ByMeter:     meterStats(es),
		BatchEvents: histogramOf(es.Batch, 1),
		Durability:  db.opts.Durability, InMemory: es.InMemory,
		WriteFailed: es.WriteFailed,
	}
	if es.FrozenBefore != 0 {
		s.FrozenBefore = time.Unix(es.FrozenBefore, 0).UTC()
	}
	if db.opts.Log != nil {
		s.Durability = DurabilityBuffered // a replica's file: the log is the truth
	}
	if r := es.Replica; r != nil {
		s.Replica = &ReplicaStats{Applied: r.Applied, Last: r.Last, Lag: int64(r.Last) - int64(r.Applied), Err: r.ApplyErr}
		if r.LastErr != nil {
			s.Replica.Last, s.Replica.Lag, s.Replica.Err = 0, -1, r.LastErr
		}
		if r.Stamp != 0 {
			s.Replica.StampAge = db.e.Now().Sub(time.Unix(r.Stamp, 0))
		}
	}
	if st := es.Store; st != nil {
		const ns = 1e-9
		s.CommitEvents, s.CommitDuration = histogramOf(st.CommitEvents, 1), histogramOf(st.CommitDuration, ns)
		s.SyncDuration, s.CheckpointDuration = histogramOf(st.SyncDuration, ns), histogramOf(st.CheckpointDuration, ns)
		s.LogRecords, s.LogBytes, s.FileBytes = st.LogRecords, st.LogBytes, st.FileBytes
		s.Checkpoints = st.Checkpoints
		if st.LastCheckpoint != 0 {
			s.LastCheckpoint = time.Unix(st.LastCheckpoint, 0).UTC()
		}
	}
	return s
}

// meterStats returns the counters of every meter, and of unknown meters
// when there were events for one.
func meterStats(es pipeline.Stats) []MeterStats {
	snap := es.ByMeter
	out := make([]MeterStats, 0, len(es.MeterDefs)+1)
	fill := func(m MeterStats, c *stats.MeterSnapshot) MeterStats {
		m.Accepted, m.Duplicate, m.Cancelled = c.Accepted, c.Duplicate, c.Cancelled
		for i, n := range c.Rejected {
			if n != 0 {
				if m.RejectedByCode == nil {
					m.RejectedByCode = map[string]int64{}
				}
				m.RejectedByCode[pipeline.RejectCodes[i]] += n
				m.Rejected += n
			}
		}
		return m
	}
	i := 0
	if len(snap) > 0 && snap[0].Key == 0 {
		out = append(out, fill(MeterStats{}, &snap[0]))
		i = 1
	}
	for _, m := range es.MeterDefs { // ordered by Seq, as is snap
		st := MeterStats{ID: m.ID, EventName: m.EventName}
		for i < len(snap) && snap[i].Key < m.Seq {
			i++
		}
		if i < len(snap) && snap[i].Key == m.Seq {
			st = fill(st, &snap[i])
		}
		out = append(out, st)
	}
	return out
}

// histogramOf converts a snapshot, multiplying bounds and sum by scale.
func histogramOf(s stats.HistogramSnapshot, scale float64) Histogram {
	h := Histogram{Bounds: make([]float64, len(s.Bounds)), Counts: s.Counts, Sum: float64(s.Sum) * scale}
	for i, b := range s.Bounds {
		h.Bounds[i] = float64(b) * scale
	}
	return h
}

// Ready returns nil when the database is open and can record: ErrClosed
// once Close has started, or an error wrapping ErrUnavailable while a
// write failure keeps writes refused (the database is reopening its file,
// or waiting for disk space). It does no I/O and does not wait, which
// suits a readiness probe.
func (db *DB) Ready() error { return db.e.Ready() }
