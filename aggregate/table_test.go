package aggregate_test

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/big"
	"regexp"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/meterdb/meterdb/aggregate"
)

const (
	minute = int64(60)
	hour   = int64(3600)
	day    = int64(86400)
)

// d0 is a UTC midnight.
const d0 = int64(1773100800) // 2026-03-10T00:00:00Z

func floorTo(t, unit int64) int64 {
	r := t % unit
	if r < 0 {
		r += unit
	}
	return t - r
}

// windows formats query results as "start+len=count/sum/last".
func windows(ws []aggregate.Window) string { return windowsLast(ws, true) }

// windowsLast is windows, leaving out Last unless withLast is set: a
// series whose meter does not use Last does not recompute it when an entry
// is cancelled.
func windowsLast(ws []aggregate.Window, withLast bool) string {
	var out []string
	for _, w := range ws {
		s := fmt.Sprintf("%d+%d=%d/%s", w.Start-d0, w.End-w.Start, w.Count, w.Sum)
		if w.Count > 0 && withLast {
			s += fmt.Sprintf("/%d", w.Last.Value)
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func query(t *testing.T, tb *aggregate.Table, k aggregate.Key, start, end int64, g aggregate.Grouping) string {
	t.Helper()
	ws, err := tb.Query(k, start, end, g)
	if err != nil {
		t.Fatalf("Query(%d, %d, %d): %v", start-d0, end-d0, g, err)
	}
	return windows(ws)
}

// lastPart matches the "/last" of a formatted window.
var lastPart = regexp.MustCompile(`(=-?\d+/-?\d+)/-?\d+`)

// forFormula returns s, formatted by windows, without the Last values
// unless formula is last: only last meters keep Last.
func forFormula(formula, want string) string {
	if formula == "last" {
		return want
	}
	return lastPart.ReplaceAllString(want, "$1")
}

// Ranges inside one hour, across hour and day boundaries, and windows that
// start or end exactly on an entry's minute, hour or day.
func TestQueryEdges(t *testing.T) {
	for _, formula := range []string{"sum", "last"} {
		t.Run(formula, func(t *testing.T) { testQueryEdges(t, formula) })
	}
}

func testQueryEdges(t *testing.T, formula string) {
	tb := aggregate.NewTable(4)
	k := aggregate.Key{Meter: 1, Customer: "c"}
	sum := aggregate.ModeOf(formula, "")
	var seq uint64
	add := func(ts, v int64) {
		seq++
		tb.Apply(k, sum, aggregate.Entry{Seq: seq, Timestamp: ts, Value: v})
	}
	add(d0, 1)                 // first second of the day
	add(d0+hour-1, 2)          // last second of the first hour
	add(d0+hour, 4)            // first second of the second hour
	add(d0+day-1, 8)           // last second of the day
	add(d0+day, 16)            // first second of the next day
	add(d0+day+30*minute, 32)  // 00:30 of the next day
	add(d0+day+30*minute, 64)  // same second
	add(d0+2*day+59, 128)      // 00:00:59 two days on
	add(d0-day+12*hour, -1000) // the day before
	for _, tt := range []struct {
		start, end int64
		g          aggregate.Grouping
		want       string
	}{
		// Inside one hour.
		{d0, d0 + minute, aggregate.Total, "0+60=1/1/1"},
		{d0 + minute, d0 + hour - minute, aggregate.Total, "60+3480=0/0"},
		{d0 + hour - minute, d0 + hour, aggregate.Total, "3540+60=1/2/2"},
		{d0 + 10*minute, d0 + 20*minute, aggregate.Total, "600+600=0/0"},
		// Exactly one hour, on and off the hour.
		{d0, d0 + hour, aggregate.Total, "0+3600=2/3/2"},
		{d0 + minute, d0 + hour + minute, aggregate.Total, "60+3600=2/6/4"},
		// Across the day boundary.
		{d0 + day - minute, d0 + day + minute, aggregate.Total, "86340+120=2/24/16"},
		{d0 + day - hour, d0 + day + hour, aggregate.Total, "82800+7200=4/120/64"},
		{d0 + 23*hour + 59*minute, d0 + day + 31*minute, aggregate.Total, "86340+1920=4/120/64"},
		{d0 + 12*hour, d0 + 2*day + 12*hour, aggregate.Total, "43200+172800=5/248/128"},
		// Whole days, and whole days with partial edges.
		{d0, d0 + day, aggregate.Total, "0+86400=4/15/8"},
		{d0 - day, d0 + 3*day, aggregate.Total, "-86400+345600=9/-745/128"},
		{d0 - day + 12*hour + minute, d0 + 2*day + minute, aggregate.Total, "-43140+216000=8/255/128"},
		{d0 + minute, d0 + 2*day, aggregate.Total, "60+172740=6/126/64"},
		// Groupings: newest first, empty windows omitted.
		{d0 - day, d0 + 3*day, aggregate.Daily, "172800+86400=1/128/128 86400+86400=3/112/64 0+86400=4/15/8 -86400+86400=1/-1000/-1000"},
		{d0 + day, d0 + 2*day, aggregate.Daily, "86400+86400=3/112/64"},
		{d0 + 2*day + day, d0 + 5*day, aggregate.Daily, ""},
		{d0, d0 + 2*hour, aggregate.Hourly, "3600+3600=1/4/4 0+3600=2/3/2"},
		{d0 + 23*hour, d0 + day + hour, aggregate.Hourly, "86400+3600=3/112/64 82800+3600=1/8/8"},
		{d0 + hour, d0 + 2*hour, aggregate.Hourly, "3600+3600=1/4/4"},
		{d0 + 2*hour, d0 + 23*hour, aggregate.Hourly, ""},
	} {
		if got, want := forFormula(formula, query(t, tb, k, tt.start, tt.end, tt.g)), forFormula(formula, tt.want); got != want {
			t.Errorf("Query [%d, %d) grouping %d = %s, want %s", tt.start-d0, tt.end-d0, tt.g, got, want)
		}
	}
	// Another series and another customer see nothing.
	for _, o := range []aggregate.Key{{Meter: 2, Customer: "c"}, {Meter: 1, Customer: "d"}} {
		if got := query(t, tb, o, d0-day, d0+3*day, aggregate.Total); got != "-86400+345600=0/0" {
			t.Errorf("other series %+v: %s", o, got)
		}
		if got := query(t, tb, o, d0-day, d0+3*day, aggregate.Daily); got != "" {
			t.Errorf("other series %+v by day: %s", o, got)
		}
	}
}

func TestQueryErrors(t *testing.T) {
	tb := aggregate.NewTable(1)
	k := aggregate.Key{Meter: 1, Customer: "c"}
	for _, tt := range []struct {
		start, end int64
		g          aggregate.Grouping
		unaligned  bool
	}{
		{d0 + 1, d0 + hour, aggregate.Total, true},
		{d0, d0 + hour + 30, aggregate.Total, true},
		{d0 + minute, d0 + hour, aggregate.Hourly, true},
		{d0, d0 + hour + minute, aggregate.Hourly, true},
		{d0 + hour, d0 + day, aggregate.Daily, true},
		{d0, d0 + day + hour, aggregate.Daily, true},
		{d0, d0, aggregate.Total, false},
		{d0 + hour, d0, aggregate.Hourly, false},
	} {
		_, err := tb.Query(k, tt.start, tt.end, tt.g)
		if err == nil || errors.Is(err, aggregate.ErrUnaligned) != tt.unaligned {
			t.Errorf("Query [%d, %d) grouping %d: %v", tt.start-d0, tt.end-d0, tt.g, err)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("unknown grouping did not panic")
		}
	}()
	tb.Query(k, d0, d0+day, aggregate.Grouping(7))
}

// Last: greatest timestamp, then greatest sequence; cancelling recomputes
// it at every level.
func TestLastAndCancel(t *testing.T) {
	tb := aggregate.NewTable(2)
	k := aggregate.Key{Meter: 1, Customer: "c"}
	last := aggregate.ModeOf("last", "")
	es := []aggregate.Entry{
		{Seq: 1, Timestamp: d0 + 10, Value: 1},
		{Seq: 2, Timestamp: d0 + 10, Value: 2}, // same second, later: newest
		{Seq: 3, Timestamp: d0 + 5, Value: 3},  // older timestamp, later receipt
		{Seq: 4, Timestamp: d0 + 2*hour, Value: 4},
		{Seq: 5, Timestamp: d0 + 2*hour, Value: 5},
	}
	for _, e := range es {
		tb.Apply(k, last, e)
	}
	steps := []struct {
		cancel   int // index into es, -1 for none
		minute   string
		hourly   string
		totalDay string
	}{
		{-1, "0+60=3/6/2", "7200+3600=2/9/5 0+3600=3/6/2", "0+86400=5/15/5"},
		{4, "0+60=3/6/2", "7200+3600=1/4/4 0+3600=3/6/2", "0+86400=4/10/4"},
		{1, "0+60=2/4/1", "7200+3600=1/4/4 0+3600=2/4/1", "0+86400=3/8/4"},
		{3, "0+60=2/4/1", "0+3600=2/4/1", "0+86400=2/4/1"},
		{0, "0+60=1/3/3", "0+3600=1/3/3", "0+86400=1/3/3"},
		{2, "0+60=0/0", "", "0+86400=0/0"},
	}
	for _, st := range steps {
		if st.cancel >= 0 && !tb.Cancel(k, last, es[st.cancel]) {
			t.Fatalf("Cancel(%+v) = false", es[st.cancel])
		}
		got := []string{query(t, tb, k, d0, d0+minute, aggregate.Total), query(t, tb, k, d0, d0+day, aggregate.Hourly),
			query(t, tb, k, d0, d0+day, aggregate.Total)}
		if want := []string{st.minute, st.hourly, st.totalDay}; !slices.Equal(got, want) {
			t.Errorf("after cancelling %d: %q, want %q", st.cancel, got, want)
		}
	}
	if s := tb.Stats(); s != (aggregate.Stats{}) {
		t.Errorf("stats after cancelling everything: %+v", s)
	}
	if tb.Cancel(k, last, es[0]) || tb.Cancel(aggregate.Key{Meter: 9, Customer: "x"}, last, es[0]) {
		t.Error("Cancel of an absent entry reported true")
	}
	tb.Apply(k, last, es[0])
	if tb.Cancel(k, last, aggregate.Entry{Seq: 99, Timestamp: es[0].Timestamp, Value: 1}) {
		t.Error("Cancel of an unknown sequence reported true")
	}
}

// Pre-aggregation: one winner per window; cancelling the winner promotes
// the next newest.
func TestEventTimeWindow(t *testing.T) {
	for _, tt := range []struct {
		formula, window string
		unit            int64
	}{{"sum", "hour", hour}, {"sum", "day", day}, {"last", "hour", hour}, {"last", "day", day}} {
		t.Run(tt.formula+"/"+tt.window, func(t *testing.T) {
			tb := aggregate.NewTable(1)
			k := aggregate.Key{Meter: 1, Customer: "c"}
			m := aggregate.ModeOf(tt.formula, tt.window)
			w := d0 + 3*hour
			es := []aggregate.Entry{
				{Seq: 1, Timestamp: w + 40*minute, Value: 1},
				{Seq: 2, Timestamp: w + 10*minute, Value: 2},
				{Seq: 3, Timestamp: w + 40*minute, Value: 4}, // winner: same second as 1, later
				{Seq: 4, Timestamp: w - 1, Value: 8},         // previous hour; same day
			}
			for _, e := range es {
				tb.Apply(k, m, e)
			}
			f := func(s string) string { return forFormula(tt.formula, s) }
			query := func(t *testing.T, tb *aggregate.Table, k aggregate.Key, start, end int64, g aggregate.Grouping) string {
				t.Helper()
				return f(query(t, tb, k, start, end, g))
			}
			total := func() string { return query(t, tb, k, d0, d0+day, aggregate.Total) }
			if tt.unit == hour {
				if got := total(); got != f("0+86400=2/12/4") {
					t.Errorf("total %s", got)
				}
			} else if got := total(); got != f("0+86400=1/4/4") {
				t.Errorf("total %s", got)
			}
			// The winner's minute holds it; the losers' minutes hold nothing.
			if got := query(t, tb, k, w+10*minute, w+11*minute, aggregate.Total); got != "11400+60=0/0" {
				t.Errorf("loser's minute: %s", got)
			}
			tb.Cancel(k, m, es[2])
			if got := query(t, tb, k, w+40*minute, w+41*minute, aggregate.Total); got != f("13200+60=1/1/1") {
				t.Errorf("after cancelling the winner: %s", got)
			}
			tb.Cancel(k, m, es[1]) // a loser
			tb.Cancel(k, m, es[0])
			want := "10800+3600=0/0"
			if tt.unit == day {
				want = "10800+3600=0/0" // entry 4 wins the day but sits in hour 2
			}
			if got := query(t, tb, k, w, w+hour, aggregate.Total); got != want {
				t.Errorf("after cancelling the window's entries: %s, want %s", got, want)
			}
			if got := query(t, tb, k, d0, d0+day, aggregate.Hourly); got != f("7200+3600=1/8/8") {
				t.Errorf("hourly: %s", got)
			}
			tb.Cancel(k, m, es[3])
			if s := tb.Stats(); s != (aggregate.Stats{}) {
				t.Errorf("stats after cancelling everything: %+v", s)
			}
		})
	}
}

// A property test: random entries of random modes, random cancellations,
// and every query compared with a pass over the live entries.
func TestTableModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		tb := aggregate.NewTable(rapid.SampledFrom([]int{1, 2, 8}).Draw(t, "shards"))
		formula := rapid.SampledFrom([]string{"count", "sum", "last"}).Draw(t, "formula")
		window := rapid.SampledFrom([]string{"", "hour", "day"}).Draw(t, "window")
		mode := aggregate.ModeOf(formula, window)
		keys := []aggregate.Key{{Meter: 1, Customer: "a"}, {Meter: 1, Customer: "b"}, {Meter: 2, Customer: "a"}}
		// Around the epoch too: floors of negative times.
		base := rapid.SampledFrom([]int64{d0, 0, -day}).Draw(t, "base")
		var entries []freezeEntry
		var seq uint64
		// Mostly the edges of an hour; sometimes any minute, so that an hour's
		// minute cells go through every array length.
		minuteGen := rapid.OneOf(rapid.SampledFrom([]int64{0, 1, 59}), rapid.SampledFrom([]int64{0, 1, 59}), rapid.Int64Range(0, 59))
		// Mostly four neighbouring days; sometimes a day about a series'
		// 64 recent days away, before or after, so that its chunks leave
		// and enter that span.
		dayGen := rapid.OneOf(rapid.Int64Range(-1, 2), rapid.Int64Range(-1, 2), rapid.Int64Range(-1, 2),
			rapid.SampledFrom([]int64{-130, -66, -65, -64, -63, -62, 61, 62, 63, 64, 65, 66, 130}))
		genTS := rapid.Custom(func(t *rapid.T) int64 {
			return base + dayGen.Draw(t, "day")*day + rapid.SampledFrom([]int64{0, 1, 23}).Draw(t, "hour")*hour +
				minuteGen.Draw(t, "minute")*minute + rapid.SampledFrom([]int64{0, 59}).Draw(t, "second")
		})
		// With dirty tracking on, a restore step rebuilds a table from the
		// records TakeDirty handed out so far and may carry on with it.
		tracked := rapid.Bool().Draw(t, "tracked")
		if tracked {
			tb.TrackDirty()
		}
		type recKey struct {
			k     aggregate.Key
			start int64
			day   bool
		}
		records := map[recKey][]byte{}
		genValue := func(t *rapid.T) int64 {
			if formula == "count" {
				return 1
			}
			// Now and then an extreme: sums leave the int64 range and come back.
			return rapid.OneOf(rapid.Int64Range(-999999999999999, 999999999999999), rapid.Int64Range(-999999999999999, 999999999999999),
				rapid.SampledFrom([]int64{math.MaxInt64, math.MinInt64})).Draw(t, "value")
		}
		t.Repeat(map[string]func(*rapid.T){
			"": func(t *rapid.T) {
				if err := aggregate.CheckRecent(tb); err != nil {
					t.Fatal(err)
				}
				if err := aggregate.CheckBuckets(tb); err != nil {
					t.Fatal(err)
				}
			},
			"apply": func(t *rapid.T) {
				// Up to 12: a shard's group of two or more is warmed first (warm.go).
				n := rapid.IntRange(1, 12).Draw(t, "n")
				items := make([]aggregate.Item, n)
				for i := range items {
					seq++
					items[i] = aggregate.Item{Key: rapid.SampledFrom(keys).Draw(t, "key"), Mode: mode,
						Entry: aggregate.Entry{Seq: seq, Timestamp: genTS.Draw(t, "ts"), Value: genValue(t)}}
					entries = append(entries, freezeEntry{items[i].Key, items[i].Entry})
				}
				tb.ApplyBatch(items)
			},
			// Many minutes of one hour: its minute cells grow through the
			// longer arrays, up to every minute of the hour.
			"dense": func(t *rapid.T) {
				k := rapid.SampledFrom(keys).Draw(t, "key")
				hs := floorTo(genTS.Draw(t, "hour_ts"), hour)
				items := make([]aggregate.Item, rapid.IntRange(1, 90).Draw(t, "n"))
				for i := range items {
					seq++
					items[i] = aggregate.Item{Key: k, Mode: mode,
						Entry: aggregate.Entry{Seq: seq, Timestamp: hs + rapid.Int64Range(0, hour-1).Draw(t, "offset"), Value: genValue(t)}}
					entries = append(entries, freezeEntry{k, items[i].Entry})
				}
				tb.ApplyBatch(items)
			},
			"restore": func(t *rapid.T) {
				if !tracked {
					t.Skip("no dirty tracking")
				}
				for _, d := range tb.TakeDirty() {
					records[recKey{d.Key, d.Start, d.Day}] = d.State
				}
				rks := slices.Collect(maps.Keys(records))
				slices.SortFunc(rks, func(a, b recKey) int {
					return cmp.Or(cmp.Compare(a.start, b.start), cmp.Compare(a.k.Meter, b.k.Meter), strings.Compare(a.k.Customer, b.k.Customer), cmp.Compare(b2i(a.day), b2i(b.day)))
				})
				nt := aggregate.NewTable(rapid.SampledFrom([]int{1, 2, 8}).Draw(t, "restore_shards"))
				for _, r := range rks {
					if st := records[r]; st != nil {
						if err := nt.Restore(r.k, mode, r.start, r.day, st); err != nil {
							t.Fatal(err)
						}
					}
				}
				if err := aggregate.CheckBuckets(nt); err != nil {
					t.Fatal(err)
				}
				got, want := nt.Stats(), tb.Stats()
				got.Bytes, want.Bytes = 0, 0 // extensions and arrays of minute cells may be smaller
				if got != want {
					t.Fatalf("restored stats %+v, want %+v", got, want)
				}
				for _, k := range keys {
					for _, g := range []aggregate.Grouping{aggregate.Total, aggregate.Hourly} {
						unit := map[aggregate.Grouping]int64{aggregate.Total: minute, aggregate.Hourly: hour}[g]
						start := floorTo(genTS.Draw(t, "start"), unit)
						end := start + rapid.Int64Range(1, 2*day/unit).Draw(t, "units")*unit
						ws, err := nt.Query(k, start, end, g)
						if err != nil {
							t.Fatal(err)
						}
						if got, want := windowsLast(ws, formula == "last"), expectWindows(entries, k, mode, formula, start, end, g); got != want {
							t.Fatalf("restored: Query(%+v, [%d, %d), %d) = %s\nwant %s", k, start-d0, end-d0, g, got, want)
						}
					}
				}
				if rapid.Bool().Draw(t, "carry_on") {
					nt.TrackDirty()
					tb = nt
				}
			},
			"cancel": func(t *rapid.T) {
				if len(entries) == 0 {
					t.Skip("empty")
				}
				i := rapid.IntRange(0, len(entries)-1).Draw(t, "i")
				if !tb.Cancel(entries[i].k, mode, entries[i].e) {
					t.Fatalf("Cancel(%+v) = false", entries[i])
				}
				entries = slices.Delete(entries, i, i+1)
			},
			"query": func(t *rapid.T) {
				k := rapid.SampledFrom(keys).Draw(t, "key")
				g := rapid.SampledFrom([]aggregate.Grouping{aggregate.Total, aggregate.Hourly, aggregate.Daily}).Draw(t, "grouping")
				unit := map[aggregate.Grouping]int64{aggregate.Total: minute, aggregate.Hourly: hour, aggregate.Daily: day}[g]
				start := floorTo(genTS.Draw(t, "start"), unit) + rapid.Int64Range(-2, 2).Draw(t, "shift")*unit
				end := start + rapid.Int64Range(1, 4*day/unit).Draw(t, "units")*unit
				ws, err := tb.Query(k, start, end, g)
				if err != nil {
					t.Fatal(err)
				}
				// Brute force over the live entries.
				want := expectWindows(entries, k, mode, formula, start, end, g)
				if got := windowsLast(ws, formula == "last"); got != want {
					t.Fatalf("Query(%+v, [%d, %d), %d) = %s\nwant %s", k, start-d0, end-d0, g, got, want)
				}
			},
		})
		for _, l := range entries {
			if !tb.Cancel(l.k, mode, l.e) {
				t.Fatalf("final Cancel(%+v) = false", l)
			}
		}
		if s := tb.Stats(); s != (aggregate.Stats{}) {
			t.Fatalf("stats after cancelling everything: %+v", s)
		}
	})
}

