package metrics

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/stripeapi"
)

// Options configure a collector. A nil *Options and every zero field mean
// the default.
type Options struct {
	// Handler is a handler that stripeapi.NewHandler returned (not one
	// wrapping it) whose request counters the collector exports too. Nil
	// exports the database only.
	Handler http.Handler
}

// UnknownMeter is the meter label of events whose event name matches no
// meter.
const UnknownMeter = "unknown"

// NewCollector returns a collector of db's statistics, and of
// opts.Handler's when set. It panics when opts.Handler is not a handler
// of package stripeapi, a mistake of the program. The collector is safe
// for concurrent use; it keeps db and the handler, and reads them at each
// scrape, also after db is closed.
func NewCollector(db *meterdb.DB, opts *Options) prometheus.Collector {
	if db == nil {
		panic("metrics: NewCollector with a nil DB")
	}
	c := &collector{db: db}
	if opts != nil && opts.Handler != nil {
		if _, ok := stripeapi.Stats(opts.Handler); !ok {
			panic(fmt.Sprintf("metrics: Options.Handler is a %T, not a handler stripeapi.NewHandler returned", opts.Handler))
		}
		c.handler = opts.Handler
	}
	return c
}

type collector struct {
	db      *meterdb.DB
	handler http.Handler // nil: no HTTP metrics
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descEvents   = desc("meterdb_events_total", "Events by meter and outcome: accepted, rejected (failed validation), duplicate, cancelled.", "meter", "outcome")
	descRejected = desc("meterdb_events_rejected_total", "Events that failed validation, by meter and Stripe error code (duplicates aside).", "meter", "code")
	descBatch    = desc("meterdb_batch_events", "Events per RecordBatch call (a Record call is a batch of one).")
	descCommitN  = desc("meterdb_commit_events", "Events and cancellations per group commit to the log.")
	descCommit   = desc("meterdb_commit_duration_seconds", "Time of a group commit's transaction, from its start until it is synced.")
	descFsync    = desc("meterdb_fsync_duration_seconds", "Time a group commit spends writing the file and syncing it (two fdatasyncs).")
	descCkpt     = desc("meterdb_checkpoint_duration_seconds", "Time of a checkpoint of the aggregates.")
	descLastCkpt = desc("meterdb_last_checkpoint_timestamp_seconds", "Unix time of the last checkpoint.")
	descLogRecs  = desc("meterdb_log_records", "Records in the database file's event log.")
	descLogBytes = desc("meterdb_log_bytes", "Encoded size of the records in the event log, in bytes.")
	descFile     = desc("meterdb_file_bytes", "Size of the database file in bytes.")
	descIdents   = desc("meterdb_dedupe_identifiers", "Identifiers in the dedupe index.")
	descSlots    = desc("meterdb_dedupe_slots", "Slots of the dedupe index, 4 bytes each.")
	descMeters   = desc("meterdb_meters", "Meters, active or not.")
	descSeries   = desc("meterdb_series", "(meter, customer) pairs with data.")
	descBuckets  = desc("meterdb_buckets", "Aggregate buckets held in memory, by kind: hour, day, minute (cells), raw (entries kept for last and pre-aggregated meters).", "kind")
	descMemory   = desc("meterdb_memory_bytes", "Estimated heap held by aggregates, the dedupe index and in-memory events, in bytes.")
	descFrozen   = desc("meterdb_frozen_day_aggregates", "(meter, customer, day) aggregates frozen: days that can no longer change, kept in a packed read-only form.")
	descFrozenB  = desc("meterdb_frozen_bytes", "Estimated heap held by frozen days, in bytes (part of meterdb_memory_bytes).")
	descStored   = desc("meterdb_frozen_stored_blocks", "Blocks of 32 frozen days of a series kept in the database file, only their day cells in memory.")
	descDurable  = desc("meterdb_durability_info", "Always 1; mode is the durability mode: sync, buffered, or memory for a database without a file.", "mode")
	descWriteErr = desc("meterdb_write_failed", "1 while the database refuses writes after a write failure (reopening its file, or waiting for disk space), else 0.")
	descReopens  = desc("meterdb_reopens_total", "Times the database reopened its file after a write failure.")

	descReplApplied = desc("meterdb_replica_applied_position", "Position of the shared log this replica has applied.")
	descReplLast    = desc("meterdb_replica_log_position", "Newest position of the shared log, as asked at the scrape; absent when the log could not be asked.")
	descReplLag     = desc("meterdb_replica_lag_records", "Records of the shared log this replica has still to apply; absent when the log could not be asked.")
	descReplAge     = desc("meterdb_replica_applied_stamp_age_seconds", "Time since the writer of the last applied record stamped it: how far behind this replica is, or, with no lag, the time since the last write anywhere.")
	descReplErr     = desc("meterdb_replica_error", "1 while the shared log cannot be asked or this replica cannot apply it (it retries), else 0.")

	descRequests  = desc("meterdb_http_requests_total", "HTTP responses of the Stripe API handler, by route and status code.", "route", "code")
	descReqTime   = desc("meterdb_http_request_duration_seconds", "Time from a request's arrival at the Stripe API handler until its response was written.", "route")
	descThrottled = desc("meterdb_http_throttled_total", "Requests turned away with 429 by admission or rate limits.")
	descStream    = desc("meterdb_stream_events_total", "Events of the meter event stream, by the engine's outcome: accepted or rejected.", "outcome")
)

