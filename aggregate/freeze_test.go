package aggregate_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"pgregory.net/rapid"

	"github.com/meterdb/meterdb/aggregate"
)

// freezeEntry is one applied, uncancelled entry of a model.
type freezeEntry struct {
	k aggregate.Key
	e aggregate.Entry
}

// expectWindows computes what Query returns for k over [start, end) with
// grouping g from the entries, formatted as windowsLast formats them.
func expectWindows(entries []freezeEntry, k aggregate.Key, mode aggregate.Mode, formula string, start, end int64, g aggregate.Grouping) string {
	unit := map[aggregate.Grouping]int64{aggregate.Total: minute, aggregate.Hourly: hour, aggregate.Daily: day}[g]
	var in []aggregate.Entry
	winners := map[int64]aggregate.Entry{}
	for _, l := range entries {
		if l.k != k {
			continue
		}
		if mode.Window == 0 {
			in = append(in, l.e)
			continue
		}
		w := floorTo(l.e.Timestamp, mode.Window)
		if o, ok := winners[w]; !ok || l.e.Timestamp > o.Timestamp || l.e.Timestamp == o.Timestamp && l.e.Seq > o.Seq {
			winners[w] = l.e
		}
	}
	for _, e := range winners {
		in = append(in, e)
	}
	type acc struct {
		n    int64
		sum  *big.Int
		last aggregate.Entry
	}
	groups := map[int64]*acc{}
	if g == aggregate.Total {
		groups[start] = &acc{sum: new(big.Int)}
	}
	for _, e := range in {
		if e.Timestamp < start || e.Timestamp >= end {
			continue
		}
		w := start
		if g != aggregate.Total {
			w = floorTo(e.Timestamp, unit)
		}
		a := groups[w]
		if a == nil {
			a = &acc{sum: new(big.Int)}
			groups[w] = a
		}
		if a.n == 0 || e.Timestamp > a.last.Timestamp || e.Timestamp == a.last.Timestamp && e.Seq > a.last.Seq {
			a.last = e
		}
		a.n++
		a.sum.Add(a.sum, big.NewInt(e.Value))
	}
	var starts []int64
	for w := range groups {
		starts = append(starts, w)
	}
	slices.Sort(starts)
	var want []string
	for i := len(starts) - 1; i >= 0; i-- {
		w, a := starts[i], groups[starts[i]]
		wEnd := w + unit
		if g == aggregate.Total {
			wEnd = end
		}
		s := fmt.Sprintf("%d+%d=%d/%s", w-d0, wEnd-w, a.n, a.sum)
		if a.n > 0 && formula == "last" {
			s += fmt.Sprintf("/%d", a.last.Value)
		}
		want = append(want, s)
	}
	return strings.Join(want, " ")
}