func TestNewTable(t *testing.T) {
	for _, n := range []int{1, 2, 64} {
		if got := aggregate.NewTable(n).Shards(); got != n {
			t.Errorf("NewTable(%d).Shards() = %d", n, got)
		}
	}
	for _, n := range []int{0, 3, -2} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewTable(%d) did not panic", n)
				}
			}()
			aggregate.NewTable(n)
		}()
	}
}

func TestModeOf(t *testing.T) {
	for _, tt := range []struct {
		formula, window string
		want            aggregate.Mode
	}{
		{"sum", "", aggregate.Mode{}},
		{"count", "hour", aggregate.Mode{Window: hour}},
		{"last", "", aggregate.Mode{Last: true}},
		{"last", "day", aggregate.Mode{Last: true, Window: day}},
	} {
		if got := aggregate.ModeOf(tt.formula, tt.window); got != tt.want {
			t.Errorf("ModeOf(%q, %q) = %+v", tt.formula, tt.window, got)
		}
	}
}

func TestCellValue(t *testing.T) {
	c := aggregate.Cell{Count: 3, Sum: aggregate.Int128Of(-7), Last: aggregate.Entry{Value: 11}}
	for f, want := range map[string]string{"count": "3", "sum": "-7", "last": "11"} {
		if got := c.Value(f).String(); got != want {
			t.Errorf("Value(%q) = %s, want %s", f, got, want)
		}
	}
}

