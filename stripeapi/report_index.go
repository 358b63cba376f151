package stripeapi

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meterdb/meterdb"
)

// listPrefix calls fn with the records of ns whose keys start with prefix
// and sort after prefix+after, in key order, until fn returns false.
func listPrefix(ctx context.Context, db *meterdb.DB, ns, prefix, after string, fn func(k string, v []byte) bool) error {
	return db.ListKV(ctx, ns, prefix+after, func(k string, v []byte) bool {
		if !strings.HasPrefix(k, prefix) {
			return false
		}
		return fn(k, v)
	})
}

// indexFor returns the index prefix that serves p's filters, or ok false
// when the records themselves are to be walked (no filter, or one that
// keeps every report); none reports filters that nothing matches.
func indexFor(p ErrorReportListParams) (prefix string, ok, none bool) {
	var types []string
	for _, t := range p.Types {
		if (t == EventErrorReportTriggered || t == EventNoMeterFound) && !slices.Contains(types, t) {
			types = append(types, t)
		}
	}
	switch {
	case len(p.Types) > 0 && len(types) == 0:
		return "", false, true
	case p.Meter != "":
		// Only error_report_triggered reports have a meter.
		if len(types) > 0 && !slices.Contains(types, EventErrorReportTriggered) {
			return "", false, true
		}
		return "o/" + p.Meter + "/", true, false
	case len(types) == 1:
		return "t/" + types[0] + "/", true, false
	}
	return "", false, false
}

// listIndexed serves ListErrorReports from the index under prefix: it
// walks index records from the cursor (or the created bound), and decodes
// only the records of the reports it returns.
func listIndexed(ctx context.Context, db *meterdb.DB, prefix string, p ErrorReportListParams, afterKey string, afterIdx int) ([]ErrorReport, bool, error) {
	start := ""
	if !p.Until.IsZero() {
		start = timeKeyPrefix(p.Until.Add(-time.Nanosecond))
	}
	if afterKey != "" {
		start = max(start, fmt.Sprintf("%s%02x", afterKey, afterIdx))
	}
	type hit struct {
		key string
		i   int
	}
	var hits []hit
	more := false
	err := listPrefix(ctx, db, reportIndexNamespace, prefix, start, func(k string, _ []byte) bool {
		rest := k[len(prefix):]
		if len(rest) != reportKeyLen+2 {
			return true
		}
		created, ok := reportKeyTime(rest)
		i, err := strconv.ParseUint(rest[reportKeyLen:], 16, 8)
		if !ok || err != nil {
			return true
		}
		if !p.Since.IsZero() && created.Before(p.Since) {
			return false // older reports follow
		}
		if !p.Until.IsZero() && !created.Before(p.Until) {
			return true
		}
		if len(hits) == p.Limit {
			more = true
			return false
		}
		hits = append(hits, hit{rest[:reportKeyLen], int(i)})
		return true
	})
	if err != nil {
		return nil, false, err
	}
	out := make([]ErrorReport, 0, len(hits))
	var rec reportRecord
	recKey := ""
	for _, h := range hits {
		if h.key != recKey {
			raw, found, err := db.GetKV(ctx, reportNamespace, h.key)
			if err != nil {
				return nil, false, err
			}
			recKey, rec = h.key, reportRecord{}
			if !found { // dropped since the index was read
				continue
			}
			reportDecodes.Add(1)
			if err := json.Unmarshal(raw, &rec); err != nil {
				return nil, false, fmt.Errorf("stripeapi: error report %s: %w", h.key, err)
			}
		}
		if h.i < len(rec.Reports) {
			r := rec.Reports[h.i]
			r.ID = reportID(h.key, h.i)
			out = append(out, r)
		}
	}
	return out, more, nil
}
