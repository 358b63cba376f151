package stripeapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/stripeapi/internal/jsonw"
	"github.com/meterdb/meterdb/stripeapi/internal/wire"
)

// SessionTTL is how long a meter event session's authentication token is
// valid, as Stripe documents it.
const SessionTTL = 15 * time.Minute

// sessionNamespace is the DB key-value namespace of meter event sessions.
const sessionNamespace = "stripeapi.sessions"

// tokenPrefix starts every session authentication token.
const tokenPrefix = "mets_"

// maxCachedSessions bounds the in-memory session cache; past it, expired
// entries are swept, and the cache is emptied if that is not enough.
const maxCachedSessions = 4096

// sessionRecord is what the key-value area stores for one session, keyed by a
// hash of its token (the token itself is not stored).
type sessionRecord struct {
	ID       string `json:"id"`
	Scope    string `json:"scope"` // of the API key that created it
	Livemode bool   `json:"livemode"`
	Created  int64  `json:"created"` // unix ms
	Expires  int64  `json:"expires"` // unix ms
}

// sessions creates meter event sessions and authenticates stream requests
// with their tokens. Records live in the DB's key-value area until they expire,
// so sessions survive a restart; a cache in front of it saves a read per
// stream request. It is safe for concurrent use.
type sessions struct {
	db *meterdb.DB

	mu    sync.RWMutex // guards cache
	cache map[string]sessionRecord
}

func newSessions(db *meterdb.DB) *sessions {
	return &sessions{db: db, cache: map[string]sessionRecord{}}
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:16])
}

// v2Session is the v2.billing.meter_event_session object.
type v2Session struct {
	Object              string `json:"object"`
	ID                  string `json:"id"`
	AuthenticationToken string `json:"authentication_token"`
	Created             string `json:"created"`
	ExpiresAt           string `json:"expires_at"`
	Livemode            bool   `json:"livemode"`
}

// v2CreateSession serves POST /v2/billing/meter_event_session, which takes
// no parameters. The session is durable before the token is returned.
func (h *handler) v2CreateSession(c *call, p *jsonw.Params) (execFunc, error) {
	return func(ctx context.Context) (any, error) {
		created := c.now.Truncate(time.Millisecond)
		expires := created.Add(SessionTTL)
		// The token carries its expiry to the second, rounded down: once
		// the record is gone, it tells an expired token from a forged one.
		token := tokenPrefix + strconv.FormatInt(expires.Unix(), 36) + "_" + meter.RandomBase62(32)
		rec := sessionRecord{ID: "mes_" + meter.RandomBase62(24), Scope: c.key.scope, Livemode: c.key.livemode,
			Created: created.UnixMilli(), Expires: expires.UnixMilli()}
		raw, _ := json.Marshal(rec)
		hash := tokenHash(token)
		if err := h.db.PutKV(ctx, sessionNamespace, hash, raw, expires); err != nil {
			return nil, err
		}
		h.sess.remember(hash, rec, c.now)
		return &v2Session{Object: "v2.billing.meter_event_session", ID: rec.ID, AuthenticationToken: token,
			Created: v2Time(created), ExpiresAt: v2Time(expires), Livemode: rec.Livemode}, nil
	}, nil
}

func (s *sessions) remember(hash string, rec sessionRecord, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cache) >= maxCachedSessions {
		for k, r := range s.cache {
			if r.Expires <= now.UnixMilli() {
				delete(s.cache, k)
			}
		}
		if len(s.cache) >= maxCachedSessions {
			clear(s.cache)
		}
	}
	s.cache[hash] = rec
}

func errSessionExpired() *apiError {
	return &apiError{Status: http.StatusUnauthorized, Type: typeSessionExpired, Code: codeSessionExpired,
		Message: "The meter event session has expired. Create a new session with POST /v2/billing/meter_event_session."}
}

// authenticate checks the session token of a stream request: an unknown
// token is 401 invalid_request_error, an expired one 401
// temporary_session_expired (billing_meter_event_session_expired). The
// caller gets the scope and mode of the API key that created the session.
func (s *sessions) authenticate(c *call) (apiKey, error) {
	token := credential(c.r)
	if token == "" {
		return apiKey{}, wire.InvalidRequest(http.StatusUnauthorized, "", "",
			"You did not provide a meter event session token. Create a session with POST /v2/billing/meter_event_session "+
				"using your API key, and send its authentication_token as 'Authorization: Bearer <token>'.")
	}
	invalid := wire.InvalidRequest(http.StatusUnauthorized, "", "",
		"Invalid meter event session token provided: "+maskKey(token)+". The meter event stream takes the "+
			"authentication_token of a meter event session, not an API key.")
	if !strings.HasPrefix(token, tokenPrefix) || len(token) > maxKeyLength {
		return apiKey{}, invalid
	}
	hash := tokenHash(token)
	s.mu.RLock()
	rec, ok := s.cache[hash]
	s.mu.RUnlock()
	if !ok {
		raw, found, err := s.db.GetKV(c.r.Context(), sessionNamespace, hash)
		if err != nil {
			return apiKey{}, err
		}
		if !found || json.Unmarshal(raw, &rec) != nil {
			// The record is gone once it expires: the token says when.
			if exp, ok := tokenExpiry(token); ok && !c.now.Before(exp) {
				return apiKey{}, errSessionExpired()
			}
			return apiKey{}, invalid
		}
		s.remember(hash, rec, c.now)
	}
	if c.now.UnixMilli() >= rec.Expires {
		return apiKey{}, errSessionExpired()
	}
	return apiKey{livemode: rec.Livemode, scope: rec.Scope}, nil
}

// tokenExpiry reads the expiry that a session token carries.
func tokenExpiry(token string) (time.Time, bool) {
	rest := strings.TrimPrefix(token, tokenPrefix)
	enc, _, ok := strings.Cut(rest, "_")
	if !ok {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(enc, 36, 64)
	if err != nil || sec <= 0 {
		return time.Time{}, false
	}
	return time.Unix(sec, 0), true
}
