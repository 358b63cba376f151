package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"time"
	"unsafe"

	bolt "go.etcd.io/bbolt"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
)

var (
	boltEvents = []byte("events")
	boltIdents = []byte("idents")
)

// boltTarget is the naive durable baseline: one bbolt key per event
// (meter, customer, timestamp, sequence) with its value, one key per
// identifier for dedupe, one fsynced read-write transaction per Record or
// RecordBatch call, and queries that range-scan the raw events.
type boltTarget struct {
	now    func() time.Time
	path   string
	db     *bolt.DB
	meters baseMeters
}

func newBoltTarget(w *Workload, path string) (*boltTarget, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{boltEvents, boltIdents} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &boltTarget{now: w.Now, path: path, db: db}, nil
}

func (t *boltTarget) CreateMeters(_ context.Context, ps []meter.Params) ([]string, error) {
	return t.meters.create(ps, t.now()), nil
}

// seriesPrefix appends meter and customer (length-prefixed) to b.
func seriesPrefix(b []byte, m uint64, customer string) []byte {
	b = binary.BigEndian.AppendUint64(b, m)
	b = append(b, byte(len(customer)))
	return append(b, customer...)
}

// appendTS appends a timestamp so that byte order is numeric order.
func appendTS(b []byte, ts int64) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(ts)^1<<63)
}

func (t *boltTarget) Record(ctx context.Context, ev *event.Event) error {
	n, err := t.RecordBatch(ctx, unsafe.Slice(ev, 1))
	if err == nil && n > 0 {
		return errors.New("bench: bbolt rejected an event")
	}
	return err
}

func (t *boltTarget) RecordBatch(_ context.Context, evs []event.Event) (int, error) {
	now := t.now()
	vs := make([]validated, 0, len(evs))
	rejected := 0
	for i := range evs {
		v, err := event.Validate(&evs[i], t.meters.byEvent[evs[i].Name], now)
		if err != nil || evs[i].Identifier == "" {
			rejected++
			continue
		}
		vs = append(vs, validated{t.meters.byEvent[evs[i].Name], v, evs[i].Identifier})
	}
	n, err := t.commit(vs)
	return rejected + n, err
}

// RecordUsage is RecordBatch for typed usage: event.ValidateUsage, then
// the same transaction.
func (t *boltTarget) RecordUsage(_ context.Context, us []event.Usage) (int, error) {
	now := t.now()
	vs := make([]validated, 0, len(us))
	rejected := 0
	for i := range us {
		v, err := event.ValidateUsage(&us[i], t.meters.byEvent[us[i].Name], now)
		if err != nil || us[i].Identifier == "" {
			rejected++
			continue
		}
		vs = append(vs, validated{t.meters.byEvent[us[i].Name], v, us[i].Identifier})
	}
	n, err := t.commit(vs)
	return rejected + n, err
}

// commit writes vs in one transaction, one key per event, and returns how
// many were duplicates.
func (t *boltTarget) commit(vs []validated) (rejected int, err error) {
	err = t.db.Update(func(tx *bolt.Tx) error {
		eb, ib := tx.Bucket(boltEvents), tx.Bucket(boltIdents)
		key := make([]byte, 0, 128)
		for _, x := range vs {
			id := []byte(x.id)
			if ib.Get(id) != nil {
				rejected++
				continue
			}
			if err := ib.Put(id, []byte{1}); err != nil {
				return err
			}
			seq, err := eb.NextSequence()
			if err != nil {
				return err
			}
			key = seriesPrefix(key[:0], x.m.Seq, x.v.Customer)
			key = appendTS(key, x.v.Timestamp)
			key = binary.BigEndian.AppendUint64(key, seq)
			if err := eb.Put(key, binary.BigEndian.AppendUint64(nil, uint64(x.v.Value))); err != nil {
				return err
			}
		}
		return nil
	})
	return rejected, err
}

// Load records evs without an fsync per call, in large transactions.
func (t *boltTarget) Load(ctx context.Context, evs []event.Event) (int, error) {
	t.db.NoSync = true
	defer func() { t.db.NoSync = false }()
	rejected := 0
	for i := 0; i < len(evs); i += 10000 {
		n, err := t.RecordBatch(ctx, evs[i:min(len(evs), i+10000)])
		if err != nil {
			return 0, err
		}
		rejected += n
	}
	return rejected, t.db.Sync()
}

func (t *boltTarget) Summaries(_ context.Context, p meterdb.SummaryParams) ([]meterdb.Summary, error) {
	m, start, end, err := t.meters.query(p)
	if err != nil {
		return nil, err
	}
	unit := end - start
	switch p.Grouping {
	case meterdb.GroupHour:
		unit = 3600
	case meterdb.GroupDay:
		unit = 86400
	}
	prefix := seriesPrefix(nil, m.Seq, p.Customer)
	lo, hi := appendTS(bytes.Clone(prefix), start), appendTS(bytes.Clone(prefix), end)
	var out []meterdb.Summary
	err = t.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(boltEvents).Cursor()
		var cur cell
		curStart := int64(-1) << 62
		flush := func() {
			if cur.count > 0 {
				out = append(out, cur.summary(m.Formula, curStart, curStart+unit))
			}
			cur = cell{}
		}
		for k, v := c.Seek(lo); k != nil && bytes.Compare(k, hi) < 0; k, v = c.Next() {
			rest := k[len(prefix):]
			ts := int64(binary.BigEndian.Uint64(rest) ^ 1<<63)
			w := start + (ts-start)/unit*unit
			if w != curStart {
				flush()
				curStart = w
			}
			cur.add(ts, binary.BigEndian.Uint64(rest[8:]), int64(binary.BigEndian.Uint64(v)))
		}
		flush()
		return nil
	})
	if err != nil {
		return nil, err
	}
	if p.Grouping == meterdb.GroupNone {
		if len(out) == 0 {
			return []meterdb.Summary{{Start: p.Start.UTC(), End: p.End.UTC()}}, nil
		}
		return out, nil
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

func (t *boltTarget) Close() error {
	return t.db.Close()
}

func (t *boltTarget) Sizes() map[string]float64 {
	fi, err := os.Stat(t.path)
	if err != nil {
		return nil
	}
	return map[string]float64{"file_bytes": float64(fi.Size())}
}
