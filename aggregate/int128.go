package aggregate

import (
	"cmp"
	"math/big"
	"math/bits"
)

// Int128 is a signed 128-bit integer, the type of sums. Values have at most
// 15 digits, so a sum would need more than 10^23 events to leave its range:
// sums are exact.
type Int128 struct {
	Hi int64
	Lo uint64
}

// Int128Of returns v as an Int128.
func Int128Of(v int64) Int128 { return Int128{Hi: v >> 63, Lo: uint64(v)} }

// Add returns x+y.
func (x Int128) Add(y Int128) Int128 {
	lo, carry := bits.Add64(x.Lo, y.Lo, 0)
	return Int128{Hi: x.Hi + y.Hi + int64(carry), Lo: lo}
}

// Neg returns -x.
func (x Int128) Neg() Int128 {
	lo, borrow := bits.Sub64(0, x.Lo, 0)
	return Int128{Hi: -x.Hi - int64(borrow), Lo: lo}
}

// Int64 returns x as an int64 and whether it fits.
func (x Int128) Int64() (int64, bool) {
	v := int64(x.Lo)
	return v, x.Hi == v>>63
}

// Float64 returns the float64 nearest to x (ties to even). Beyond the
// int64 range it converts through big.Float: converting the two halves
// separately would round twice.
func (x Int128) Float64() float64 {
	if v, ok := x.Int64(); ok {
		return float64(v)
	}
	f, _ := new(big.Float).SetInt(x.Big()).Float64()
	return f
}

// Big returns x as a new big.Int.
func (x Int128) Big() *big.Int {
	b := new(big.Int).SetInt64(x.Hi)
	b.Lsh(b, 64)
	return b.Add(b, new(big.Int).SetUint64(x.Lo))
}

// String returns x in decimal.
func (x Int128) String() string {
	if v, ok := x.Int64(); ok {
		return big.NewInt(v).String()
	}
	return x.Big().String()
}

// Cmp returns -1, 0 or +1 as x is less than, equal to or greater than y.
func (x Int128) Cmp(y Int128) int {
	switch {
	case x.Hi != y.Hi:
		return cmp.Compare(x.Hi, y.Hi)
	default:
		return cmp.Compare(x.Lo, y.Lo)
	}
}
