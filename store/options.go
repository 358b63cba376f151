package store

import (
	"fmt"
	"log/slog"
	"time"
)

// Durability says when a write is acknowledged.
type Durability int

const (
	// DurabilitySync acknowledges a write after the fsync that covers it.
	DurabilitySync Durability = iota
	// DurabilityBuffered acknowledges a write at once; the committer syncs
	// within FlushInterval, and a crash can lose what was acknowledged in
	// that interval.
	DurabilityBuffered
)

// Options configure a store. Nil and zero fields mean the default.
type Options struct {
	// Durability; the zero value is DurabilitySync.
	Durability Durability
	// MaxBatchSize is the most events one commit carries (a single larger
	// Append still commits whole). Zero means 100,000.
	MaxBatchSize int
	// MaxBatchDelay is how long the committer waits for more records after
	// the first one, to fill a commit. Zero means no wait: a commit takes
	// what is queued and more queues while it syncs.
	MaxBatchDelay time.Duration
	// FlushInterval is how long the committer of a buffered store waits
	// after the first queued record for more (a full batch commits at
	// once). A crash loses at most what was acknowledged in that time plus
	// one commit. Zero means 100 ms. Used only with DurabilityBuffered.
	FlushInterval time.Duration
	// LockTimeout is how long Open waits for another process to release
	// the file. Zero means 1 s.
	LockTimeout time.Duration
	// Logger receives commit failures and the upgrade of a format 1 file.
	// Nil means silent.
	Logger *slog.Logger
	// NoFsync skips fsync entirely (for throwaway data and benchmarks of
	// everything but the disk). A crash of the machine, not only of the
	// process, can then lose or corrupt data.
	NoFsync bool
	// ReadOnly opens an existing file for reading only, with a shared lock
	// (a writer holding the file makes Open wait for LockTimeout, then fail
	// with ErrLocked). Writes return ErrReadOnly; a format 1 file is read
	// as it is, not upgraded.
	ReadOnly bool
}

func (o *Options) withDefaults() (Options, error) {
	var r Options
	if o != nil {
		r = *o
	}
	if r.Durability != DurabilitySync && r.Durability != DurabilityBuffered {
		return r, fmt.Errorf("store: unknown durability %d", r.Durability)
	}
	if r.MaxBatchSize < 0 || r.MaxBatchDelay < 0 || r.FlushInterval < 0 || r.LockTimeout < 0 {
		return r, fmt.Errorf("store: negative option")
	}
	if r.MaxBatchSize == 0 {
		r.MaxBatchSize = 100_000
	}
	if r.FlushInterval == 0 {
		r.FlushInterval = 100 * time.Millisecond
	}
	if r.LockTimeout == 0 {
		r.LockTimeout = time.Second
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return r, nil
}
