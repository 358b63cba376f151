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
	ok := 0
	for _, k := range h.opts.APIKeys {
		ok |= subtle.ConstantTimeCompare([]byte(k), []byte(key))
	}
	return ok == 1
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
