package dashboard

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Options configure a dashboard handler. A nil *Options and every zero
// field mean the default.
type Options struct {
	// APIKeys are the keys that open the dashboard: typed into its login
	// form, or sent by scripts as Bearer or Basic credentials, as to the
	// Stripe API handler. Empty means the dashboard is open to anyone who
	// reaches it: serve it on a loopback address only, as meterd does.
	APIKeys []string
	// SessionKey signs session cookies and the forms' CSRF tokens with
	// HMAC-SHA256; at least 32 bytes. Nil means 32 random bytes drawn by
	// NewHandler, so that sessions end when the process does. Give a fixed
	// key to keep sessions across restarts or share them between processes.
	SessionKey []byte
	// SessionTTL is how long a login lasts. Zero means 12 hours.
	SessionTTL time.Duration
	// SecureCookies marks the session cookie Secure even on requests that
	// arrived without TLS: for a dashboard behind a proxy that terminates
	// TLS. Requests that arrived over TLS always get a Secure cookie.
	SecureCookies bool
	// Refresh is how often the overview page reloads itself, which also
	// updates its ingest rate. Zero means 10 seconds; negative means never.
	Refresh time.Duration
	// TopCustomers is how many customers a meter page lists by default
	// (a page may ask for up to 100 with ?top=N). Zero means 10.
	TopCustomers int
	// Now is the clock that places the charts' windows and the ingest
	// rate's samples. Nil means time.Now.
	Now func() time.Time
	// Logger receives an Error record for each failed page. Nil means
	// silent.
	Logger *slog.Logger
}

const (
	defaultSessionTTL   = 12 * time.Hour
	defaultRefresh      = 10 * time.Second
	defaultTopCustomers = 10
	maxTopCustomers     = 100
	minSessionKey       = 32
)

// withDefaults returns a copy of o with zero fields set to their defaults,
// or an error naming the first invalid field.
func (o *Options) withDefaults() (Options, error) {
	var r Options
	if o != nil {
		r = *o
		r.APIKeys = append([]string(nil), o.APIKeys...)
		r.SessionKey = append([]byte(nil), o.SessionKey...)
	}
	for i, k := range r.APIKeys {
		if k == "" || strings.ContainsAny(k, " \t\r\n:") {
			return r, fmt.Errorf("dashboard: Options.APIKeys[%d] is empty or contains a space or colon", i)
		}
	}
	switch {
	case len(r.SessionKey) == 0:
		r.SessionKey = make([]byte, minSessionKey)
		rand.Read(r.SessionKey)
	case len(r.SessionKey) < minSessionKey:
		return r, fmt.Errorf("dashboard: Options.SessionKey has %d bytes, want at least %d", len(r.SessionKey), minSessionKey)
	}
	if r.SessionTTL < 0 || r.TopCustomers < 0 {
		return r, errors.New("dashboard: Options.SessionTTL and TopCustomers must not be negative")
	}
	if r.TopCustomers > maxTopCustomers {
		return r, fmt.Errorf("dashboard: Options.TopCustomers is %d, want at most %d", r.TopCustomers, maxTopCustomers)
	}
	if r.SessionTTL == 0 {
		r.SessionTTL = defaultSessionTTL
	}
	if r.Refresh == 0 {
		r.Refresh = defaultRefresh
	}
	if r.TopCustomers == 0 {
		r.TopCustomers = defaultTopCustomers
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return r, nil
}
