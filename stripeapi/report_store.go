package stripeapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meterdb/meterdb"
)

// The error report store. A stream request's reports are one record in
// reportNamespace under a key that sorts newest first (newReportKey). Each
// record comes with index records in reportIndexNamespace, written in the
// same commit (DB.WriteKV) and expiring with it:
//
//	"t/" type "/" key ii    the report of index ii, by type, newest first
//	"o/" meter "/" key ii   by related meter, newest first
//	"a/" time key           by age, oldest first (time: 16 hex digits of
//	                        the creation in unix nanoseconds); the value
//	                        (ageEntry) holds the record's size and index keys,
//	                        for dropping the oldest records past
//	                        Options.MaxErrorReportBytes
//	"f/" fingerprint        a record of identical reports was stored in the
//	                        last 24 hours (see reportFingerprint)
//	"v"                     the index covers every record (written once the
//	                        records of older versions were indexed)
//
// Filtered lists walk an index from a cursor or created bound, so that a
// page costs its own reports, not every report stored.
const reportIndexNamespace = "stripeapi.error_reports.index"

const (
	indexMarker    = "v"
	fingerprintTTL = 24 * time.Hour
)

// ageEntry is the value of an "a/" index record.
type ageEntry struct {
	Size  int64    `json:"n"`
	Index []string `json:"k"`
}

// reportStore keeps the byte count and bounds the error reports of one
// handler. It is safe for concurrent use.
type reportStore struct {
	db    *meterdb.DB
	max   int64
	write func(context.Context, []meterdb.KVWrite) error

	bytes atomic.Int64 // bytes of stored records, an estimate corrected by trim

	initMu sync.Mutex // guards ready
	ready  bool
	inited atomic.Bool // ready, read without the lock

	trimming sync.Mutex // held by the one trim running
}

// init indexes the records of older versions, once, and counts the bytes
// stored. A failure is retried by the next call.
func (s *reportStore) init(ctx context.Context) error {
	if s.inited.Load() {
		return nil
	}
	s.initMu.Lock()
	defer s.initMu.Unlock()
	if s.ready {
		return nil
	}
	_, marked, err := s.db.GetKV(ctx, reportIndexNamespace, indexMarker)
	if err != nil {
		return err
	}
	if !marked {
		if err := s.indexAll(ctx); err != nil {
			return err
		}
	}
	var total int64
	err = listPrefix(ctx, s.db, reportIndexNamespace, "a/", "", func(_ string, v []byte) bool {
		var a ageEntry
		if json.Unmarshal(v, &a) == nil {
			total += a.Size
		}
		return true
	})
	if err != nil {
		return err
	}
	s.bytes.Store(total)
	s.ready = true
	s.inited.Store(true)
	return nil
}

// indexAll writes the index records of every stored record, then the
// marker.
func (s *reportStore) indexAll(ctx context.Context) error {
	after := ""
	for {
		type rec struct {
			key string
			raw []byte
		}
		var recs []rec
		err := s.db.ListKV(ctx, reportNamespace, after, func(k string, v []byte) bool {
			recs = append(recs, rec{k, append([]byte(nil), v...)})
			return len(recs) < 200
		})
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			break
		}
		var ws []meterdb.KVWrite
		for _, r := range recs {
			var rr reportRecord
			if len(r.key) != reportKeyLen || json.Unmarshal(r.raw, &rr) != nil {
				continue
			}
			ws = append(ws, indexWrites(r.key, rr.Reports, int64(len(r.raw)))...)
		}
		if err := s.db.WriteKV(ctx, ws); err != nil {
			return err
		}
		after = recs[len(recs)-1].key
	}
	return s.db.PutKV(ctx, reportIndexNamespace, indexMarker, []byte("1"), s.db.Now().AddDate(100, 0, 0))
}

// reportKeyTime is the creation time encoded in a record key.
func reportKeyTime(key string) (time.Time, bool) {
	if len(key) < 16 {
		return time.Time{}, false
	}
	v, err := strconv.ParseUint(key[:16], 16, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, int64(^v)), true
}

// timeKeyPrefix is the first 16 characters of the keys of records created
// at t.
func timeKeyPrefix(t time.Time) string { return fmt.Sprintf("%016x", ^uint64(t.UnixNano())) }

