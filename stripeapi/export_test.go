package stripeapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

// ReportDecodes returns how many error report records were decoded so far
// (by every handler and ListErrorReports call of the process).
func ReportDecodes() int64 { return reportDecodes.Load() }

// ReportNamespace is the key-value namespace of error report records.
const ReportNamespace = reportNamespace

// WriteUnindexedReport stores r as versions without the report index did:
// one record, no index records.
func WriteUnindexedReport(ctx context.Context, db *meterdb.DB, r ErrorReport) error {
	raw, err := json.Marshal(reportRecord{Reports: []ErrorReport{r}})
	if err != nil {
		return err
	}
	return db.PutKV(ctx, reportNamespace, newReportKey(r.Created), raw, r.Created.Add(ErrorReportTTL))
}
