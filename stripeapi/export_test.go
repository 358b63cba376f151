package stripeapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"

	"github.com/meterdb/meterdb"
)

// SetExecHook makes h call f just before each execution step.
func SetExecHook(h http.Handler, f func(*http.Request)) { h.(*handler).execHook = f }

// IdempotencyRecord returns the key-value namespace and key under which the
// handler keeps the record of idemKey sent with apiKey.
func IdempotencyRecord(apiKey, idemKey string) (namespace, key string) {
	sum := sha256.Sum256([]byte(apiKey))
	return idemNamespace, hex.EncodeToString(sum[:12]) + "/" + idemKey
}

// FailReportWrites makes the key-value writes of h's error reports fail
// with err (nil restores them); other writes are unaffected.
func FailReportWrites(h http.Handler, err error) {
	hd := h.(*handler)
	if err == nil {
		hd.writeReports = hd.db.WriteKV
		return
	}
	hd.writeReports = func(context.Context, []meterdb.KVWrite) error { return err }
}