// A property test of frozen history: entries applied and cancelled over a
// week, days frozen behind a horizon that moves forward (only after a
// checkpoint, TakeDirty, when the table reads frozen minute cells through
// a MinuteReader over the checkpointed records; at any time when the
// frozen days keep their own), and every query, per series and across
// customers, compared with a pass over the entries, for ranges that
// straddle the horizon and have minute-aligned edges inside frozen hours.
func TestFreezeModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		tb := aggregate.NewTable(rapid.SampledFrom([]int{1, 2, 8}).Draw(t, "shards"))
		formula := rapid.SampledFrom([]string{"count", "sum", "last"}).Draw(t, "formula")
		window := rapid.SampledFrom([]string{"", "", "hour", "day"}).Draw(t, "window")
		mode := aggregate.ModeOf(formula, window)
		// Frozen days keep their minute cells ("memory"), read them through
		// a MinuteReader ("reader"), or also keep complete blocks in a
		// store ("stored"): the days then spread over three block spans
		// (d0 lies 10 days into one), so that blocks complete.
		kind := rapid.SampledFrom([]string{"memory", "reader", "stored", "stored"}).Draw(t, "kind")
		reader, stored := kind != "memory", kind == "stored"
		dayOff := []int64{0, 1, 2, 3, 4, 5, 6}
		queryDays := int64(5)
		if stored {
			dayOff = []int64{0, 1, 21, 22, 23, 53, 54}
			queryDays = 60
		}
		// records is the checkpoint: what TakeDirty handed out, by key,
		// start and kind, as a store would keep it.
		type recKey struct {
			k     aggregate.Key
			start int64
			day   bool
		}
		records := map[recKey][]byte{}
		type blockKey struct {
			k    aggregate.Key
			span int64
		}
		blocks := map[blockKey][]byte{}
		var through int64 // what the stored blocks cover: records before it are not restored
		reads, blockReads := 0, 0
		setReaders := func(tb *aggregate.Table) {
			if !reader {
				return
			}
			tb.SetMinuteReader(func(k aggregate.Key, start int64) ([]byte, error) {
				reads++
				return records[recKey{k, start, false}], nil
			})
			if stored {
				tb.SetBlockReader(func(k aggregate.Key, span int64) ([]byte, error) {
					blockReads++
					return blocks[blockKey{k, span}], nil
				}, rapid.SampledFrom([]int{1, 0}).Draw(t, "block_cache"))
			}
		}
		setReaders(tb)
		if reader {
			tb.TrackDirty()
		}
		keys := []aggregate.Key{{Meter: 1, Customer: "a"}, {Meter: 1, Customer: "b"}, {Meter: 1, Customer: "c"}, {Meter: 2, Customer: "a"}}
		var entries []freezeEntry
		var seq uint64
		horizon := int64(d0) // nothing before it is applied or cancelled
		genDay := func(t *rapid.T, label string, from int64) int64 {
			lo := 0
			for lo < len(dayOff)-1 && d0+dayOff[lo]*day < floorTo(from, day) {
				lo++
			}
			return d0 + dayOff[rapid.IntRange(lo, len(dayOff)-1).Draw(t, label+"_day")]*day
		}
		genTS := func(t *rapid.T, label string, from int64) int64 {
			return genDay(t, label, from) + rapid.SampledFrom([]int64{0, 1, 12, 23}).Draw(t, label+"_hour")*hour +
				rapid.SampledFrom([]int64{0, 1, 30, 59}).Draw(t, label+"_minute")*minute + rapid.SampledFrom([]int64{0, 59}).Draw(t, label+"_second")
		}
		checkpoint := func() {
			for _, d := range tb.TakeDirty() {
				records[recKey{d.Key, d.Start, d.Day}] = d.State
			}
		}
		// store writes the complete blocks in pieces, as a checkpoint does,
		// or fails to (they stay whole in memory, and are handed out again).
		store := func(t *rapid.T) {
			th := tb.FrozenThrough()
			for {
				bs, more := tb.TakeFrozen(rapid.IntRange(1, 4096).Draw(t, "store_bytes"))
				if rapid.IntRange(0, 9).Draw(t, "store_fails") == 0 {
					return
				}
				for _, b := range bs {
					blocks[blockKey{b.Key, b.Span}] = slices.Clone(b.Data)
				}
				tb.Stored(bs)
				if !more {
					through = max(through, th)
					return
				}
			}
		}
		actions := map[string]func(*rapid.T){
			"apply": func(t *rapid.T) {
				n := rapid.IntRange(1, 6).Draw(t, "n")
				items := make([]aggregate.Item, n)
				for i := range items {
					seq++
					v := int64(1)
					if formula != "count" {
						v = rapid.SampledFrom([]int64{1, 2, -3, 999999999999999}).Draw(t, "value")
					}
					items[i] = aggregate.Item{Key: rapid.SampledFrom(keys).Draw(t, "key"), Mode: mode,
						Entry: aggregate.Entry{Seq: seq, Timestamp: genTS(t, "ts", horizon), Value: v}}
					entries = append(entries, freezeEntry{items[i].Key, items[i].Entry})
				}
				tb.ApplyBatch(items)
			},
			"cancel": func(t *rapid.T) {
				var live []int
				for i, l := range entries {
					if l.e.Timestamp >= horizon {
						live = append(live, i)
					}
				}
				if len(live) == 0 {
					t.Skip("nothing after the horizon")
				}
				i := rapid.SampledFrom(live).Draw(t, "i")
				if !tb.Cancel(entries[i].k, mode, entries[i].e) {
					t.Fatalf("Cancel(%+v) = false", entries[i])
				}
				entries = slices.Delete(entries, i, i+1)
			},
			"checkpoint": func(t *rapid.T) {
				if !reader {
					t.Skip("no checkpoint without a reader")
				}
				checkpoint()
			},
			"freeze": func(t *rapid.T) {
				h := d0 + rapid.SampledFrom(dayOff).Draw(t, "horizon_day")*day
				if h <= horizon {
					t.Skip("horizon behind")
				}
				if reader && rapid.Bool().Draw(t, "checkpoint_first") {
					checkpoint()
				}
				tb.Freeze(h)
				horizon = h
				if err := aggregate.CheckBuckets(tb); err != nil { // frozen days give their minute cells back
					t.Fatal(err)
				}
				if tb.Horizon() != h {
					t.Fatalf("Horizon() = %d, want %d", tb.Horizon(), h)
				}
				if stored {
					store(t)
				}
			},
			// reopen loads a new table as Open does: the stored blocks, the
			// records from through on, then a freeze at the horizon.
			"reopen": func(t *rapid.T) {
				if !stored {
					t.Skip("reopen needs stored blocks")
				}
				checkpoint()
				nt := aggregate.NewTable(rapid.SampledFrom([]int{1, 2, 8}).Draw(t, "shards"))
				setReaders(nt)
				bks := slices.Collect(maps.Keys(blocks))
				slices.SortFunc(bks, func(a, b blockKey) int {
					return cmp.Or(cmp.Compare(a.k.Meter, b.k.Meter), cmp.Compare(a.span, b.span), strings.Compare(a.k.Customer, b.k.Customer))
				})
				for _, b := range bks {
					if err := nt.RestoreBlock(b.k, b.span, blocks[b]); err != nil {
						t.Fatal(err)
					}
				}
				rks := slices.Collect(maps.Keys(records))
				slices.SortFunc(rks, func(a, b recKey) int { return cmp.Compare(a.start, b.start) })
				for _, r := range rks {
					if st := records[r]; st != nil && r.start >= through {
						if err := nt.Restore(r.k, mode, r.start, r.day, st); err != nil {
							t.Fatal(err)
						}
					}
				}
				nt.Freeze(horizon)
				nt.TrackDirty()
				if err := aggregate.CheckBuckets(nt); err != nil {
					t.Fatal(err)
				}
				tb = nt
			},
			"query": func(t *rapid.T) {
				k := rapid.SampledFrom(keys).Draw(t, "key")
				g := rapid.SampledFrom([]aggregate.Grouping{aggregate.Total, aggregate.Hourly, aggregate.Daily}).Draw(t, "grouping")
				unit := map[aggregate.Grouping]int64{aggregate.Total: minute, aggregate.Hourly: hour, aggregate.Daily: day}[g]
				start := floorTo(genTS(t, "start", d0), unit) + rapid.Int64Range(-2, 2).Draw(t, "shift")*unit
				end := start + rapid.Int64Range(1, queryDays*day/unit).Draw(t, "units")*unit
				ws, err := tb.Query(k, start, end, g)
				if err != nil {
					t.Fatal(err)
				}
				want := expectWindows(entries, k, mode, formula, start, end, g)
				if got := windowsLast(ws, formula == "last"); got != want {
					t.Fatalf("Query(%+v, [%d, %d), %d) with horizon %d = %s\nwant %s", k, start-d0, end-d0, g, horizon-d0, got, want)
				}
			},
			"cross": func(t *rapid.T) {
				g := rapid.SampledFrom([]aggregate.Grouping{aggregate.Total, aggregate.Hourly, aggregate.Daily}).Draw(t, "grouping")
				unit := map[aggregate.Grouping]int64{aggregate.Total: minute, aggregate.Hourly: hour, aggregate.Daily: day}[g]
				start := floorTo(genTS(t, "start", d0), unit) + rapid.Int64Range(-2, 2).Draw(t, "shift")*unit
				end := start + rapid.Int64Range(1, queryDays*day/unit).Draw(t, "units")*unit
				ctx := context.Background()
				// Totals: the sum over the meter's customers of their windows.
				tot, err := tb.Totals(ctx, 1, start, end, g)
				if err != nil {
					t.Fatal(err)
				}
				type w struct {
					n   int64
					sum *big.Int
				}
				byStart := map[int64]*w{}
				for _, k := range keys[:3] {
					ws, _ := tb.Query(k, start, end, g)
					for _, x := range ws {
						if x.Count == 0 {
							continue
						}
						if byStart[x.Start] == nil {
							byStart[x.Start] = &w{sum: new(big.Int)}
						}
						byStart[x.Start].n += x.Count
						byStart[x.Start].sum.Add(byStart[x.Start].sum, x.Sum.Big())
					}
				}
				var got, want []string
				for _, m := range tot {
					if m.Count > 0 {
						got = append(got, fmt.Sprintf("%d=%d/%s", m.Start-d0, m.Count, m.Sum))
					}
				}
				var starts []int64
				for s := range byStart {
					starts = append(starts, s)
				}
				slices.Sort(starts)
				for i := len(starts) - 1; i >= 0; i-- {
					want = append(want, fmt.Sprintf("%d=%d/%s", starts[i]-d0, byStart[starts[i]].n, byStart[starts[i]].sum))
				}
				if strings.Join(got, " ") != strings.Join(want, " ") {
					t.Fatalf("Totals([%d, %d), %d) = %v, want %v (queries already checked per series)", start-d0, end-d0, g, got, want)
				}
				if g != aggregate.Total {
					return
				}
				// Customers and Top over the same range.
				cs, more, err := tb.Customers(ctx, 1, start, end, "", 10)
				if err != nil || more {
					t.Fatalf("Customers: more %v, %v", more, err)
				}
				got, want = nil, nil
				for _, c := range cs {
					got = append(got, fmt.Sprintf("%s=%d/%s", c.Customer, c.Count, c.Sum))
				}
				for _, k := range keys[:3] {
					e := expectWindows(entries, k, mode, "sum", start, end, aggregate.Total)
					if !strings.Contains(e, "=0/0") {
						want = append(want, k.Customer+e[strings.Index(e, "="):])
					}
				}
				if strings.Join(got, " ") != strings.Join(want, " ") {
					t.Fatalf("Customers([%d, %d)) = %v, want %v", start-d0, end-d0, got, want)
				}
				top, err := tb.Top(ctx, 1, start, end, 10, "count")
				if err != nil || len(top) != len(cs) {
					t.Fatalf("Top: %d customers, want %d: %v", len(top), len(cs), err)
				}
			},
		}
		for _, a := range []string{"apply", "query", "cross"} {
			actions[a+"#2"] = actions[a]
		}
		t.Repeat(actions)
		if reader && reads > 0 {
			t.Logf("%d minute reads, %d block reads, %d blocks stored", reads, blockReads, len(blocks))
		}
		// The counts include frozen days, hours and minutes.
		st := tb.Stats()
		hours, days, minutes := map[[2]any]bool{}, map[[2]any]bool{}, map[[2]any]bool{}
		for _, l := range entries {
			if mode.Window != 0 {
				return // pre-aggregated: only window winners count; the table's own tests check these
			}
			hours[[2]any{l.k, floorTo(l.e.Timestamp, hour)}] = true
			days[[2]any{l.k, floorTo(l.e.Timestamp, day)}] = true
			minutes[[2]any{l.k, floorTo(l.e.Timestamp, minute)}] = true
		}
		if st.HourBuckets != int64(len(hours)) || st.DayBuckets != int64(len(days)) || st.MinuteCells != int64(len(minutes)) {
			t.Fatalf("stats %+v, want %d hours, %d days, %d minutes", st, len(hours), len(days), len(minutes))
		}
	})
}

