package meterdb

import (
	"fmt"
	"log/slog"
	"time"
)

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
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return r, nil
}
