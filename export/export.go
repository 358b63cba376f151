package export

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/meter"
)

// Format is the encoding of the rows.
type Format string

// Formats.
const (
	CSV    Format = "csv"    // a header line, then one line per row (RFC 4180)
	NDJSON Format = "ndjson" // one JSON object per line
)

// Params select what Write exports.
type Params struct {
	// Meter is a meter id (mtr_…) or the event name of a meter.
	Meter string
	// From and To bound the period [From, To): minute aligned without
	// grouping, hour aligned with GroupHour, UTC midnights with GroupDay.
	From, To time.Time
	// Grouping is meterdb.GroupNone (one row per customer for the whole
	// period), GroupHour or GroupDay (one row per customer per window with
	// usage).
	Grouping meterdb.Grouping
	// Format is CSV or NDJSON; zero means CSV.
	Format Format
}

// Header is the CSV header line's fields, which are also the NDJSON keys.
var Header = []string{"customer", "meter", "event_name", "start", "end", "value", "count"}

// pageSize is the number of customers Write asks DB.Customers for at a time.
const pageSize = 1000

// Write writes the usage p selects to w: one row per customer with usage
// (ascending customer) and, per customer, per window with usage (oldest
// first). Each row's value and count are those DB.Summaries returns for
// the customer and window; start and end are RFC 3339 UTC times, value a
// decimal integer (in NDJSON a JSON number, exact however large).
//
// Cost: one DB.Customers page per 1000 customers and one DB.Summaries call
// per customer; w gets buffered writes of up to 64 KiB. Write returns a
// *ParamError (unwrapping to ErrInvalid) for a bad Format, a
// *meterdb.QueryError for a bad period or grouping, a *meter.Error for an
// unknown meter, or the first error of db, ctx or w; on an error after
// rows were written, w holds a truncated export.
func Write(ctx context.Context, db *meterdb.DB, w io.Writer, p Params) error {
	m, err := resolve(ctx, db, p)
	if err != nil {
		return err
	}
	enc, err := newEncoder(w, p.Format)
	if err != nil {
		return err
	}
	// Totals checks the period and grouping, whatever the data.
	if _, err := db.Totals(ctx, meterdb.TotalsParams{Meter: m.ID, Start: p.From, End: p.To, Grouping: p.Grouping}); err != nil {
		return err
	}
	if err := enc.header(); err != nil {
		return err
	}
	cp := meterdb.CustomersParams{Meter: m.ID, Start: p.From, End: p.To, Limit: pageSize}
	var sums []meterdb.Summary
	for {
		page, more, err := db.Customers(ctx, cp)
		if err != nil {
			return err
		}
		for _, c := range page {
			sums, err = db.AppendSummaries(ctx, sums[:0],
				meterdb.SummaryParams{Meter: m.ID, Customer: c.Customer, Start: p.From, End: p.To, Grouping: p.Grouping})
			if err != nil {
				return err
			}
			for i := len(sums) - 1; i >= 0; i-- { // Summaries gives newest first
				if s := sums[i]; s.Count > 0 {
					if err := enc.row(c.Customer, m, s); err != nil {
						return err
					}
				}
			}
		}
		if !more {
			break
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		cp.After = page[len(page)-1].Customer
	}
	return enc.flush()
}

// resolve returns the meter p.Meter names, by id or by event name.
func resolve(ctx context.Context, db *meterdb.DB, p Params) (meter.Meter, error) {
	if p.Meter == "" {
		return meter.Meter{}, &ParamError{Param: "meter", Message: "a meter id or event name is required."}
	}
	m, err := db.Meter(ctx, p.Meter)
	if errors.Is(err, meter.ErrNotFound) {
		m, err = db.MeterByEventName(ctx, p.Meter)
		if errors.Is(err, meter.ErrNotFound) {
			return meter.Meter{}, &meter.Error{Code: meter.CodeResourceMissing, Param: "meter", Err: meter.ErrNotFound,
				Message: fmt.Sprintf("No meter has id or event_name %q.", p.Meter)}
		}
	}
	return m, err
}

// encoder writes rows in one format.
type encoder struct {
	bw  *bufio.Writer
	csv *csv.Writer // nil for NDJSON
	rec []string
}

func newEncoder(w io.Writer, f Format) (*encoder, error) {
	e := &encoder{bw: bufio.NewWriterSize(w, 64<<10)}
	switch f {
	case CSV, "":
		e.csv = csv.NewWriter(e.bw)
		e.rec = make([]string, len(Header))
	case NDJSON:
	default:
		return nil, &ParamError{Param: "format", Message: fmt.Sprintf("%q is not a format: use csv or ndjson.", string(f))}
	}
	return e, nil
}

func (e *encoder) header() error {
	if e.csv != nil {
		return e.csv.Write(Header)
	}
	return nil
}

func (e *encoder) row(customer string, m meter.Meter, s meterdb.Summary) error {
	start, end := s.Start.UTC().Format(time.RFC3339), s.End.UTC().Format(time.RFC3339)
	value, count := s.Value.String(), strconv.FormatInt(s.Count, 10)
	if e.csv != nil {
		copy(e.rec, []string{customer, m.ID, m.EventName, start, end, value, count})
		return e.csv.Write(e.rec)
	}
	var b strings.Builder
	b.WriteString(`{"customer":`)
	b.Write(jsonString(customer))
	b.WriteString(`,"meter":`)
	b.Write(jsonString(m.ID))
	b.WriteString(`,"event_name":`)
	b.Write(jsonString(m.EventName))
	b.WriteString(`,"start":"` + start + `","end":"` + end + `","value":` + value + `,"count":` + count + "}\n")
	_, err := e.bw.WriteString(b.String())
	return err
}

func jsonString(s string) []byte {
	b, _ := json.Marshal(s) // a string always encodes
	return b
}

func (e *encoder) flush() error {
	if e.csv != nil {
		e.csv.Flush()
		if err := e.csv.Error(); err != nil {
			return err
		}
	}
	return e.bw.Flush()
}
