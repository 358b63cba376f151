package replica

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"regexp"
	"time"
)

// Options configures Open. The zero value of every field but URLs means
// its default.
type Options struct {
	// URLs are the NATS servers to connect to (nats:// or tls://); one
	// is enough, the client learns the rest of the cluster. Required.
	URLs []string

	// Stream is the JetStream stream holding the log; default "METERDB".
	// Records are published on the subject Stream+".rec"; snapshots live
	// in the object store bucket Stream+"_SNAPSHOTS". Every process of
	// one database uses the same Stream.
	Stream string

	// Replicas is the number of servers storing the stream and the
	// snapshot bucket when Open creates them; default 3. An Append
	// returns after a majority of them stored the record.
	Replicas int

	// MaxAge is how long the stream keeps a record when Open creates it;
	// default 72 h. A replica whose position is older than MaxAge must
	// bootstrap from a snapshot, so MaxAge must cover the snapshot
	// interval plus the longest time a replica may be down; and since a
	// bootstrapping replica rebuilds its dedupe and cancel state from the
	// snapshot and the records after it, the snapshot must hold those
	// (the default 24 h windows of meterdb are in the snapshot's state,
	// not only in the log). See the package doc for the sizing.
	MaxAge time.Duration

	// DuplicateWindow is how long the stream remembers a record's
	// message id, so that a publish retried within it is not stored
	// twice; default 2 min, at least AppendTimeout, at most MaxAge.
	DuplicateWindow time.Duration

	// AppendTimeout bounds how long one Append keeps retrying a record
	// (same message id), and one Last its question, through a lost
	// connection or a leader election before it returns an error
	// wrapping sharedlog.ErrUnavailable;
	// default 15 s, which covers one JetStream leader election (4 to 9 s
	// in nats-server).
	AppendTimeout time.Duration

	// AttemptTimeout bounds one publish attempt's wait for its
	// acknowledgement, and one attempt of Last its wait for an answer;
	// default 2 s.
	AttemptTimeout time.Duration

	// CredsFile is a NATS credentials file (JWT and NKey seed), passed to
	// the connection; empty means none.
	CredsFile string

	// TLS configures TLS to the servers (root CAs, client certificate);
	// nil means the system defaults, used for tls:// URLs or servers that
	// require TLS. The configuration is not modified.
	TLS *tls.Config

	// Name is the NATS connection name shown by the servers; default
	// "meterdb".
	Name string

	// Logger receives connection events (disconnect, reconnect) and the
	// retries of Append and Read; nil means silent.
	Logger *slog.Logger

	// Now stamps snapshots; nil means time.Now.
	Now func() time.Time
}

var streamName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// withDefaults returns o with its defaults filled in, or an error
// wrapping ErrOptions.
func (o Options) withDefaults() (Options, error) {
	if len(o.URLs) == 0 {
		return o, fmt.Errorf("%w: URLs is empty", ErrOptions)
	}
	if o.Stream == "" {
		o.Stream = "METERDB"
	}
	if !streamName.MatchString(o.Stream) {
		return o, fmt.Errorf("%w: Stream %q: only letters, digits, - and _", ErrOptions, o.Stream)
	}
	if o.Replicas == 0 {
		o.Replicas = 3
	}
	if o.Replicas < 1 || o.Replicas > 5 {
		return o, fmt.Errorf("%w: Replicas %d: 1 to 5", ErrOptions, o.Replicas)
	}
	if o.MaxAge == 0 {
		o.MaxAge = 72 * time.Hour
	}
	if o.DuplicateWindow == 0 {
		o.DuplicateWindow = 2 * time.Minute
	}
	if o.AppendTimeout == 0 {
		o.AppendTimeout = 15 * time.Second
	}
	if o.AttemptTimeout == 0 {
		o.AttemptTimeout = 2 * time.Second
	}
	switch {
	case o.MaxAge < 0, o.DuplicateWindow < 0, o.AppendTimeout < 0, o.AttemptTimeout < 0:
		return o, fmt.Errorf("%w: negative duration", ErrOptions)
	case o.DuplicateWindow > o.MaxAge:
		return o, fmt.Errorf("%w: DuplicateWindow %v is longer than MaxAge %v", ErrOptions, o.DuplicateWindow, o.MaxAge)
	case o.DuplicateWindow < o.AppendTimeout:
		return o, fmt.Errorf("%w: DuplicateWindow %v is shorter than AppendTimeout %v: a retried publish could be stored twice", ErrOptions, o.DuplicateWindow, o.AppendTimeout)
	}
	if o.Name == "" {
		o.Name = "meterdb"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}
