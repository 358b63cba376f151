package record

import (
	"errors"
	"reflect"
	"testing"
)

func samples() []*Record {
	return []*Record{
		{Kind: KindEvents, Origin: 1<<63 + 5, Nonce: 7, Stamp: 1_800_000_000, Events: []Event{
			{Meter: 1, Customer: "cus_1", Identifier: "id-1", Value: -3, Timestamp: 1_799_999_000},
			{Meter: 300, Customer: "", Identifier: "x", Value: 1 << 50, Timestamp: 0},
		}},
		{Kind: KindEvents, Stamp: -1, Events: []Event{}},
		{Kind: KindCancel, Origin: 2, Nonce: 1, Stamp: 5, Cancel: Cancel{Meter: 9, Identifier: "abc"}},
		{Kind: KindMeterCreate, Stamp: 5, Meter: Meter{ID: "mtr_1", DisplayName: "API", EventName: "api",
			Formula: "sum", CustomerKey: "c", ValueKey: "v", EventTimeWindow: "hour"}},
		{Kind: KindMeterName, Stamp: 5, Meter: Meter{ID: "mtr_1", DisplayName: "B"}},
		{Kind: KindMeterStatus, Stamp: 5, Meter: Meter{ID: "mtr_1", Inactive: true}},
		{Kind: KindKV, Stamp: 5, KV: []KV{{NS: "idem", Key: "k", Value: []byte("v"), Expires: 99}, {NS: "idem", Key: "j", Delete: true}}},
		{Kind: KindClaim, Stamp: 5, KV: []KV{{NS: "idem", Key: "k", Value: []byte{}, Expires: 99}}},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, r := range samples() {
		b := Append([]byte("prefix"), r)
		got, err := Decode(b[len("prefix"):])
		if err != nil {
			t.Fatalf("%s: %v", r.Kind, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("%s: decoded\n%+v\nwant\n%+v", r.Kind, got, r)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	b := Append(nil, samples()[0])
	for i := range b {
		bad := append([]byte(nil), b...)
		bad[i] ^= 0x10
		if _, err := Decode(bad); err == nil {
			t.Errorf("flipped bit in byte %d decoded", i)
		} else if i == 0 && !errors.Is(err, ErrVersion) || i > 0 && !errors.Is(err, ErrCorrupt) {
			t.Errorf("flipped byte %d: %v", i, err)
		}
	}
	for n := range len(b) {
		if _, err := Decode(b[:n]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("record cut to %d bytes: %v", n, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, r := range samples() {
		f.Add(Append(nil, r))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Decode(Append(nil, r))
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("re-encoding of a decoded record: %v\n%+v\n%+v", err, r, again)
		}
	})
}