// A frozen hour and day keep a sum beyond the int64 range, and a last
// entry, exactly.
func TestFreezeSumBeyondInt64(t *testing.T) {
	for _, formula := range []string{"sum", "last"} {
		tb := aggregate.NewTable(1)
		mode := aggregate.ModeOf(formula, "")
		k := aggregate.Key{Meter: 1, Customer: "a"}
		const n, v = 10_000, int64(999_999_999_999_999)
		items := make([]aggregate.Item, n)
		for i := range items {
			items[i] = aggregate.Item{Key: k, Mode: mode, Entry: aggregate.Entry{Seq: uint64(i + 1), Timestamp: d0 + 3*hour + int64(i%3600), Value: v}}
		}
		tb.ApplyBatch(items)
		before := map[aggregate.Grouping]string{}
		for _, g := range []aggregate.Grouping{aggregate.Total, aggregate.Hourly, aggregate.Daily} {
			before[g] = windowsLast(must(tb.Query(k, d0, d0+day, g)), formula == "last")
		}
		if fs := tb.Freeze(d0 + day); fs.Days != 1 || fs.Hours != 1 {
			t.Fatalf("%s: Freeze = %+v, want one day and one hour", formula, fs)
		}
		want := new(big.Int).Mul(big.NewInt(n), big.NewInt(v))
		for g, w := range before {
			got := windowsLast(must(tb.Query(k, d0, d0+day, g)), formula == "last")
			if got != w || !strings.Contains(got, "="+strconv.Itoa(n)+"/"+want.String()) {
				t.Fatalf("%s grouping %d: frozen %s, before %s (sum %s)", formula, g, got, w, want)
			}
		}
		// Minute-aligned edges inside the frozen hour: seconds 600-1199 of it
		// hold entries 600-1199, 4200-4799 and 7800-8399.
		ws := must(tb.Query(k, d0+3*hour+10*minute, d0+3*hour+20*minute, aggregate.Total))
		if ws[0].Count != 1800 || (formula == "last" && ws[0].Last.Value != v) {
			t.Fatalf("%s: minutes 10-19 of the frozen hour: %+v", formula, ws[0])
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// Freeze runs while other goroutines apply, cancel, checkpoint and query
// (go test -race): every query sees each series consistent, and when
// they are done every total equals what was applied.
func TestFreezeConcurrent(t *testing.T) {
	for _, kind := range []string{"memory", "reader", "stored"} {
		reader := kind != "memory"
		tb := aggregate.NewTable(4)
		var mu sync.Mutex // guards records and blocks
		records := map[[2]any][]byte{}
		blocks := map[[2]any][]byte{}
		if reader {
			tb.TrackDirty()
			tb.SetMinuteReader(func(k aggregate.Key, start int64) ([]byte, error) {
				mu.Lock()
				defer mu.Unlock()
				return records[[2]any{k, start}], nil
			})
		}
		days := int64(20)
		if kind == "stored" {
			days = 60 // two complete blocks
			tb.SetBlockReader(func(k aggregate.Key, span int64) ([]byte, error) {
				mu.Lock()
				defer mu.Unlock()
				return blocks[[2]any{k, span}], nil
			}, 4096)
		}
		store := func() {
			for {
				bs, more := tb.TakeFrozen(1000)
				mu.Lock()
				for _, b := range bs {
					blocks[[2]any{b.Key, b.Span}] = b.Data
				}
				mu.Unlock()
				tb.Stored(bs)
				if !more {
					return
				}
			}
		}
		checkpoint := func() {
			ds := tb.TakeDirty()
			mu.Lock()
			for _, d := range ds {
				if !d.Day {
					records[[2]any{d.Key, d.Start}] = d.State
				}
			}
			mu.Unlock()
		}
		keys := []aggregate.Key{{Meter: 1, Customer: "a"}, {Meter: 1, Customer: "b"}, {Meter: 1, Customer: "c"}}
		const perDay = 48
		var wg sync.WaitGroup
		wg.Add(3)
		go func() { // writer: day by day, 48 entries a day per key, one minute apart
			defer wg.Done()
			seq := uint64(0)
			for d := range days {
				for i := range int64(perDay) {
					for _, k := range keys {
						seq++
						tb.Apply(k, aggregate.ModeOf("last", ""), aggregate.Entry{Seq: seq, Timestamp: d0 + d*day + i*30*minute, Value: 1})
					}
				}
				if reader {
					checkpoint()
				}
				if d >= 3 {
					h := d0 + (d-2)*day
					tb.Freeze(h)
					if kind == "stored" {
						store()
					}
				}
			}
		}()
		for range 2 { // readers
			go func() {
				defer wg.Done()
				ctx := context.Background()
				for i := 0; i < 300; i++ {
					start := d0 + (int64(i)%days)*day + 7*minute
					for _, k := range keys {
						ws, err := tb.Query(k, start, start+3*day+11*minute, aggregate.Total)
						if err != nil || ws[0].Count > 3*perDay+1 { // at most the entries the range can hold
							t.Errorf("Query: %+v, %v", ws, err)
							return
						}
					}
					if _, err := tb.Totals(ctx, 1, start, start+5*day, aggregate.Total); err != nil {
						t.Error(err)
						return
					}
					hs := floorTo(start, hour)
					if ws, err := tb.Query(keys[i%3], hs, hs+2*day, aggregate.Hourly); err != nil || len(ws) > 48 {
						t.Errorf("hourly Query: %d windows, %v", len(ws), err)
						return
					}
					if _, err := tb.Totals(ctx, 1, hs, hs+2*day, aggregate.Hourly); err != nil {
						t.Error(err)
						return
					}
					if _, _, err := tb.Customers(ctx, 1, start, start+2*day, "", 2); err != nil {
						t.Error(err)
						return
					}
					if _, err := tb.Top(ctx, 1, d0, d0+days*day, 3, "count"); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if reader {
			checkpoint()
		}
		tb.Freeze(d0 + (days-1)*day)
		if kind == "stored" {
			store()
			if st := tb.Stats(); st.StoredBlocks != 2*int64(len(keys)) {
				t.Fatalf("%d stored blocks, want %d", st.StoredBlocks, 2*len(keys))
			}
		}
		for _, k := range keys {
			for _, g := range []aggregate.Grouping{aggregate.Total, aggregate.Hourly, aggregate.Daily} {
				ws := must(tb.Query(k, d0, d0+days*day, g))
				var n int64
				for _, w := range ws {
					n += w.Count
				}
				if n != days*perDay {
					t.Fatalf("%s, %v grouping %d: %d entries, want %d", kind, k, g, n, days*perDay)
				}
			}
			// Minute edges inside frozen hours: 10:07 to 15:07 of day 2
			// holds the entries at 10:30, 11:00, ... 15:00: 10 of them.
			ws := must(tb.Query(k, d0+2*day+10*hour+7*minute, d0+2*day+15*hour+7*minute, aggregate.Total))
			if ws[0].Count != 10 {
				t.Fatalf("%s: %d entries between 10:07 and 15:07 of a frozen day, want 10", kind, ws[0].Count)
			}
		}
	}
}

// RestoreBlock checks what it is given: a block cut short or with a byte
// changed is refused with ErrCorrupt or read as another valid block,
// never a panic, and a block out of its span or order is refused.
func TestRestoreBlockDamage(t *testing.T) {
	tb := aggregate.NewTable(1)
	tb.TrackDirty()
	tb.SetMinuteReader(func(aggregate.Key, int64) ([]byte, error) { return nil, nil })
	tb.SetBlockReader(func(aggregate.Key, int64) ([]byte, error) { return nil, nil }, 0)
	k := aggregate.Key{Meter: 1, Customer: "a"}
	mode := aggregate.ModeOf("sum", "")
	for d := range int64(40) {
		for h := range int64(24) {
			tb.Apply(k, mode, aggregate.Entry{Seq: uint64(d*24 + h + 1), Timestamp: d0 + d*day + h*hour + 5*minute, Value: d*100 + h - 50})
		}
	}
	tb.TakeDirty()
	tb.Freeze(d0 + 39*day)
	bs, more := tb.TakeFrozen(1 << 20)
	if len(bs) != 1 || more {
		t.Fatalf("TakeFrozen: %d blocks, more %v; want the one complete block", len(bs), more)
	}
	b := bs[0]
	restore := func(span int64, data []byte) (err error) {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("RestoreBlock panicked on %x: %v", data, r)
			}
		}()
		return aggregate.NewTable(1).RestoreBlock(k, span, data)
	}
	if err := restore(b.Span, b.Data); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		span int64
		data []byte
	}{{b.Span + day, b.Data}, {b.Span, nil}} {
		if err := restore(bad.span, bad.data); !errors.Is(err, aggregate.ErrCorrupt) {
			t.Errorf("RestoreBlock(span %d, %d bytes) = %v, want ErrCorrupt", bad.span-d0, len(bad.data), err)
		}
	}
	refused := 0
	for n := range len(b.Data) {
		if err := restore(b.Span, b.Data[:n]); err != nil {
			refused++
			if !errors.Is(err, aggregate.ErrCorrupt) {
				t.Fatalf("cut to %d bytes: %v", n, err)
			}
		}
		for _, x := range []byte{0x01, 0x80, 0xff} {
			c := slices.Clone(b.Data)
			c[n] ^= x
			if err := restore(b.Span, c); err != nil && !errors.Is(err, aggregate.ErrCorrupt) {
				t.Fatalf("byte %d ^ %#x: %v", n, x, err)
			}
		}
	}
	if refused < len(b.Data)-22 { // at most one cut per day ends on a day boundary
		t.Fatalf("%d of %d cuts refused", refused, len(b.Data))
	}
	// Out of order: a block before one already restored.
	nt := aggregate.NewTable(1)
	if err := nt.RestoreBlock(k, b.Span, b.Data); err != nil {
		t.Fatal(err)
	}
	if err := nt.RestoreBlock(k, b.Span, b.Data); !errors.Is(err, aggregate.ErrCorrupt) {
		t.Fatalf("the same block twice: %v, want ErrCorrupt", err)
	}
}
