package aggregate_test

import (
	"math"
	"math/big"
	"testing"

	"pgregory.net/rapid"

	"github.com/meterdb/meterdb/aggregate"
)

var two128 = new(big.Int).Lsh(big.NewInt(1), 128)

// wrap reduces b to the signed 128-bit range, as two's complement does.
func wrap(b *big.Int) *big.Int {
	r := new(big.Int).Mod(b, two128)
	if r.Bit(127) == 1 {
		r.Sub(r, two128)
	}
	return r
}

func genInt128() *rapid.Generator[aggregate.Int128] {
	edges := []uint64{0, 1, 2, math.MaxInt64, math.MaxInt64 + 1, math.MaxUint64, math.MaxUint64 - 1, 1 << 53, 1<<53 + 1}
	word := rapid.OneOf(rapid.Uint64(), rapid.SampledFrom(edges))
	return rapid.Custom(func(t *rapid.T) aggregate.Int128 {
		if rapid.Bool().Draw(t, "small") {
			return aggregate.Int128Of(rapid.Int64().Draw(t, "v"))
		}
		return aggregate.Int128{Hi: int64(word.Draw(t, "hi")), Lo: word.Draw(t, "lo")}
	})
}

func TestInt128(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		x := genInt128().Draw(t, "x")
		y := genInt128().Draw(t, "y")
		bx, by := x.Big(), y.Big()
		if bx.Cmp(wrap(bx)) != 0 {
			t.Fatalf("Big(%+v) = %s is out of range", x, bx)
		}
		if got, want := x.Add(y).Big(), wrap(new(big.Int).Add(bx, by)); got.Cmp(want) != 0 {
			t.Fatalf("%s + %s = %s, want %s", bx, by, got, want)
		}
		if got, want := x.Neg().Big(), wrap(new(big.Int).Neg(bx)); got.Cmp(want) != 0 {
			t.Fatalf("-%s = %s, want %s", bx, got, want)
		}
		if x.String() != bx.String() {
			t.Fatalf("String %s, want %s", x.String(), bx)
		}
		v, ok := x.Int64()
		if ok != bx.IsInt64() || ok && v != bx.Int64() {
			t.Fatalf("Int64(%s) = %d, %v", bx, v, ok)
		}
		if ok && aggregate.Int128Of(v) != x {
			t.Fatalf("Int128Of(Int64(%+v)) = %+v", x, aggregate.Int128Of(v))
		}
		want, _ := new(big.Float).SetInt(bx).Float64()
		if got := x.Float64(); got != want {
			t.Fatalf("Float64(%s) = %v, want the nearest %v", bx, got, want)
		}
	})
}

func TestInt128Edges(t *testing.T) {
	maxI := aggregate.Int128{Hi: math.MaxInt64, Lo: math.MaxUint64}
	minI := aggregate.Int128{Hi: math.MinInt64}
	for _, tt := range []struct {
		x    aggregate.Int128
		want string
	}{
		{aggregate.Int128{}, "0"},
		{aggregate.Int128Of(-1), "-1"},
		{aggregate.Int128Of(math.MinInt64), "-9223372036854775808"},
		{aggregate.Int128Of(math.MaxInt64).Add(aggregate.Int128Of(1)), "9223372036854775808"},
		{aggregate.Int128Of(math.MinInt64).Add(aggregate.Int128Of(-1)), "-9223372036854775809"},
		{aggregate.Int128{Lo: math.MaxUint64}.Add(aggregate.Int128Of(1)), "18446744073709551616"},
		{aggregate.Int128{Hi: 1}.Add(aggregate.Int128Of(-1)), "18446744073709551615"},
		{maxI, "170141183460469231731687303715884105727"},
		{minI, "-170141183460469231731687303715884105728"},
		{maxI.Add(aggregate.Int128Of(1)), minI.String()},
		{minI.Neg(), minI.String()},
		{aggregate.Int128Of(5).Neg(), "-5"},
	} {
		if got := tt.x.String(); got != tt.want {
			t.Errorf("%+v: %s, want %s", tt.x, got, tt.want)
		}
	}
	// A sum of many large values stays exact past the int64 range.
	var s aggregate.Int128
	for range 20000 {
		s = s.Add(aggregate.Int128Of(999999999999999))
	}
	if s.String() != "19999999999999980000" {
		t.Errorf("sum %s", s)
	}
	if _, ok := s.Int64(); ok {
		t.Error("sum beyond int64 reported as fitting")
	}
	if s.Float64() != 19999999999999980000 {
		t.Errorf("Float64 %v", s.Float64())
	}
	for range 20000 {
		s = s.Add(aggregate.Int128Of(-999999999999999))
	}
	if s != (aggregate.Int128{}) {
		t.Errorf("back to %+v", s)
	}
}