// Hour sums beyond the int64 range, both signs: the hour keeps the high
// half aside, gives it up when the sum fits again, and a checkpoint
// carries it.
func TestHourSumBeyondInt64(t *testing.T) {
	const big15 = 999_999_999_999_999
	for _, sign := range []int64{1, -1} {
		tb := aggregate.NewTable(1)
		tb.TrackDirty()
		k := aggregate.Key{Meter: 1, Customer: "c"}
		m := aggregate.ModeOf("sum", "")
		var es []aggregate.Entry
		want := new(big.Int)
		for i := range 10_000 {
			e := aggregate.Entry{Seq: uint64(i + 1), Timestamp: d0 + int64(i%2)*minute, Value: sign * big15}
			tb.Apply(k, m, e)
			es = append(es, e)
			want.Add(want, big.NewInt(e.Value))
		}
		check := func(tb *aggregate.Table, what string) {
			t.Helper()
			for _, g := range []aggregate.Grouping{aggregate.Total, aggregate.Hourly, aggregate.Daily} {
				ws, err := tb.Query(k, d0, d0+day, g)
				if err != nil || len(ws) != 1 || ws[0].Sum.Big().Cmp(want) != 0 {
					t.Fatalf("sign %d, %s, grouping %d: %+v, %v; want sum %s", sign, what, g, ws, err, want)
				}
			}
			ws, _ := tb.Query(k, d0+minute, d0+2*minute, aggregate.Total) // one minute cell
			half := new(big.Int).Mul(big.NewInt(sign*big15), big.NewInt(int64(len(es)-len(es)/2)))
			if len(es) > 1 && ws[0].Sum.Big().Cmp(new(big.Int).Sub(want, half)) != 0 {
				t.Fatalf("sign %d, %s: minute sum %s", sign, what, ws[0].Sum)
			}
		}
		if want.IsInt64() {
			t.Fatalf("the sum %s fits in int64: the test proves nothing", want)
		}
		check(tb, "applied")

		// A checkpoint restores the same sums.
		restored := aggregate.NewTable(1)
		for _, d := range tb.TakeDirty() {
			if d.State == nil { // nothing to keep: day buckets of this meter
				continue
			}
			if err := restored.Restore(d.Key, m, d.Start, d.Day, d.State); err != nil {
				t.Fatal(err)
			}
		}
		check(restored, "restored")

		// Cancelling back into the int64 range.
		for len(es) > 100 {
			e := es[len(es)-1]
			es = es[:len(es)-1]
			if !tb.Cancel(k, m, e) {
				t.Fatalf("Cancel(%+v) = false", e)
			}
			want.Sub(want, big.NewInt(e.Value))
		}
		check(tb, "cancelled")
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
