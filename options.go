package meterdb

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/meterdb/meterdb/sharedlog"
	"github.com/meterdb/meterdb/store"
)

// Durability says when a file-backed DB acknowledges a write; see
// Options.Durability.
type Durability int

// Durability modes.
const (
	// DurabilitySync acknowledges an event after the fsync that covers it.
	// The writers of one commit wait for the goroutine that commits it,
	// and that goroutine needs a processor after each fsync: a process
	// whose processors are all busy (GOMAXPROCS, the number of cores by
	// default) makes it queue behind them. Serving many concurrent
	// writers on few cores, a GOMAXPROCS of twice the cores keeps it
	// from waiting; cmd/meterd does so by default.
	DurabilitySync Durability = iota
	// DurabilityBuffered acknowledges an event once it is applied in
	// memory; it is synced within Options.FlushInterval after the commit
	// in progress when it arrived, plus its own commit, and a crash can
	// lose what was acknowledged in that window (never more, and nothing
	// is ever counted twice).
	DurabilityBuffered
)

// storeDurability converts d to the store's mode.
func (d Durability) storeDurability() store.Durability {
	if d == DurabilityBuffered {
		return store.DurabilityBuffered
	}
	return store.DurabilitySync
}

// Options configure a DB. A nil *Options and every zero field mean the
// default.
type Options struct {
	// Shards is the number of aggregate shards, a power of two.
	// Zero means 64.
	Shards int
	// DedupeWindow is how long an identifier stays taken after its event
	// was received. Zero means 24 hours. Cancellation works on events
	// received within the last 24 hours whatever the window.
	DedupeWindow time.Duration
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Logger receives operational messages. Nil means silent.
	Logger *slog.Logger

	// The fields below apply to file-backed databases only.

	// Durability is DurabilitySync (the zero value) or DurabilityBuffered.
	Durability Durability
	// MaxBatchSize is the most events one group commit carries; a larger
	// RecordBatch still commits whole. Zero means 100,000.
	MaxBatchSize int
	// MaxBatchDelay is how long a commit waits for more events after the
	// first; zero means none: a commit takes what is queued, and what
	// arrives during its fsync forms the next one.
	MaxBatchDelay time.Duration
	// FlushInterval is, with DurabilityBuffered, the longest an
	// acknowledged event waits before its commit starts. Zero means 100 ms.
	FlushInterval time.Duration
	// CheckpointInterval is how often the aggregates changed since the last
	// checkpoint are written, which bounds the log that Open replays and
	// lets old log records go. Zero means 30 s; Close always checkpoints.
	CheckpointInterval time.Duration
	// HistoryCacheBytes bounds the memory of a file-backed database's
	// cache of blocks of frozen history read back from the file: 32 days
	// of one series, a couple of kilobytes each, read when a summary needs
	// the hours of a day older than about two months. Zero means 4 MiB.
	HistoryCacheBytes int
	// LockTimeout is how long Open waits for another process holding the
	// file. Zero means 1 s.
	LockTimeout time.Duration
	// NoFsync skips fsync: for throwaway data only. A machine crash (not a
	// process crash) can then lose or corrupt the file.
	NoFsync bool
	// ReadOnly opens an existing file for reading only, under a shared
	// lock: several read-only processes can open the file at once, none
	// while a writer holds it (Open then fails after LockTimeout). Every
	// write (RecordBatch, Cancel, meter changes, PutKV, DeleteKV) returns
	// an error unwrapping to ErrReadOnly, and Close writes no checkpoint.
	// Ignored for an in-memory database.
	ReadOnly bool

	// dedupeEpoch and dedupeMinEpoch shrink the dedupe index's epochs
	// (pipeline.Config.DedupeEpoch, DedupeMinEpoch); tests set them with
	// SetDedupeEpochsForTest so that epochs roll often.
	dedupeEpoch    time.Duration
	dedupeMinEpoch int

	// Log, when set, makes the database one replica of a database that
	// several processes share: every change is appended to Log and
	// applied, in Log's order, by every replica (see "Replicas" in the
	// package documentation). Open's path is then the replica's local
	// state file ("" keeps it in memory: a restart reads the log from its
	// start, or from a snapshot when the log was truncated); the local
	// file is written with DurabilityBuffered whatever Durability says,
	// since the log is the truth. DB.Close does not close Log. Nil means a
	// database of this process alone.
	Log sharedlog.Log
	// ConsistentReads makes every read of a replica (summaries, meters,
	// key-value records) first wait until the replica applied the Log's
	// newest record as of the read's start, so that it sees every write
	// acknowledged by any replica before it. Without it a replica sees its
	// own acknowledged writes and lags the others by what it has not
	// applied yet (Stats.Replica). Writes wait too before they validate,
	// so that a meter created on any replica before a write is known to
	// it. Ignored without Log.
	ConsistentReads bool
	// SnapshotInterval is, for a file-backed replica, how often (with
	// jitter) it checks whether the Log's newest snapshot is older than
	// the interval and, if so, writes one; replicas take turns. Zero means
	// 10 minutes. Ignored without Log.
	SnapshotInterval time.Duration
}

// CancelWindow is how long after its receipt an event can be cancelled.
const CancelWindow = 24 * time.Hour

// withDefaults returns a copy of o with zero fields set to their defaults,
// or an error naming the first invalid field.
func (o *Options) withDefaults() (Options, error) {
	var r Options
	if o != nil {
		r = *o
	}
	switch {
	case r.Shards == 0:
		r.Shards = 64
	case r.Shards < 0 || r.Shards&(r.Shards-1) != 0:
		return r, fmt.Errorf("meterdb: Options.Shards is %d, want a power of two", r.Shards)
	}
	switch {
	case r.DedupeWindow == 0:
		r.DedupeWindow = 24 * time.Hour
	case r.DedupeWindow < 0:
		return r, fmt.Errorf("meterdb: Options.DedupeWindow is %v, want a positive duration", r.DedupeWindow)
	}
	if r.Durability != DurabilitySync && r.Durability != DurabilityBuffered {
		return r, fmt.Errorf("meterdb: Options.Durability is %d, want DurabilitySync or DurabilityBuffered", r.Durability)
	}
	if r.CheckpointInterval < 0 {
		return r, fmt.Errorf("meterdb: Options.CheckpointInterval is %v, want a positive duration", r.CheckpointInterval)
	}
	if r.CheckpointInterval == 0 {
		r.CheckpointInterval = 30 * time.Second
	}
	if r.HistoryCacheBytes < 0 { // zero: the engine's default
		return r, fmt.Errorf("meterdb: Options.HistoryCacheBytes is %d, want a positive size", r.HistoryCacheBytes)
	}
	switch {
	case r.SnapshotInterval < 0:
		return r, fmt.Errorf("meterdb: Options.SnapshotInterval is %v, want a positive duration", r.SnapshotInterval)
	case r.SnapshotInterval == 0:
		r.SnapshotInterval = 10 * time.Minute
	}
	if r.Log != nil && r.ReadOnly {
		return r, fmt.Errorf("meterdb: Options.ReadOnly and Options.Log exclude each other")
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return r, nil
}
