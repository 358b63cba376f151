package stripeapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/meterdb/meterdb/stripeapi/internal/wire"
)

// maxKeyLength bounds the API keys the handler looks at, in bytes.
const maxKeyLength = 255

// apiKey is the authenticated caller.
type apiKey struct {
	livemode bool
	// scope names the caller in idempotency records and rate limits
	// without keeping the key: a hex prefix of its SHA-256.
	scope string
}

const msgNoKey = "You did not provide an API key. You need to provide your API key in the Authorization header, " +
	"using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication " +
	"for details, or we can help at https://support.stripe.com/."

// authenticate reads the API key from the Authorization header: Bearer
// <key>, Basic base64(<key>:) or Basic <key>.
func (h *handler) authenticate(r *http.Request) (apiKey, error) {
	key := credential(r)
	if key == "" {
		return apiKey{}, wire.InvalidRequest(http.StatusUnauthorized, "", "", msgNoKey)
	}
	if !h.keyAllowed(key) {
		return apiKey{}, wire.InvalidRequest(http.StatusUnauthorized, "", "", "Invalid API Key provided: "+maskKey(key))
	}
	sum := sha256.Sum256([]byte(key))
	return apiKey{
		livemode: strings.HasPrefix(key, "sk_live_") || strings.HasPrefix(key, "rk_live_"),
		scope:    hex.EncodeToString(sum[:12]),
	}, nil
}

// Credential returns the API key (or session token) that r carries in its
// Authorization header, read as the handler reads it: Bearer <key>, Basic
// base64(<key>:) or Basic <key>. It returns "" when there is none. Other
// handlers guarded by the same keys (the dashboard) use it with MatchKey.
func Credential(r *http.Request) string { return credential(r) }

// MatchKey reports whether key is one of keys. Its running time depends on
// the number and lengths of keys, not on which key matched or how much of
// key agrees with one; keys longer than 255 bytes never match.
func MatchKey(keys []string, key string) bool {
	if len(key) > maxKeyLength {
		return false
	}
	ok := 0
	for _, k := range keys {
		ok |= subtle.ConstantTimeCompare([]byte(k), []byte(key))
	}
	return ok == 1
}

// credential returns the key or token of the Authorization header: Bearer
// <key>, Basic base64(<key>:) or Basic <key>; "" when there is none.
func credential(r *http.Request) string {
	raw := strings.TrimSpace(r.Header.Get("Authorization"))
	var key string
	switch scheme, rest, _ := strings.Cut(raw, " "); {
	case strings.EqualFold(scheme, "Bearer"):
		key = strings.TrimSpace(rest)
	case strings.EqualFold(scheme, "Basic"):
		rest = strings.TrimSpace(rest)
		if dec, err := base64.StdEncoding.DecodeString(rest); err == nil {
			key, _, _ = strings.Cut(string(dec), ":")
		} else {
			key = rest
		}
	}
	return key
}

func (h *handler) keyAllowed(key string) bool {
	if len(key) > maxKeyLength {
		return false
	}
	if len(h.opts.APIKeys) == 0 {
		return strings.HasPrefix(key, "sk_test_") && len(key) > len("sk_test_") && printable(key)
	}
	return MatchKey(h.opts.APIKeys, key)
}

// maskKey shows a key as Stripe does in its 401 message: the prefix up to
// the last underscore among the first 8 characters, asterisks, and the
// last four characters (none of them for short keys).
func maskKey(key string) string {
	if len(key) > maxKeyLength || !printable(key) {
		return "(unprintable or overlong key)"
	}
	prefix := key[:strings.LastIndexByte(key[:min(8, len(key))], '_')+1]
	rest := key[len(prefix):]
	if len(rest) <= 8 {
		return prefix + "****"
	}
	return prefix + strings.Repeat("*", len(rest)-4) + rest[len(rest)-4:]
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// RequireAPIKey returns a handler that passes to next only the requests
// whose Authorization header carries an API key opts accepts: the check
// NewHandler makes (opts.APIKeys; without any, every sk_test_ key), with
// the same 401 response and Request-Id header. It lets an application
// serve endpoints of its own beside the Stripe API behind the same keys
// (cmd/meterd mounts the usage export this way); those endpoints are
// extensions, not part of Stripe's API. Only opts.APIKeys is read; opts
// may be nil and is copied. The handler is safe for concurrent use.
func RequireAPIKey(next http.Handler, opts *Options) (http.Handler, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	h := &handler{opts: o, log: o.Logger}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := h.authenticate(r); err != nil {
			c := &call{h: h, w: w, r: r, id: newRequestID(), api: apiV1, now: o.Now()}
			w.Header().Set("Request-Id", c.id)
			c.write(c.errorResponse(err))
			return
		}
		next.ServeHTTP(w, r)
	}), nil
}
