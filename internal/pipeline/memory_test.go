package pipeline

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"testing"
	"time"

	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/internal/idhash"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/store"
)

// TestMemoryConfirmComparesAllBits checks that an in-memory database
// confirms a dedupe candidate on all 128 bits of the fingerprint of the
// one event the candidate's slot names, although the memory log keeps
// only 114 of them: identifiers that share every kept bit with a
// recorded one, but differ from it in a bit its slot implies (tag or
// shard), are new events; one that differs in a kept bit of either hash
// is new too; one with both hashes equal is a duplicate.
func TestMemoryConfirmComparesAllBits(t *testing.T) {
	const a, b = 0x9E3779B97F4A7C15, 0xD1B54A32D192ED03 // tag bits 0x11b, shard 0x27
	hashes := map[string][2]uint64{
		"a":        {a, b},
		"tag-bit":  {a ^ 1<<57, b}, // the top bit of the 9-bit tag: not kept by the log
		"tag-bit2": {a ^ 1<<56, b}, // the next one: not kept either
		"tag-bit6": {a ^ 1<<50, b}, // the lowest bit of the tag the log does not keep
		"tag-bit7": {a ^ 1<<49, b}, // the tag's lowest bit, which the log keeps
		"shard":    {a ^ 1<<63, b}, // the top shard bit
		"low-bit":  {a ^ 1<<40, b}, // a kept bit of the index hash, outside the bucket bits
		"second":   {a, b ^ 1<<63}, // a bit of the second hash
		"a-twin":   {a, b},         // every bit of a's fingerprint
	}
	e, err := Open(Config{Shards: 4, DedupeWindow: 24 * time.Hour, CancelWindow: 24 * time.Hour,
		CheckpointInterval: time.Hour, Now: func() time.Time { return now0 }, Logger: slog.New(slog.DiscardHandler),
		idHashes: func(id string) (uint64, uint64) {
			h, ok := hashes[id]
			if !ok {
				t.Errorf("identifier %q has no hashes", id)
			}
			return h[0], h[1]
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	if _, err := e.CreateMeter(ctx, meter.Params{DisplayName: "calls", EventName: "calls", Formula: meter.Sum}); err != nil {
		t.Fatal(err)
	}
	record := func(id string, v int64) error {
		t.Helper()
		errs, err := e.Record(ctx, &Batch{Usages: []event.Usage{usage(id, "c", v)}})
		if err != nil {
			t.Fatal(err)
		}
		return errs[0]
	}
	if err := record("a", 1); err != nil {
		t.Fatalf("first event: %v", err)
	}
	for i, id := range []string{"tag-bit", "tag-bit2", "shard", "low-bit", "second", "tag-bit6", "tag-bit7"} {
		if err := record(id, 10<<i); err != nil {
			t.Errorf("%s, which differs from a in one bit of its fingerprint: %v, want it recorded", id, err)
		}
	}
	// "second" shares a's slot: its candidate was compared with a's event.
	if s := e.Stats().Dedupe; s.ConfirmReads == 0 {
		t.Errorf("no candidate was confirmed against the memory log: %+v", s)
	}
	for _, id := range []string{"a", "a-twin", "tag-bit", "second"} {
		if err := record(id, 1000); !errors.Is(err, event.ErrDuplicate) {
			t.Errorf("%s again: %v, want a duplicate", id, err)
		}
	}
	if got, want := total(t, e, "c"), int64(1+10+20+40+80+160+320+640); got != want {
		t.Fatalf("total %d, want %d", got, want)
	}
	// Cancel finds each event by its own fingerprint.
	for _, id := range []string{"tag-bit", "second"} {
		if err := e.Cancel(ctx, "calls", id); err != nil {
			t.Fatalf("Cancel(%s): %v", id, err)
		}
	}
	if got, want := total(t, e, "c"), int64(1+20+40+80+320+640); got != want {
		t.Fatalf("total %d after cancelling tag-bit and second, want %d", got, want)
	}
}

// TestMemFPs checks the packing of a fingerprint block: every entry reads
// back whatever its neighbours, across the block's growth up to its last
// entry, and any flipped bit of the kept 114 tells fingerprints apart.
func TestMemFPs(t *testing.T) {
	var b memFPs
	fp := func(i int) (uint64, uint64) {
		x := uint64(i)*0x9E3779B97F4A7C15 + 1
		return x ^ x>>29*0xBF58476D1CE4E5B9, x*0x94D049BB133111EB ^ x>>31
	}
	for i := range fpBlock {
		b.add(fp(i))
	}
	if len(b.h2) != fpBlock || len(b.low) != fpBlock*fpLowBits/8 {
		t.Fatalf("a full block holds %d second hashes and %d bytes of low bits", len(b.h2), len(b.low))
	}
	for i := range fpBlock {
		h1, h2 := fp(i)
		if !b.is(i, h1, h2) {
			t.Fatalf("entry %d does not read back", i)
		}
		if i%997 != 0 && i < fpBlock-3 {
			continue
		}
		for bit := range 64 {
			if b.is(i, h1, h2^1<<bit) {
				t.Fatalf("entry %d matches with bit %d of the second hash flipped", i, bit)
			}
			if got := b.is(i, h1^1<<bit, h2); got != (bit >= fpLowBits) {
				t.Fatalf("entry %d with bit %d of the index hash flipped: match %v", i, bit, got)
			}
		}
	}
}

// TestMemLogCustomers checks the memory log's interned customers: every
// kept event reads back its own customer, pruning a block releases the
// numbers only its events named, and a released number is reused for a
// new customer without changing what older events read.
func TestMemLogCustomers(t *testing.T) {
	hashes := func(id string) (uint64, uint64) { return maphash.String(seed0, id), maphash.String(seed1, id) }
	j := newMemLog(idhash.Key{}, hashes)
	customer := func(i int) string {
		if i < memBlock {
			return fmt.Sprintf("early-%d", i%7) // only in the first block
		}
		return fmt.Sprintf("late-%d", i%5)
	}
	ident := func(i int) string { return fmt.Sprintf("ev-%d", i) }
	const n = 3 * memBlock
	for start := 0; start < n; start += 512 {
		g := &store.Group{}
		for i := start; i < start+512; i++ {
			g.Events = append(g.Events, store.Event{Seq: uint64(i + 1), Meter: 1, Customer: customer(i),
				Identifier: ident(i), Value: int64(i), Timestamp: int64(i), Received: 1})
		}
		if _, err := j.Append(g, nil); err != nil {
			t.Fatal(err)
		}
	}
	check := func(from int) {
		t.Helper()
		for i := from; i < n; i++ {
			h1, h2 := hashes(ident(i))
			ev, ok := j.find(uint64(i), h1, h2)
			if !ok || ev.Customer != customer(i) || ev.Value != int64(i) {
				t.Fatalf("event %d reads back %+v %v, want customer %q", i, ev, ok, customer(i))
			}
		}
	}
	check(0)
	if got := len(j.custs.ids); got != 12 {
		t.Fatalf("%d customers interned, want 12", got)
	}
	// Prune the first block: its seven customers go, the others stay.
	j.Prune(j.base+memBlock/512, 1)
	if got := len(j.custs.ids); got != 5 {
		t.Fatalf("%d customers interned after pruning the first block, want 5", got)
	}
	for i := range 7 {
		if _, ok := j.custs.ids[customer(i)]; ok {
			t.Fatalf("customer %q of the pruned block is still interned", customer(i))
		}
	}
	check(memBlock)
	// New customers take the freed numbers.
	g := &store.Group{}
	for i := range 7 {
		g.Events = append(g.Events, store.Event{Seq: uint64(n + i + 1), Meter: 1, Customer: fmt.Sprintf("new-%d", i),
			Identifier: ident(n + i), Value: 1, Timestamp: 1, Received: 1})
	}
	if _, err := j.Append(g, nil); err != nil {
		t.Fatal(err)
	}
	if got := len(j.custs.names); got != 12 {
		t.Fatalf("%d customer numbers after 7 new customers took the 7 freed ones, want 12", got)
	}
	check(memBlock)
	for i := range 7 {
		h1, h2 := hashes(ident(n + i))
		if ev, ok := j.find(uint64(n+i), h1, h2); !ok || ev.Customer != fmt.Sprintf("new-%d", i) {
			t.Fatalf("new event %d reads back %+v %v", i, ev, ok)
		}
	}
}

var seed0, seed1 = maphash.MakeSeed(), maphash.MakeSeed()
