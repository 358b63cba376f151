package export_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/export"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/stripeapi"
)

var ctx = context.Background()

// now is the clock of the test databases.
var now = time.Date(2026, 3, 10, 10, 30, 0, 0, time.UTC)

// fixture is a file-backed DB with known data in three meters: a sum
// meter, a last meter and a count meter with an hourly event time window,
// with customers whose ids need CSV quoting, and a cancelled event.
func fixture(t *testing.T) (path string, meters []meter.Meter) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "export.db")
	db, err := meterdb.Open(path, &meterdb.Options{Now: func() time.Time { return now }, NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []meter.Params{
		{DisplayName: "tokens", EventName: "tokens", Formula: meter.Sum},
		{DisplayName: "seats", EventName: "seats", Formula: meter.Last},
		{DisplayName: "logins", EventName: "logins", Formula: meter.Count, EventTimeWindow: meter.Hour},
	} {
		m, err := db.CreateMeter(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		meters = append(meters, m)
	}
	customers := []string{"cus_a", "cus_b", `cus_"quoted", with comma`, "cus_z"}
	day := now.Truncate(24 * time.Hour)
	n := 0
	for d := -3; d <= 0; d++ {
		for h := 0; h < 10; h += 3 {
			for ci, c := range customers {
				for _, m := range meters {
					n++
					ts := day.Add(time.Duration(d)*24*time.Hour + time.Duration(h)*time.Hour + time.Duration(n%50)*time.Minute)
					if ci == 3 && d < 0 {
						continue // cus_z only today
					}
					e := event.Event{Name: m.EventName, Identifier: "e" + strconv.Itoa(n), Timestamp: ts,
						Payload: map[string]string{meter.DefaultCustomerKey: c, meter.DefaultValueKey: strconv.Itoa(n * (ci + 1))}}
					if _, err := db.Record(ctx, e); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
	if err := db.Cancel(ctx, "tokens", "e7"); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path, meters
}

// row is one parsed export row.
type row struct {
	customer, meter, eventName string
	start, end                 time.Time
	value                      string
	count                      int64
}

func parseRows(t *testing.T, f export.Format, b []byte) []row {
	t.Helper()
	var rows []row
	if f == export.NDJSON {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		for dec.More() {
			var o map[string]any
			if err := dec.Decode(&o); err != nil {
				t.Fatalf("NDJSON: %v in %s", err, b)
			}
			if len(o) != len(export.Header) {
				t.Fatalf("NDJSON object with keys %v", o)
			}
			r := row{customer: o["customer"].(string), meter: o["meter"].(string), eventName: o["event_name"].(string),
				value: string(o["value"].(json.Number))}
			r.start, _ = time.Parse(time.RFC3339, o["start"].(string))
			r.end, _ = time.Parse(time.RFC3339, o["end"].(string))
			r.count, _ = o["count"].(json.Number).Int64()
			rows = append(rows, r)
		}
		return rows
	}
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || len(recs) == 0 || strings.Join(recs[0], ",") != strings.Join(export.Header, ",") {
		t.Fatalf("CSV: %v, header %v", err, recs)
	}
	for _, rec := range recs[1:] {
		r := row{customer: rec[0], meter: rec[1], eventName: rec[2], value: rec[5]}
		var err1, err2, err3 error
		r.start, err1 = time.Parse(time.RFC3339, rec[3])
		r.end, err2 = time.Parse(time.RFC3339, rec[4])
		r.count, err3 = strconv.ParseInt(rec[6], 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatalf("CSV row %q: %v", rec, err)
		}
		rows = append(rows, r)
	}
	return rows
}

// checkRows checks that rows are exactly the non-empty summaries of every
// customer of m over [from, to) with grouping g, in customer order and
// then oldest window first.
func checkRows(t *testing.T, db *meterdb.DB, m meter.Meter, from, to time.Time, g meterdb.Grouping, rows []row) {
	t.Helper()
	var want []row
	for _, c := range []string{"cus_a", "cus_b", `cus_"quoted", with comma`, "cus_none", "cus_z"} {
		sums, err := db.Summaries(ctx, meterdb.SummaryParams{Meter: m.ID, Customer: c, Start: from, End: to, Grouping: g})
		if err != nil {
			t.Fatal(err)
		}
		for i := len(sums) - 1; i >= 0; i-- {
			if s := sums[i]; s.Count > 0 {
				want = append(want, row{customer: c, meter: m.ID, eventName: m.EventName, start: s.Start, end: s.End,
					value: s.Value.String(), count: s.Count})
			}
		}
	}
	// Customers sort by byte order: cus_"… sorts before cus_a.
	if len(want) == 0 {
		t.Fatal("the fixture has no usage in the range: the check would prove nothing")
	}
	got := map[string]bool{}
	for _, r := range rows {
		got[fmt.Sprint(r)] = true
	}
	for _, w := range want {
		if !got[fmt.Sprint(w)] {
			t.Fatalf("%s over [%v, %v) grouping %q: row %v missing; rows:\n%v", m.EventName, from, to, g, w, rows)
		}
	}
	if len(rows) != len(want) {
		t.Fatalf("%s over [%v, %v) grouping %q: %d rows, want %d", m.EventName, from, to, g, len(rows), len(want))
	}
	for i := 1; i < len(rows); i++ {
		a, b := rows[i-1], rows[i]
		if a.customer > b.customer || a.customer == b.customer && !a.start.Before(b.start) {
			t.Fatalf("rows %v and %v out of order", a, b)
		}
	}
}

// TestWrite exports every meter of the fixture with every grouping and
// format, by id and by event name, from the file opened read-only and
// through Handler on a real HTTP server behind stripeapi.RequireAPIKey,
// and checks every row against Summaries.
func TestWrite(t *testing.T) {
	path, meters := fixture(t)
	db, err := meterdb.Open(path, &meterdb.Options{ReadOnly: true, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h, err := stripeapi.RequireAPIKey(export.Handler(db), &stripeapi.Options{APIKeys: []string{"sk_test_export"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(p export.Params) []byte {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+export.Path+"?"+p.Query(), nil)
		req.Header.Set("Authorization", "Bearer sk_test_export")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("GET %v: %s %v\n%s", p, res.Status, err, b)
		}
		return b
	}
	day := now.Truncate(24 * time.Hour)
	for _, m := range meters {
		for _, r := range []struct {
			g        meterdb.Grouping
			from, to time.Time
		}{
			{meterdb.GroupNone, day.Add(-3 * 24 * time.Hour), day.Add(24 * time.Hour)},
			{meterdb.GroupNone, day.Add(-2*24*time.Hour + 17*time.Minute), day.Add(4*time.Hour + 3*time.Minute)},
			{meterdb.GroupHour, day.Add(-24 * time.Hour), day.Add(12 * time.Hour)},
			{meterdb.GroupDay, day.Add(-3 * 24 * time.Hour), day.Add(24 * time.Hour)},
		} {
			for _, f := range []export.Format{export.CSV, export.NDJSON} {
				for _, name := range []string{m.ID, m.EventName} {
					p := export.Params{Meter: name, From: r.from, To: r.to, Grouping: r.g, Format: f}
					var buf bytes.Buffer
					if err := export.Write(ctx, db, &buf, p); err != nil {
						t.Fatalf("Write(%+v): %v", p, err)
					}
					checkRows(t, db, m, r.from, r.to, r.g, parseRows(t, f, buf.Bytes()))
					if b := get(p); !bytes.Equal(b, buf.Bytes()) {
						t.Fatalf("GET %v differs from Write:\n%s\n---\n%s", p, b, buf.Bytes())
					}
				}
			}
		}
	}
}

// TestWriteErrors checks the parameter errors of Write and their HTTP
// statuses, and that Handler refuses a request without a key.
func TestWriteErrors(t *testing.T) {
	path, meters := fixture(t)
	db, err := meterdb.Open(path, &meterdb.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h, err := stripeapi.RequireAPIKey(export.Handler(db), &stripeapi.Options{APIKeys: []string{"sk_test_export"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	day := now.Truncate(24 * time.Hour)
	ok := export.Params{Meter: meters[0].ID, From: day, To: day.Add(24 * time.Hour)}
	for _, tc := range []struct {
		name   string
		edit   func(p *export.Params)
		status int
		param  string
	}{
		{"no meter", func(p *export.Params) { p.Meter = "" }, 400, "meter"},
		{"unknown meter", func(p *export.Params) { p.Meter = "nope" }, 404, "meter"},
		{"bad format", func(p *export.Params) { p.Format = "xml" }, 400, "format"},
		{"empty range", func(p *export.Params) { p.To = p.From }, 400, "end_time"},
		{"unaligned day", func(p *export.Params) { p.Grouping, p.From = meterdb.GroupDay, day.Add(time.Hour) }, 400, "start_time"},
		{"unaligned minute", func(p *export.Params) { p.To = p.To.Add(time.Second) }, 400, "end_time"},
	} {
		p := ok
		tc.edit(&p)
		var buf bytes.Buffer
		err := export.Write(ctx, db, &buf, p)
		var pe *export.ParamError
		var qe *meterdb.QueryError
		if !(errors.As(err, &pe) && errors.Is(err, export.ErrInvalid) || errors.As(err, &qe) || errors.Is(err, meter.ErrNotFound)) {
			t.Errorf("%s: Write error %v", tc.name, err)
		}
		if buf.Len() != 0 {
			t.Errorf("%s: Write wrote %q before failing", tc.name, buf.String())
		}
		q := p.Query()
		req, _ := http.NewRequest("GET", srv.URL+export.Path+"?"+q, nil)
		req.Header.Set("Authorization", "Bearer sk_test_export")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var eb export.ErrorBody
		derr := json.NewDecoder(res.Body).Decode(&eb)
		res.Body.Close()
		if res.StatusCode != tc.status || derr != nil || eb.Error.Param != tc.param || eb.Error.Message == "" {
			t.Errorf("%s: GET %s: %s, %+v (%v); want %d on %s", tc.name, q, res.Status, eb, derr, tc.status, tc.param)
		}
	}
	for _, q := range []string{"from=yesterday&to=1&meter=x", "from=1&to=2&meter=x&grouping=week"} {
		req, _ := http.NewRequest("GET", srv.URL+export.Path+"?"+q, nil)
		req.Header.Set("Authorization", "Bearer sk_test_export")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 400 {
			t.Errorf("GET ?%s: %s, want 400", q, res.Status)
		}
	}
	res, err := http.Get(srv.URL + export.Path + "?" + ok.Query())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Errorf("GET without a key: %s, want 401", res.Status)
	}
}

// TestParseTime checks both accepted forms and the error.
func TestParseTime(t *testing.T) {
	want := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, s := range []string{"2026-03-01T00:00:00Z", "2026-03-01T01:00:00+01:00", strconv.FormatInt(want.Unix(), 10)} {
		if got, err := export.ParseTime("from", s); err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("ParseTime(%q) = %v, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "2026-03-01", "yesterday", "1.5"} {
		if _, err := export.ParseTime("from", s); !errors.Is(err, export.ErrInvalid) {
			t.Errorf("ParseTime(%q): %v, want ErrInvalid", s, err)
		}
	}
}
