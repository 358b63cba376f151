package dashboard

import (
	"math/big"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
)

func TestAxisLabel(t *testing.T) {
	huge, _ := new(big.Int).SetString("10024176714486441", 10)
	for v, want := range map[*big.Int]string{
		big.NewInt(0): "0", big.NewInt(9999): "9999", big.NewInt(-9999): "-9999", big.NewInt(10000): "10k",
		big.NewInt(123456): "123k", big.NewInt(-2500000): "-2.5M", huge: "10P",
	} {
		if got := axisLabel(v); got != want {
			t.Errorf("axisLabel(%s) = %q, want %q", v, got, want)
		}
	}
}

// TestChartLayout: one bar per window, placed by its start, above the zero
// line for positive values and below it for negative ones.
func TestChartLayout(t *testing.T) {
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	ws := []meterdb.Summary{ // newest first, as the engine gives them
		{Start: start.Add(5 * time.Hour), End: start.Add(6 * time.Hour), Value: meterdb.Int128Of(-50), Count: 1},
		{Start: start.Add(2 * time.Hour), End: start.Add(3 * time.Hour), Value: meterdb.Int128Of(100), Count: 2},
		{Start: start, End: start.Add(time.Hour), Value: meterdb.Int128Of(0), Count: 1},
		{Start: start.Add(-time.Hour), End: start, Value: meterdb.Int128Of(7), Count: 1}, // outside: dropped
	}
	c := newChart("hourly", time.Hour, start, start.Add(10*time.Hour), ws)
	if len(c.Bars) != 3 {
		t.Fatalf("%d bars, want 3", len(c.Bars))
	}
	neg, pos, zero := c.Bars[0], c.Bars[1], c.Bars[2]
	if !(zero.X < pos.X && pos.X < neg.X) {
		t.Errorf("bars out of place: x %v %v %v", zero.X, pos.X, neg.X)
	}
	if pos.Y+pos.H > c.Zero+0.01 || !neg.Negative || neg.Y < c.Zero-0.01 || zero.H < 1 {
		t.Errorf("bars across the zero line: %+v %+v %+v, zero at %v", pos, neg, zero, c.Zero)
	}
	if pos.H <= 2*neg.H*0.9 {
		t.Errorf("100 is not twice as tall as -50: %v, %v", pos.H, neg.H)
	}
	if c.Max != "100" || c.Min != "-50" || pos.Value != "100" {
		t.Errorf("labels %q %q, value %q", c.Max, c.Min, pos.Value)
	}
}