// indexWrites returns the index records of the record stored under key
// with the given reports, size bytes long.
func indexWrites(key string, reports []ErrorReport, size int64) []meterdb.KVWrite {
	created, _ := reportKeyTime(key)
	exp := created.Add(ErrorReportTTL)
	var ws []meterdb.KVWrite
	var keys []string
	for i, r := range reports {
		ii := fmt.Sprintf("%02x", i)
		keys = append(keys, "t/"+r.Type+"/"+key+ii)
		if r.Meter != "" {
			keys = append(keys, "o/"+r.Meter+"/"+key+ii)
		}
	}
	for _, k := range keys {
		ws = append(ws, meterdb.KVWrite{Namespace: reportIndexNamespace, Key: k, Value: []byte{}, Expires: exp})
	}
	age, err := json.Marshal(ageEntry{Size: size, Index: keys})
	if err != nil {
		panic(fmt.Sprintf("stripeapi: encoding an index record: %v", err)) // an int and strings
	}
	ws = append(ws, meterdb.KVWrite{Namespace: reportIndexNamespace,
		Key: fmt.Sprintf("a/%016x%s", uint64(created.UnixNano()), key), Value: age, Expires: exp})
	return ws
}

// reportFingerprint identifies reports by what they report: types, meters,
// codes and samples, not the request that carried them.
func reportFingerprint(reports []ErrorReport) string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, r := range reports {
		r.RequestID, r.IdempotencyKey = "", ""
		r.Created, r.ValidationStart, r.ValidationEnd = time.Time{}, time.Time{}, time.Time{}
		if err := enc.Encode(r); err != nil {
			panic(fmt.Sprintf("stripeapi: encoding a report: %v", err)) // plain data
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// put stores the reports of one request, made at now, with their index
// records in one commit, unless identical reports were stored in the last
// 24 hours (a client retrying a batch of events already recorded gets
// the same duplicate_meter_event report each time: it is kept once). Past
// the byte bound it then drops the oldest records.
func (s *reportStore) put(ctx context.Context, now time.Time, reports []ErrorReport) error {
	if err := s.init(ctx); err != nil {
		return err
	}
	if _, found, err := s.db.GetKV(ctx, reportIndexNamespace, "f/"+reportFingerprint(reports)); err != nil || found {
		return err
	}
	ws, size, err := s.records(now, reports)
	if err != nil {
		return err
	}
	if err := s.write(ctx, ws); err != nil {
		return err
	}
	return s.stored(ctx, size)
}

// records returns the writes that store the reports of one request, made
// at now: the record, its index records and its fingerprint, and the
// record's size. It reads nothing, so that a stream request's reports can
// be written by the callback that commits them with the request's events.
func (s *reportStore) records(now time.Time, reports []ErrorReport) ([]meterdb.KVWrite, int64, error) {
	raw, err := json.Marshal(reportRecord{Reports: reports})
	if err != nil {
		return nil, 0, err
	}
	key := newReportKey(now)
	ws := append([]meterdb.KVWrite{{Namespace: reportNamespace, Key: key, Value: raw, Expires: now.Add(ErrorReportTTL)}},
		indexWrites(key, reports, int64(len(raw)))...)
	ws = append(ws, meterdb.KVWrite{Namespace: reportIndexNamespace, Key: "f/" + reportFingerprint(reports),
		Value: []byte(key), Expires: now.Add(fingerprintTTL)})
	return ws, int64(len(raw)), nil
}

// stored counts a record of size bytes, committed, and drops the oldest
// records once the bound is passed. The store must be initialized.
func (s *reportStore) stored(ctx context.Context, size int64) error {
	if s.bytes.Add(size) > s.max {
		return s.trim(ctx)
	}
	return nil
}

// trim drops the oldest records until the bytes stored are 90% of the
// bound. It counts the bytes exactly first (expired records vanish without
// a word). One trim runs at a time; a call while one runs returns at once.
func (s *reportStore) trim(ctx context.Context) error {
	if !s.trimming.TryLock() {
		return nil
	}
	defer s.trimming.Unlock()
	type aged struct {
		key   string // of the "a/" record
		entry ageEntry
	}
	var all []aged
	var total int64
	err := listPrefix(ctx, s.db, reportIndexNamespace, "a/", "", func(k string, v []byte) bool {
		var a ageEntry
		if json.Unmarshal(v, &a) == nil {
			all = append(all, aged{k, a})
			total += a.Size
		}
		return true
	})
	if err != nil {
		return err
	}
	s.bytes.Store(total)
	target := s.max - s.max/10
	var ws []meterdb.KVWrite
	del := func(ns, k string) { ws = append(ws, meterdb.KVWrite{Namespace: ns, Key: k, Delete: true}) }
	for _, a := range all {
		if total <= target {
			break
		}
		del(reportNamespace, a.key[len("a/")+16:])
		for _, k := range a.entry.Index {
			del(reportIndexNamespace, k)
		}
		del(reportIndexNamespace, a.key)
		total -= a.entry.Size
		if len(ws) >= 500 {
			if err := s.write(ctx, ws); err != nil {
				return err
			}
			ws = ws[:0]
		}
	}
	if err := s.write(ctx, ws); err != nil {
		return err
	}
	s.bytes.Store(total)
	return nil
}
