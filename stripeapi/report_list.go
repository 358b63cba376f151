package stripeapi

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/meterdb/meterdb"
)

// ErrorReportListParams select error reports. The zero value lists the
// newest ten.
type ErrorReportListParams struct {
	// Limit is the most reports returned, 1 to 100; zero means 10.
	Limit int
	// After is the ID of the last report of the previous page; the page
	// holds the reports after it (older ones). "" starts at the newest.
	After string
	// Meter keeps only the reports about this meter id.
	Meter string
	// Types keeps only reports of these types; empty keeps all.
	Types []string
	// Since (inclusive) and Until (exclusive) bound Created; zero times
	// leave the bound open.
	Since, Until time.Time
}

// ListErrorReports returns error reports of the meter event stream, newest
// first, and whether more follow. Reports are kept for ErrorReportTTL.
// An After that is not a report ID is an error.
func ListErrorReports(ctx context.Context, db *meterdb.DB, p ErrorReportListParams) ([]ErrorReport, bool, error) {
	if p.Limit == 0 {
		p.Limit = 10
	}
	if p.Limit < 0 || p.Limit > 100 {
		return nil, false, fmt.Errorf("stripeapi: ErrorReportListParams.Limit is %d, want 1 to 100", p.Limit)
	}
	var afterKey string
	afterIdx := -1
	if p.After != "" {
		k, i, ok := parseReportID(p.After)
		if !ok {
			return nil, false, fmt.Errorf("stripeapi: %q is not an error report ID", p.After)
		}
		afterKey, afterIdx = k, i
	}
	if prefix, ok, none := indexFor(p); none {
		return nil, false, nil
	} else if ok {
		_, indexed, err := db.GetKV(ctx, reportIndexNamespace, indexMarker)
		if err != nil {
			return nil, false, err
		}
		if indexed {
			return listIndexed(ctx, db, prefix, p, afterKey, afterIdx)
		}
	}
	var out []ErrorReport
	more := false
	var decodeErr error
	// Start just before afterKey so that its later reports are included,
	// or at the first record created before Until.
	start := ""
	if afterKey != "" {
		start = afterKey[:len(afterKey)-1]
	}
	if !p.Until.IsZero() {
		start = max(start, timeKeyPrefix(p.Until.Add(-time.Nanosecond)))
	}
	err := db.ListKV(ctx, reportNamespace, start, func(key string, value []byte) bool {
		if key < afterKey {
			return true
		}
		var rec reportRecord
		reportDecodes.Add(1)
		if err := json.Unmarshal(value, &rec); err != nil {
			decodeErr = fmt.Errorf("stripeapi: error report %s: %w", key, err)
			return false
		}
		for i, r := range rec.Reports {
			if key == afterKey && i <= afterIdx {
				continue
			}
			if !p.Since.IsZero() && r.Created.Before(p.Since) {
				return false // older reports follow
			}
			if !p.Until.IsZero() && !r.Created.Before(p.Until) ||
				p.Meter != "" && r.Meter != p.Meter ||
				len(p.Types) > 0 && !slices.Contains(p.Types, r.Type) {
				continue
			}
			if len(out) == p.Limit {
				more = true
				return false
			}
			r.ID = reportID(key, i)
			out = append(out, r)
		}
		return true
	})
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		return nil, false, err
	}
	return out, more, nil
}

// GetErrorReport returns the error report with the given ID; the second
// result is false when there is none (or it expired).
func GetErrorReport(ctx context.Context, db *meterdb.DB, id string) (ErrorReport, bool, error) {
	key, i, ok := parseReportID(id)
	if !ok {
		return ErrorReport{}, false, nil
	}
	raw, found, err := db.GetKV(ctx, reportNamespace, key)
	if err != nil || !found {
		return ErrorReport{}, false, err
	}
	var rec reportRecord
	reportDecodes.Add(1)
	if err := json.Unmarshal(raw, &rec); err != nil {
		return ErrorReport{}, false, fmt.Errorf("stripeapi: error report %s: %w", key, err)
	}
	if i >= len(rec.Reports) {
		return ErrorReport{}, false, nil
	}
	r := rec.Reports[i]
	r.ID = id
	return r, true, nil
}
