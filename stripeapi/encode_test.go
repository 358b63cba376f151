package stripeapi

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"
)

// randString returns a string of up to 12 pieces drawn from ASCII,
// characters encoding/json escapes, multi-byte UTF-8, U+2028/U+2029 and
// invalid UTF-8 (which the decoders reject upstream; the encoder still
// writes it as encoding/json does).
func randString(r *rand.Rand) string {
	pieces := []string{"a", "Z", "9", " ", "_", "-", "\"", "\\", "/", "<", ">", "&", "\n", "\r", "\t", "\b", "\f",
		"\x00", "\x1f", "\x7f", "é", "€", "😀", "\u2028", "\u2029", "\xff", "\xc3", "\xe2\x82", "\xed\xa0\x80", "cus_123"}
	var b []byte
	for range r.IntN(13) {
		b = append(b, pieces[r.IntN(len(pieces))]...)
	}
	return string(b)
}

func randPayload(r *rand.Rand) map[string]string {
	if r.IntN(10) == 0 {
		return nil
	}
	m := map[string]string{}
	for range r.IntN(20) {
		m[randString(r)] = randString(r)
	}
	return m
}

// TestAppendJSON checks the append-style encoders against encoding/json on
// random values: the bytes are those of json.MarshalIndent(v, "", "  ")
// and a newline, and both decode to the same value.
func TestAppendJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	values := []any{emptyObject{}, &v1SummaryList{newV1List[v1MeterEventSummary]("/v1/x", nil, false)},
		&v1SummaryList{v1List[v1MeterEventSummary]{Object: "list"}}}
	for range 2000 {
		values = append(values,
			&v1MeterEvent{Object: randString(r), Created: r.Int64() - r.Int64(), EventName: randString(r),
				Identifier: randString(r), Livemode: r.IntN(2) == 0, Payload: randPayload(r), Timestamp: int64(r.Int32())},
			&v2MeterEvent{Object: randString(r), Created: randString(r), EventName: randString(r),
				Identifier: randString(r), Livemode: r.IntN(2) == 0, Payload: randPayload(r), Timestamp: randString(r)})
		l := newV1List[v1MeterEventSummary](randString(r), nil, r.IntN(2) == 0)
		for range r.IntN(4) {
			v := strconv.FormatInt(r.Int64()-r.Int64(), 10)
			if r.IntN(3) == 0 {
				v = "-170141183460469231731687303715884105728"
			}
			l.Data = append(l.Data, v1MeterEventSummary{ID: randString(r), Object: randString(r),
				AggregatedValue: json.Number(v), EndTime: r.Int64(), Livemode: r.IntN(2) == 0,
				Meter: randString(r), StartTime: -r.Int64()})
		}
		values = append(values, &v1SummaryList{l})
	}
	for _, v := range values {
		want, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, '\n')
		got, err := appendBody([]byte("prefix"), v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[len("prefix"):], want) {
			t.Fatalf("%#v:\n got %q\nwant %q", v, got[len("prefix"):], want)
		}
		var a, b any
		if err := json.Unmarshal(got[len("prefix"):], &a); err != nil {
			t.Fatalf("%q: %v", got, err)
		}
		if err := json.Unmarshal(want, &b); err != nil || !reflect.DeepEqual(a, b) {
			t.Fatalf("decoded %v, want %v (%v)", a, b, err)
		}
	}
}

// FuzzAppendJSONString checks the string escaper against encoding/json.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "a", "\"\\", "<>&", "\x00\x1f\x7f", "\u2028\u2029", "\xff", "é€😀", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
	})
}

// TestAppendJSONAllocs checks that encoding a billing.meter_event into a
// buffer with room allocates nothing.
func TestAppendJSONAllocs(t *testing.T) {
	ev := &v1MeterEvent{Object: "billing.meter_event", Created: 1772323200, EventName: "api_call",
		Identifier: "0b6f3c9e-8a51-4f0e-9a2b-6d1c2e3f4a5b", Payload: map[string]string{"stripe_customer_id": "cus_1", "value": "25"}, Timestamp: 1772322000}
	buf := make([]byte, 0, 1024)
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		buf, err = appendBody(buf[:0], ev)
		if err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%.0f allocations to encode a billing.meter_event", allocs)
	}
}

// BenchmarkEncode compares the append-style encoders (encoder=append, into
// a reused buffer) with json.MarshalIndent (encoder=encoding-json) on a
// billing.meter_event and on a page of 24 hourly summaries.
func BenchmarkEncode(b *testing.B) {
	ev := &v1MeterEvent{Object: "billing.meter_event", Created: 1772323200, EventName: "api_call",
		Identifier: "0b6f3c9e-8a51-4f0e-9a2b-6d1c2e3f4a5b", Payload: map[string]string{"stripe_customer_id": "cus_1", "value": "25"}, Timestamp: 1772322000}
	l := newV1List[v1MeterEventSummary]("/v1/billing/meters/mtr_1/event_summaries", nil, true)
	for i := range 24 {
		start := int64(1772323200 - 3600*i)
		l.Data = append(l.Data, v1MeterEventSummary{ID: summaryID(false, summaryTag("mtr_1", "cus_1"), start, start+3600),
			Object: "billing.meter_event_summary", AggregatedValue: json.Number(strconv.Itoa(1000 + i)), EndTime: start + 3600,
			Meter: "mtr_1", StartTime: start})
	}
	for _, v := range []struct {
		name string
		v    any
	}{{"object=billing.meter_event", ev}, {"object=summary_list_24", &v1SummaryList{l}}} {
		b.Run(v.name+"/encoder=append", func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for range b.N {
				buf, _ = appendBody(buf[:0], v.v)
			}
		})
		b.Run(v.name+"/encoder=encoding-json", func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				body, _ := json.MarshalIndent(v.v, "", "  ")
				_ = append(body, '\n')
			}
		})
	}
}
