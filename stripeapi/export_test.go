package stripeapi

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
)

// SetExecHook makes h call f just before each execution step.
func SetExecHook(h http.Handler, f func(*http.Request)) { h.(*handler).execHook = f }

// IdempotencyRecord returns the key-value namespace and key under which the
// handler keeps the record of idemKey sent with apiKey.
func IdempotencyRecord(apiKey, idemKey string) (namespace, key string) {
	sum := sha256.Sum256([]byte(apiKey))
	return idemNamespace, hex.EncodeToString(sum[:12]) + "/" + idemKey
}
