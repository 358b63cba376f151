package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
)

// writeHTML writes a self-contained report: inline CSS and SVG, no
// scripts, no external fonts or images. The markup is well-formed XML.
func (rep *Report) writeHTML(w io.Writer) error {
	var b strings.Builder
	esc := html.EscapeString
	b.WriteString(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"/><title>meterdb bench</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:72em}
table{border-collapse:collapse;margin:1em 0}td,th{padding:2px 10px;border-bottom:1px solid #ddd;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}.fail{color:#b00;font-weight:bold}.muted{color:#777}
svg{background:#fff;border:1px solid #ddd;margin:.5em 0}svg text{font:11px system-ui,sans-serif}
</style></head><body>
`)
	fmt.Fprintf(&b, "<h1>meterdb bench</h1>\n<p>%s · %s · %s · %d CPUs (GOMAXPROCS %d) · load %s · wall %.1fs</p>\n",
		esc(rep.Date), esc(rep.GoVersion), esc(rep.CPU), rep.NumCPU, rep.GOMAXPROCS, esc(rep.LoadAvg), rep.WallSeconds)
	c := rep.Config
	fmt.Fprintf(&b, "<p>Workload: %d customers (Zipf %.2f), %d meters (%s), seed %d, timestamps over the %s before %s, %d-character identifiers; dataset %d events; ingest api %s: building one event costs %.0f ns of CPU, included in every ingest figure.</p>\n",
		c.Customers, c.Skew, c.Meters, esc(strings.Join(c.Formulas, ",")), c.Seed, esc(c.Span), esc(c.Anchor), c.IDLen, c.DatasetSize, esc(c.API), rep.GenNsPerEvent)
	if rep.Failed != "" {
		fmt.Fprintf(&b, "<p class=\"fail\">VERIFICATION FAILED: %s</p>\n", esc(rep.Failed))
	} else {
		b.WriteString("<p>Every figure was verified against the workload's expected totals before it was reported.</p>\n")
	}
	for _, sc := range c.Scenarios {
		var rows []Result
		for _, r := range rep.Results {
			if r.Scenario == sc {
				rows = append(rows, r)
			}
		}
		if len(rows) == 0 && (sc != "soak" || rep.Soak == nil) {
			continue
		}
		fmt.Fprintf(&b, "<h2>%s</h2>\n<p>%s</p>\n", esc(sc), esc(scenarioTable[sc].doc))
		switch sc {
		case "memory":
			b.WriteString(memoryTable(rows))
			b.WriteString(barChart("heap bytes per event (all state)", rows, "heap B/event"))
		case "query":
			b.WriteString(throughputTable(rows))
			b.WriteString(latencyChart("summary latency percentiles (log scale)", rows))
		case "soak":
			b.WriteString(throughputTable(rows))
			b.WriteString(latencyChart("request latency percentiles by kind (log scale)", rows))
			if rep.Soak != nil {
				b.WriteString(rep.Soak.soakHTML())
			}
		default:
			b.WriteString(throughputTable(rows))
			b.WriteString(workersChart("throughput against workers", rows))
			b.WriteString(latencyChart("call latency percentiles (log scale)", rows))
		}
	}
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func throughputTable(rows []Result) string {
	var b strings.Builder
	b.WriteString(`<table><tr><th class="l">target</th><th class="l">cell</th><th>events</th><th>events/s</th><th>calls/s</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>verified series</th><th class="l">vs baseline</th></tr>` + "\n")
	for _, r := range rows {
		fmt.Fprintf(&b, `<tr><td class="l">%s</td><td class="l">%s</td>`, html.EscapeString(r.Target), html.EscapeString(r.Cell))
		if r.Skipped != "" {
			fmt.Fprintf(&b, `<td class="l muted" colspan="9">skipped: %s</td></tr>`+"\n", html.EscapeString(r.Skipped))
			continue
		}
		ev, eps := "-", "-"
		if r.Events > 0 {
			ev, eps = human(float64(r.Events)), human(r.EventsPerSec)
		}
		p := [4]string{"-", "-", "-", "-"}
		if l := r.Latency; l != nil {
			p = [4]string{fmtNs(l.P50), fmtNs(l.P90), fmtNs(l.P99), fmtNs(l.P999)}
		}
		fmt.Fprintf(&b, "<td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td><td class=\"l\">%s</td></tr>\n",
			ev, eps, human(r.OpsPerSec), p[0], p[1], p[2], p[3], r.Verified, html.EscapeString(fmtRatio(r)))
	}
	b.WriteString("</table>\n")
	return b.String()
}

func memoryTable(rows []Result) string {
	var b strings.Builder
	keys := memoryColumns
	b.WriteString(`<table><tr><th class="l">target</th><th class="l">cell</th>`)
	for _, k := range keys {
		fmt.Fprintf(&b, "<th>%s</th>", html.EscapeString(k))
	}
	b.WriteString(`<th class="l">vs baseline</th></tr>` + "\n")
	for _, r := range rows {
		fmt.Fprintf(&b, `<tr><td class="l">%s</td><td class="l">%s</td>`, html.EscapeString(r.Target), html.EscapeString(r.Cell))
		if r.Skipped != "" {
			fmt.Fprintf(&b, `<td class="l muted" colspan="%d">skipped: %s</td></tr>`+"\n", len(keys)+1, html.EscapeString(r.Skipped))
			continue
		}
		for _, k := range keys {
			if v, ok := r.Metrics[k]; ok {
				fmt.Fprintf(&b, "<td>%.1f</td>", v)
			} else {
				b.WriteString("<td>-</td>")
			}
		}
		fmt.Fprintf(&b, "<td class=\"l\">%s</td></tr>\n", html.EscapeString(fmtRatio(r)))
	}
	b.WriteString("</table>\n")
	return b.String()
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

// niceMax rounds v up to 1, 2 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// workersChart draws events/s against workers, one line per target and
// batch size.
func workersChart(title string, rows []Result) string {
	type pt struct {
		x int
		y float64
	}
	lines := map[string][]pt{}
	var xs []int
	ymax := 0.0
	for _, r := range rows {
		if r.Skipped != "" || r.EventsPerSec == 0 {
			continue
		}
		k := fmt.Sprintf("%s batch=%d", r.Target, r.Batch)
		lines[k] = append(lines[k], pt{r.Workers, r.EventsPerSec})
		if !slices.Contains(xs, r.Workers) {
			xs = append(xs, r.Workers)
		}
		ymax = max(ymax, r.EventsPerSec)
	}
	if len(lines) == 0 {
		return ""
	}
	sort.Ints(xs)
	names := make([]string, 0, len(lines))
	for k := range lines {
		names = append(names, k)
	}
	sort.Strings(names)
	const W, H, L, R, T, B = 760, 340, 70, 200, 30, 40
	ymax = niceMax(ymax)
	xpos := func(x int) float64 {
		i := slices.Index(xs, x)
		if len(xs) == 1 {
			return L + (W-L-R)/2
		}
		return L + float64(i)*float64(W-L-R)/float64(len(xs)-1)
	}
	ypos := func(y float64) float64 { return T + (H-T-B)*(1-y/ymax) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">`, W, H, W, H)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-weight="bold">%s</text>`, L, html.EscapeString(title))
	for i := 0; i <= 5; i++ {
		y := ymax * float64(i) / 5
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>`, L, W-R, ypos(y), ypos(y))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s/s</text>`, L-6, ypos(y)+4, human(y))
	}
	for _, x := range xs {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`, xpos(x), H-B+16, x)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">workers</text>`, (L+W-R)/2, H-6)
	for i, name := range names {
		col := palette[i%len(palette)]
		pts := lines[name]
		sort.Slice(pts, func(a, b int) bool { return pts[a].x < pts[b].x })
		var path []string
		for _, p := range pts {
			path = append(path, fmt.Sprintf("%.1f,%.1f", xpos(p.x), ypos(p.y)))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`, xpos(p.x), ypos(p.y), col)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, col, strings.Join(path, " "))
		ly := T + 16*i
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>`,
			W-R+12, ly, col, W-R+26, ly+9, html.EscapeString(name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// latencyChart draws p50, p90, p99 and p99.9 of every row as horizontal
// bars on a log scale.
func latencyChart(title string, rows []Result) string {
	var rs []Result
	lo, hi := math.Inf(1), 0.0
	for _, r := range rows {
		if r.Skipped == "" && r.Latency != nil {
			rs = append(rs, r)
			lo = min(lo, float64(max(r.Latency.P50, 1)))
			hi = max(hi, float64(r.Latency.P999))
		}
	}
	if len(rs) == 0 {
		return ""
	}
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(max(hi, lo*10))))
	const W, L, R, T, rowH, barH = 760, 250, 20, 30, 34, 7
	H := T + rowH*len(rs) + 40
	xpos := func(ns float64) float64 {
		return L + (W-L-R)*(math.Log10(max(ns, lo))-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">`, W, H, W, H)
	fmt.Fprintf(&b, `<text x="10" y="18" font-weight="bold">%s</text>`, html.EscapeString(title))
	for d := lo; d <= hi*1.001; d *= 10 {
		x := xpos(d)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#eee"/><text x="%.1f" y="%d" text-anchor="middle">%s</text>`,
			x, x, T, H-30, x, H-14, fmtNs(int64(d)))
	}
	names := []string{"p50", "p90", "p99", "p99.9"}
	for i, r := range rs {
		y := T + rowH*i
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s %s</text>`, L-6, y+18, html.EscapeString(r.Target), html.EscapeString(r.Cell))
		for j, v := range []int64{r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.P999} {
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>%s %s</title></rect>`,
				L, y+2+j*barH, max(1, xpos(float64(v))-L), barH-1, palette[j], names[j], fmtNs(v))
		}
	}
	for j, n := range names {
		fmt.Fprintf(&b, `<rect x="%d" y="6" width="10" height="10" fill="%s"/><text x="%d" y="15">%s</text>`, W-260+j*60, palette[j], W-246+j*60, n)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// barChart draws one metric of every row as horizontal bars.
func barChart(title string, rows []Result, metric string) string {
	var rs []Result
	hi := 0.0
	for _, r := range rows {
		if v, ok := r.Metrics[metric]; ok && r.Skipped == "" {
			rs = append(rs, r)
			hi = max(hi, v)
		}
	}
	if len(rs) == 0 {
		return ""
	}
	hi = niceMax(hi)
	const W, L, R, T, rowH = 760, 200, 80, 30, 22
	H := T + rowH*len(rs) + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">`, W, H, W, H)
	fmt.Fprintf(&b, `<text x="10" y="18" font-weight="bold">%s</text>`, html.EscapeString(title))
	for i, r := range rs {
		v := r.Metrics[metric]
		y := T + rowH*i
		wd := (W - L - R) * v / hi
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text><rect x="%d" y="%d" width="%.1f" height="14" fill="%s"/><text x="%.1f" y="%d">%.0f</text>`,
			L-6, y+11, html.EscapeString(r.Target), L, y, max(1, wd), palette[i%len(palette)], float64(L)+wd+4, y+11, v)
	}
	b.WriteString("</svg>\n")
	return b.String()
}