var dbDescs = []*prometheus.Desc{descEvents, descRejected, descBatch, descCommitN, descCommit, descFsync, descCkpt,
	descLastCkpt, descLogRecs, descLogBytes, descFile, descIdents, descSlots, descMeters, descSeries, descBuckets,
	descMemory, descFrozen, descFrozenB, descStored, descDurable, descWriteErr, descReopens,
	descReplApplied, descReplLast, descReplLag, descReplAge, descReplErr}

var httpDescs = []*prometheus.Desc{descRequests, descReqTime, descThrottled, descStream}

// Describe sends the descriptions of every metric the collector can send.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range dbDescs {
		ch <- d
	}
	if c.handler != nil {
		for _, d := range httpDescs {
			ch <- d
		}
	}
}

// Collect sends the metrics of one snapshot.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.db.Stats()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, m := range s.ByMeter {
		id := m.ID
		if id == "" {
			id = UnknownMeter
		}
		counter(descEvents, float64(m.Accepted), id, "accepted")
		counter(descEvents, float64(m.Rejected), id, "rejected")
		counter(descEvents, float64(m.Duplicate), id, "duplicate")
		counter(descEvents, float64(m.Cancelled), id, "cancelled")
		for code, n := range m.RejectedByCode {
			counter(descRejected, float64(n), id, code)
		}
	}
	ch <- histogram(descBatch, s.BatchEvents)
	gauge(descIdents, float64(s.DedupeIdentities))
	gauge(descSlots, float64(s.DedupeSlots))
	gauge(descMeters, float64(s.Meters))
	gauge(descSeries, float64(s.Series))
	gauge(descBuckets, float64(s.HourBuckets), "hour")
	gauge(descBuckets, float64(s.DayBuckets), "day")
	gauge(descBuckets, float64(s.MinuteCells), "minute")
	gauge(descBuckets, float64(s.RawEntries), "raw")
	gauge(descMemory, float64(s.MemoryBytes))
	gauge(descFrozen, float64(s.FrozenDays))
	gauge(descFrozenB, float64(s.FrozenBytes))
	gauge(descStored, float64(s.FrozenStoredBlocks))
	mode := "memory"
	switch {
	case s.InMemory:
	case s.Durability == meterdb.DurabilityBuffered:
		mode = "buffered"
	default:
		mode = "sync"
	}
	gauge(descDurable, 1, mode)
	if !s.InMemory {
		ch <- histogram(descCommitN, s.CommitEvents)
		ch <- histogram(descCommit, s.CommitDuration)
		ch <- histogram(descFsync, s.SyncDuration)
		ch <- histogram(descCkpt, s.CheckpointDuration)
		if !s.LastCheckpoint.IsZero() {
			gauge(descLastCkpt, float64(s.LastCheckpoint.Unix()))
		}
		gauge(descLogRecs, float64(s.LogRecords))
		gauge(descLogBytes, float64(s.LogBytes))
		gauge(descFile, float64(s.FileBytes))
		gauge(descWriteErr, flag(s.WriteFailed))
		counter(descReopens, float64(s.Reopens))
	}
	if r := s.Replica; r != nil {
		gauge(descReplApplied, float64(r.Applied))
		if r.Lag >= 0 {
			gauge(descReplLast, float64(r.Last))
			gauge(descReplLag, float64(r.Lag))
		}
		gauge(descReplAge, r.StampAge.Seconds())
		gauge(descReplErr, flag(r.Err != nil))
	}
	if c.handler == nil {
		return
	}
	hs, _ := stripeapi.Stats(c.handler)
	for _, r := range hs.Routes {
		for code, n := range r.Responses {
			counter(descRequests, float64(n), r.Route, strconv.Itoa(code))
		}
		ch <- histogram(descReqTime, r.Duration, r.Route)
	}
	counter(descThrottled, float64(hs.Throttled))
	counter(descStream, float64(hs.StreamEventsAccepted), "accepted")
	counter(descStream, float64(hs.StreamEventsRejected), "rejected")
}

func flag(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// histogram converts h's per-bucket counts to a constant Prometheus
// histogram, whose buckets are cumulative.
func histogram(d *prometheus.Desc, h meterdb.Histogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var n uint64
	for i, b := range h.Bounds {
		n += h.Counts[i]
		buckets[b] = n
	}
	return prometheus.MustNewConstHistogram(d, h.Count(), h.Sum, buckets, labels...)
}
