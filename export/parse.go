package export

import (
	"fmt"
	"strconv"
	"time"

	"github.com/meterdb/meterdb"
)

// ParseTime reads a period bound: an RFC 3339 time or unix seconds. param
// names it in the error, a *ParamError.
func ParseTime(param, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, &ParamError{Param: param, Message: "a time is required (RFC 3339, such as 2026-03-01T00:00:00Z, or unix seconds)."}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, &ParamError{Param: param, Message: fmt.Sprintf("%q is neither an RFC 3339 time (such as 2026-03-01T00:00:00Z) nor unix seconds.", s)}
	}
	return t.UTC(), nil
}

// ParseGrouping reads a grouping: "none" (or empty), "hour" or "day".
func ParseGrouping(s string) (meterdb.Grouping, error) {
	switch s {
	case "", "none":
		return meterdb.GroupNone, nil
	case "hour":
		return meterdb.GroupHour, nil
	case "day":
		return meterdb.GroupDay, nil
	}
	return "", &ParamError{Param: "grouping", Message: fmt.Sprintf("%q is not a grouping: use hour, day or none.", s)}
}

// ParseFormat reads a format: "csv" (or empty) or "ndjson".
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case "", CSV:
		return CSV, nil
	case NDJSON:
		return NDJSON, nil
	}
	return "", &ParamError{Param: "format", Message: fmt.Sprintf("%q is not a format: use csv or ndjson.", s)}
}

// Query returns p as the query string Handler reads.
func (p Params) Query() string {
	g := string(p.Grouping)
	if g == "" {
		g = "none"
	}
	return "meter=" + urlEscape(p.Meter) + "&from=" + strconv.FormatInt(p.From.Unix(), 10) +
		"&to=" + strconv.FormatInt(p.To.Unix(), 10) + "&grouping=" + urlEscape(g) + "&format=" + urlEscape(string(p.Format))
}
