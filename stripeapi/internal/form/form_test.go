package form

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/meterdb/meterdb/stripeapi/internal/wire"
)

func TestDecodeForm(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"", `{}`},
		{"a=1&&b=2&", `{"a":"1","b":"2"}`},
		{"a=1&a=2", `{"a":["1","2"]}`},
		{"a[]=1", `{"a":["1"]}`},
		{"a[]=1&a[]=2&a=3", `{"a":["1","2","3"]}`},
		{"a[0]=x&a[1]=y", `{"a":{"0":"x","1":"y"}}`},
		{"a[b][c]=1&a[b][d]=2&a[e]=3", `{"a":{"b":{"c":"1","d":"2"},"e":"3"}}`},
		{"p%5Bk%5D=v+w%21", `{"p":{"k":"v w!"}}`},
		{"a", `{"a":""}`},
		{"a=b=c", `{"a":"b=c"}`},
		{"a[b]=", `{"a":{"b":""}}`},
	} {
		root := NewRoot()
		n := 0
		if err := Decode(root, tc.raw, &n, 100); err != nil {
			t.Errorf("%q: %v", tc.raw, err)
			continue
		}
		if got := string(root.Canonical()); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.raw, got, tc.want)
		}
	}
	for _, raw := range []string{"%", "a=%g1", "]=1", "[a]=1", "a]=1", "a[b=1", "a[b]c=1", "a[[b]]=1", "a[][b]=1",
		"a=1&a[b]=2", "a[b]=1&a=2", "a[b]=1&a[]=2", "a[b][c]=1&a[b]=2", "a[1][2][3][4][5]=1", strings.Repeat("k", 501) + "=1"} {
		root := NewRoot()
		n := 0
		err := Decode(root, raw, &n, 100)
		var ae *wire.Error
		if !errors.As(err, &ae) || ae.Status != 400 {
			t.Errorf("%q: error %v, want a 400", raw, err)
		}
	}
	n := 0
	if err := Decode(NewRoot(), strings.Repeat("a=1&", 11), &n, 10); err == nil {
		t.Error("11 pairs accepted with a limit of 10")
	}
}

// FuzzV1Form checks that the v1 form decoder never panics, fails only with
// a 400 or 413 *wire.Error, and that what it decodes re-encodes to the same
// parameters.
func FuzzV1Form(f *testing.F) {
	for _, s := range []string{
		"", "a=1", "a=1&a=2", "expand[]=a&expand[]=b", "expand[0]=a&expand[1]=b",
		"default_aggregation[formula]=sum&display_name=x&event_name=y",
		"payload[stripe_customer_id]=cus_1&payload[value]=25&event_name=api&timestamp=1700000000",
		"cancel[identifier]=abc&type=cancel", "a[b][c][d][e]=1", "a=1&a[b]=2", "%zz", "a[=1", "a[]b=1", "+%2B=%26",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		root := NewRoot()
		n := 0
		err := Decode(root, raw, &n, 200)
		if err != nil {
			var ae *wire.Error
			if !errors.As(err, &ae) || ae.Status != 400 || ae.Message == "" {
				t.Fatalf("%q: error %v", raw, err)
			}
			return
		}
		enc := root.Encode()
		again := NewRoot()
		n = 0
		if err := Decode(again, enc, &n, 1<<20); err != nil {
			t.Fatalf("%q re-encoded as %q: %v", raw, enc, err)
		}
		if a, b := root.Canonical(), again.Canonical(); !bytes.Equal(a, b) {
			t.Fatalf("%q: decoded %s, after re-encoding as %q %s", raw, a, enc, b)
		}
		// Reading any parameter never panics, and done always decides.
		p := NewParams(root)
		for k := range root.hash {
			switch len(k) % 5 {
			case 0:
				p.Str(k, 10, true)
			case 1:
				p.Int(k, false)
			case 2:
				p.StrMap(k, true, 3, 5, 5)
			case 3:
				if h := p.Hash(k, false); h != nil {
					h.Str("x", 5, true)
				}
			default:
				p.Expand()
			}
		}
		_ = p.Done()
	})
}
