package dashboard

import (
	"math/big"
	"strconv"
	"time"

	"github.com/meterdb/meterdb"
)

// Chart geometry, in SVG user units.
const (
	chartWidth  = 720
	chartHeight = 160
	chartLeft   = 64 // room for the value labels
	chartBottom = 20 // room for the time labels
	chartTop    = 8
)

// chart is a bar chart of consecutive windows of one length: one bar per
// window with usage, placed by its start, so windows without usage leave
// gaps.
type chart struct {
	ID         string // "hourly" or "daily"
	Unit       string // "hour" or "day"
	Start, End time.Time
	Bars       []bar
	Ticks      []tick
	Max, Min   string // the value labels of the top and bottom of the axis
	Zero       float64
	Width      int
	Height     int
	Left       int
	PlotBottom float64
}

// bar is one chart point.
type bar struct {
	X, Y, W, H float64
	Start, End time.Time
	Value      string // exact decimal
	Count      int64
	Negative   bool
}

// tick is a time label under the chart.
type tick struct {
	X     float64
	Label string
}

// newChart lays out the windows ws (any order, each unit long, inside
// [start, end)) as bars.
func newChart(id string, unit time.Duration, start, end time.Time, ws []meterdb.Summary) chart {
	c := chart{ID: id, Unit: "hour", Start: start, End: end, Width: chartWidth, Height: chartHeight, Left: chartLeft}
	if unit == 24*time.Hour {
		c.Unit = "day"
	}
	slots := int(end.Sub(start) / unit)
	plotW := float64(chartWidth - chartLeft - 4)
	plotH := float64(chartHeight - chartTop - chartBottom)
	slotW := plotW / float64(max(slots, 1))
	// The axis spans min(0, values) to max(0, values), compared exactly.
	lo, hi := new(big.Int), new(big.Int)
	for _, w := range ws {
		v := w.Value.Big()
		if v.Cmp(hi) > 0 {
			hi = v
		}
		if v.Cmp(lo) < 0 {
			lo = v
		}
	}
	c.Max, c.Min = axisLabel(hi), axisLabel(lo)
	loF, _ := new(big.Float).SetInt(lo).Float64()
	hiF, _ := new(big.Float).SetInt(hi).Float64()
	span := hiF - loF
	if span == 0 {
		span = 1
	}
	yOf := func(v float64) float64 { return chartTop + (hiF-v)/span*plotH }
	c.Zero = yOf(0)
	c.PlotBottom = chartTop + plotH
	// Labels closer than a line to the zero label are left out.
	if c.Zero-chartTop < 14 {
		c.Max = ""
	}
	if c.PlotBottom-c.Zero < 14 {
		c.Min = ""
	}
	for _, w := range ws {
		i := int(w.Start.Sub(start) / unit)
		if i < 0 || i >= slots {
			continue
		}
		v := w.Value.Float64()
		y0, y1 := yOf(max(v, 0)), yOf(min(v, 0))
		h := y1 - y0
		if h < 1 { // a window with usage stays visible, even at zero
			h = 1
			if v >= 0 {
				y0 = y1 - 1
			}
		}
		c.Bars = append(c.Bars, bar{
			X: chartLeft + float64(i)*slotW + slotW*0.1, W: slotW * 0.8, Y: y0, H: h,
			Start: w.Start, End: w.End, Value: w.Value.String(), Count: w.Count, Negative: v < 0,
		})
	}
	// About six time labels.
	step := max(slots/6, 1)
	for i := 0; i < slots; i += step {
		t := start.Add(time.Duration(i) * unit)
		label := t.Format("Jan 2")
		if c.Unit == "hour" {
			label = t.Format("15:04")
			if t.Hour() == 0 {
				label = t.Format("Jan 2")
			}
		}
		c.Ticks = append(c.Ticks, tick{X: chartLeft + float64(i)*slotW, Label: label})
	}
	return c
}

// axisLabel formats an axis value: exactly below 10,000, else with three
// significant digits and a metric suffix. The bars carry the exact values.
func axisLabel(v *big.Int) string {
	if v.IsInt64() && v.Int64() > -10000 && v.Int64() < 10000 {
		return v.String()
	}
	f, _ := new(big.Float).SetInt(v).Float64()
	sign := ""
	if f < 0 {
		sign, f = "-", -f
	}
	i := 0
	for f >= 999.5 && i < len(metricSuffixes)-1 {
		f /= 1000
		i++
	}
	return sign + strconv.FormatFloat(f, 'g', 3, 64) + metricSuffixes[i]
}

var metricSuffixes = []string{"", "k", "M", "G", "T", "P", "E", "Z", "Y", "R", "Q"}

// fmtFloat formats an SVG coordinate.
func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) }
