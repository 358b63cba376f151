package dashboard

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/meterdb/meterdb/stripeapi"
)

// Cookie names. The session cookie holds a signed token, never a key; the
// login cookie holds the nonce that the login form's CSRF token is tied to.
const (
	sessionCookie = "meterdb_session"
	loginCookie   = "meterdb_login"
	loginTTL      = time.Hour // how long a login form stays usable
	nonceLen      = 16
	tokenVersion  = "v1"
)

// access is how a request was let in.
type access int

const (
	accessDenied  access = iota
	accessOpen           // no keys configured
	accessKey            // a valid key in the Authorization header
	accessSession        // a valid session cookie
)

// sessions issues and checks session tokens and CSRF tokens. A session
// token is "v1." + base64url(expiry, nonce) + "." + base64url(HMAC): it
// proves a login without holding the key, and its nonce ties the CSRF
// token of every form on the pages it opens. Logout revokes the nonce
// until the token would have expired anyway.
type sessions struct {
	key []byte
	ttl time.Duration

	mu      sync.Mutex           // guards revoked
	revoked map[string]time.Time // nonce -> expiry of its token
}

func newSessions(key []byte, ttl time.Duration) *sessions {
	return &sessions{key: key, ttl: ttl, revoked: map[string]time.Time{}}
}

func (s *sessions) mac(parts ...[]byte) []byte {
	m := hmac.New(sha256.New, s.key)
	for _, p := range parts {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		m.Write(n[:])
		m.Write(p)
	}
	return m.Sum(nil)
}

var b64 = base64.RawURLEncoding

// issue returns a new session token valid until now+ttl, and its expiry.
func (s *sessions) issue(now time.Time) (string, time.Time) {
	exp := now.Add(s.ttl).Truncate(time.Second)
	body := make([]byte, 8+nonceLen)
	binary.BigEndian.PutUint64(body, uint64(exp.Unix()))
	rand.Read(body[8:])
	return tokenVersion + "." + b64.EncodeToString(body) + "." + b64.EncodeToString(s.mac([]byte("session"), body)), exp
}

// check returns the nonce of a valid, unexpired, unrevoked session token.
func (s *sessions) check(token string, now time.Time) (nonce []byte, ok bool) {
	if len(token) > 256 {
		return nil, false
	}
	v, rest, _ := strings.Cut(token, ".")
	enc, sig, _ := strings.Cut(rest, ".")
	if v != tokenVersion {
		return nil, false
	}
	body, err1 := b64.DecodeString(enc)
	mac, err2 := b64.DecodeString(sig)
	if err1 != nil || err2 != nil || len(body) != 8+nonceLen ||
		!hmac.Equal(mac, s.mac([]byte("session"), body)) {
		return nil, false
	}
	exp := time.Unix(int64(binary.BigEndian.Uint64(body)), 0)
	if !now.Before(exp) {
		return nil, false
	}
	nonce = body[8:]
	s.mu.Lock()
	_, gone := s.revoked[string(nonce)]
	s.mu.Unlock()
	return nonce, !gone
}

// revoke ends the session of a valid token before its expiry.
func (s *sessions) revoke(token string, now time.Time) {
	nonce, ok := s.check(token, now)
	if !ok {
		return
	}
	enc := strings.Split(token, ".")[1]
	body, _ := b64.DecodeString(enc)
	exp := time.Unix(int64(binary.BigEndian.Uint64(body)), 0)
	s.mu.Lock()
	defer s.mu.Unlock()
	for n, e := range s.revoked { // drop what expired anyway
		if !now.Before(e) {
			delete(s.revoked, n)
		}
	}
	s.revoked[string(nonce)] = exp
}

// csrf returns the CSRF token of the forms shown to the holder of nonce
// (a session's, or a login cookie's).
func (s *sessions) csrf(purpose string, nonce []byte) string {
	return b64.EncodeToString(s.mac([]byte("csrf"), []byte(purpose), nonce))
}

// checkCSRF reports whether token is the CSRF token for purpose and nonce.
func (s *sessions) checkCSRF(purpose string, nonce []byte, token string) bool {
	got, err := b64.DecodeString(token)
	return err == nil && len(nonce) > 0 && hmac.Equal(got, s.mac([]byte("csrf"), []byte(purpose), nonce))
}

// newNonce returns a random nonce for a login form.
func newNonce() string {
	b := make([]byte, nonceLen)
	rand.Read(b)
	return b64.EncodeToString(b)
}

// authorize tells how r may see the dashboard, and the nonce of its
// session when it came with a session cookie. A request with an
// Authorization header is judged by the header alone.
func (h *handler) authorize(r *http.Request) (access, []byte) {
	if len(h.opts.APIKeys) == 0 {
		return accessOpen, nil
	}
	if r.Header.Get("Authorization") != "" {
		if stripeapi.MatchKey(h.opts.APIKeys, stripeapi.Credential(r)) {
			return accessKey, nil
		}
		return accessDenied, nil
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		if nonce, ok := h.sess.check(c.Value, h.opts.Now()); ok {
			return accessSession, nonce
		}
	}
	return accessDenied, nil
}

// secure reports whether cookies set in answer to r are marked Secure.
func (h *handler) secure(r *http.Request) bool { return r.TLS != nil || h.opts.SecureCookies }

// setCookie sets an HttpOnly, SameSite=Strict cookie scoped to the
// dashboard's path; a negative maxAge deletes it.
func (h *handler) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: mountPath(r), MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: h.secure(r),
	})
}

// mountPath returns the path the handler is mounted at, ending in "/":
// the request URI's path less the path the handler sees (http.StripPrefix
// removes the prefix from r.URL but not from r.RequestURI).
func mountPath(r *http.Request) string {
	u, err := url.ParseRequestURI(r.RequestURI)
	if err != nil {
		return "/"
	}
	prefix, ok := strings.CutSuffix(u.EscapedPath(), r.URL.EscapedPath())
	if !ok || prefix != "" && !strings.HasPrefix(prefix, "/") {
		return "/"
	}
	return prefix + "/"
}
