package stripeapi

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/stripeapi/internal/form"
	"github.com/meterdb/meterdb/stripeapi/internal/wire"
)

// Summary ids are "mtrusg_" ("mtrusg_test_" for test-mode keys) and the
// unpadded lowercase base32 of: a version byte (1), the window start
// (varint, unix seconds), its length (uvarint, seconds) and the first 8
// bytes of SHA-256(meter id, 0, customer). They are stable: the same
// window of the same series always has the same id, whatever the query
// that returned it, so they work as pagination cursors.
const summaryIDVersion = 1

var summaryIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// maxSummaryTime bounds start_time and end_time: 9999-12-31T23:59:59Z.
const maxSummaryTime = 253402300799

func summaryTag(meterID, customer string) [8]byte {
	sum := sha256.Sum256([]byte(meterID + "\x00" + customer))
	return [8]byte(sum[:8])
}

func summaryID(livemode bool, tag [8]byte, start, end int64) string {
	b := []byte{summaryIDVersion}
	b = binary.AppendVarint(b, start)
	b = binary.AppendUvarint(b, uint64(end-start))
	b = append(b, tag[:]...)
	prefix := "mtrusg_test_"
	if livemode {
		prefix = "mtrusg_"
	}
	return prefix + summaryIDEncoding.EncodeToString(b)
}

// parseSummaryID returns the window start of a summary id of the series
// tag, or false when id is not one.
func parseSummaryID(id string, tag [8]byte) (int64, bool) {
	rest, ok := strings.CutPrefix(id, "mtrusg_")
	if !ok || len(rest) > 100 {
		return 0, false
	}
	rest = strings.TrimPrefix(rest, "test_")
	b, err := summaryIDEncoding.DecodeString(rest)
	if err != nil || len(b) < 1 || b[0] != summaryIDVersion {
		return 0, false
	}
	b = b[1:]
	start, n := binary.Varint(b)
	if n <= 0 {
		return 0, false
	}
	b = b[n:]
	if _, n = binary.Uvarint(b); n <= 0 {
		return 0, false
	}
	b = b[n:]
	return start, len(b) == 8 && [8]byte(b) == tag
}

// v1MeterEventSummary is the billing.meter_event_summary object.
type v1MeterEventSummary struct {
	ID     string `json:"id"`
	Object string `json:"object"`
	// AggregatedValue is written with every digit of the exact value.
	AggregatedValue json.Number `json:"aggregated_value"`
	EndTime         int64       `json:"end_time"`
	Livemode        bool        `json:"livemode"`
	Meter           string      `json:"meter"`
	StartTime       int64       `json:"start_time"`
}

// v1SummaryQuery is a decoded event summaries request.
type v1SummaryQuery struct {
	params meterdb.SummaryParams
	page   v1Page
	tag    [8]byte
	// after and before are the window starts of the cursors, when given.
	after, before *int64
}

// readV1SummaryQuery reads the parameters of GET
// /v1/billing/meters/{id}/event_summaries for meter id. The engine checks
// alignment and order of the range; this checks presence, types, ranges
// of the integers and the cursors.
func readV1SummaryQuery(id string, p *form.Params) v1SummaryQuery {
	var q v1SummaryQuery
	q.params.Meter = id
	q.params.Customer = p.Str("customer", maxIDLength, true)
	readTime := func(name string) time.Time {
		t, ok := p.Int(name, true)
		if !ok {
			return time.Time{}
		}
		if t < 0 || t > maxSummaryTime {
			p.Fail(wire.ErrInvalidParam(name, fmt.Sprintf(
				"Invalid %s: must be a unix timestamp between 0 and %d.", name, int64(maxSummaryTime))))
			return time.Time{}
		}
		return time.Unix(t, 0).UTC()
	}
	q.params.End = readTime("end_time")
	p.Expand()
	q.page = readV1Page(p)
	q.params.Start = readTime("start_time")
	q.params.Grouping = meterdb.Grouping(p.Enum("value_grouping_window", false, string(meter.Day), string(meter.Hour)))
	q.tag = summaryTag(id, q.params.Customer)
	cursor := func(param, v string) *int64 {
		if v == "" {
			return nil
		}
		start, ok := parseSummaryID(v, q.tag)
		if !ok {
			p.Fail(wire.InvalidRequest(http.StatusBadRequest, codeResourceMissing, param,
				fmt.Sprintf("No such billing.meter_event_summary: '%s'", wire.Truncate(v, 100))))
			return nil
		}
		return &start
	}
	q.after = cursor("starting_after", q.page.startingAfter)
	q.before = cursor("ending_before", q.page.endingBefore)
	return q
}

// v1ListEventSummaries serves GET /v1/billing/meters/{id}/event_summaries.
func (h *handler) v1ListEventSummaries(c *call, p *form.Params) (execFunc, error) {
	id, err := c.meterID()
	if err != nil {
		return nil, err
	}
	q := readV1SummaryQuery(id, p)
	return func(ctx context.Context) (any, error) {
		buf := summaryPool.Get().(*[]meterdb.Summary)
		defer putSummaries(buf)
		sums, err := h.db.AppendSummaries(ctx, (*buf)[:0], q.params)
		*buf = sums
		if err != nil {
			return nil, err
		}
		page, more := q.paginate(sums)
		out := make([]v1MeterEventSummary, len(page))
		for i, s := range page {
			start, end := s.Start.Unix(), s.End.Unix()
			out[i] = v1MeterEventSummary{
				ID: summaryID(c.key.livemode, q.tag, start, end), Object: "billing.meter_event_summary",
				AggregatedValue: json.Number(s.Value.String()), EndTime: end, Livemode: c.key.livemode,
				Meter: id, StartTime: start,
			}
		}
		return &v1SummaryList{newV1List("/v1/billing/meters/"+url.PathEscape(id)+"/event_summaries", out, more)}, nil
	}, nil
}

// summaryPool holds the slices that summary queries fill before a page is
// cut out of them.
var summaryPool = sync.Pool{New: func() any { return new([]meterdb.Summary) }}

// putSummaries returns buf to the pool unless it grew past what a
// 35-day hourly query needs several times over.
func putSummaries(buf *[]meterdb.Summary) {
	if cap(*buf) <= 4096 {
		summaryPool.Put(buf)
	}
}

// paginate cuts one page out of sums (newest first): the windows older
// than the starting_after cursor, or the ones just newer than the
// ending_before cursor, or the newest.
func (q *v1SummaryQuery) paginate(sums []meterdb.Summary) ([]meterdb.Summary, bool) {
	n := q.page.limit
	switch {
	case q.after != nil:
		lo := sort.Search(len(sums), func(i int) bool { return sums[i].Start.Unix() < *q.after })
		sums = sums[lo:]
	case q.before != nil:
		hi := sort.Search(len(sums), func(i int) bool { return sums[i].Start.Unix() <= *q.before })
		if hi > n {
			return sums[hi-n : hi], true
		}
		return sums[:hi], false
	}
	if len(sums) > n {
		return sums[:n], true
	}
	return sums, false
}
