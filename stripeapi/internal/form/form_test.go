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
		// A Tree that decoded another form before decodes raw alike.
		var tree Tree
		used := 0
		if err := Decode(tree.Root(), treeWarmup, &used, 200); err != nil {
			t.Fatal(err)
		}
		tree.Reset()
		used = 0
		errTree := Decode(tree.Root(), raw, &used, 200)
		if (err == nil) != (errTree == nil) || err == nil && !bytes.Equal(root.Canonical(), tree.Root().Canonical()) {
			t.Fatalf("%q: decoded %s (%v), into a reused tree %s (%v)", raw, root.Canonical(), err, tree.Root().Canonical(), errTree)
		}
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

// treeWarmup is a form of every kind of node: what a reused Tree held
// before.
const treeWarmup = "a[b][c]=1&a[d]=2&e=3&e=4&f[]=5&f[]=6&payload[x]=y&expand[0]=z"

// A Tree decodes each form as a new root would, whatever it held before.
func TestTreeReuse(t *testing.T) {
	forms := []string{
		treeWarmup,
		"event_name=api&identifier=id-1&payload%5Bstripe_customer_id%5D=cus_1&payload%5Bvalue%5D=25&timestamp=1700000000",
		"a=1&a=2&a[]=3",
		"a[b]=x",
		"e[]=1&payload=plain",
		"",
		"f=1&f=2&f=3",
		treeWarmup,
	}
	var tree Tree
	for round := range 3 {
		for _, raw := range forms {
			n := 0
			fresh := NewRoot()
			if err := Decode(fresh, raw, &n, 100); err != nil {
				t.Fatal(err)
			}
			n = 0
			if err := Decode(tree.Root(), raw, &n, 100); err != nil {
				t.Fatal(err)
			}
			if a, b := fresh.Canonical(), tree.Root().Canonical(); !bytes.Equal(a, b) {
				t.Fatalf("round %d, %q: a reused tree decoded %s, a new root %s", round, raw, b, a)
			}
			tree.Reset()
			if got := string(tree.Root().Canonical()); got != "{}" {
				t.Fatalf("after Reset: %s", got)
			}
		}
	}
	if tree.Nodes() > 12 {
		t.Errorf("%d nodes kept for forms of at most 12", tree.Nodes())
	}
}

// Decoding a meter event's form into a reused Tree allocates only the
// unescaped bracket keys.
func TestTreeAllocs(t *testing.T) {
	const raw = "event_name=api&identifier=id-1&payload%5Bstripe_customer_id%5D=cus_1&payload%5Bvalue%5D=25&timestamp=1700000000"
	var tree Tree
	allocs := testing.AllocsPerRun(100, func() {
		n := 0
		if err := Decode(tree.Root(), raw, &n, 100); err != nil {
			t.Fatal(err)
		}
		tree.Reset()
	})
	if allocs > 2 {
		t.Errorf("%.1f allocations per decoding, want at most 2 (the two unescaped keys)", allocs)
	}
}
