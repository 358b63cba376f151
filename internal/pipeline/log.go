package pipeline

import (
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/store"
)

// Log keeps accepted events and cancellations for replay, dedupe
// confirmation and cancellation lookups, and the meters and key-value
// records of the database. A record's location is a dense, increasing
// number; locations below a pruned point are gone.
type Log interface {
	// Append queues g, with kvs to be written in the same commit, and
	// returns at once; the commit tells when g is as durable as the log
	// promises and at which location.
	Append(g *store.Group, kvs []store.KVWrite) (commit, error)
	// Group returns the group at loc, or nil when loc was pruned or never
	// written. The group must not be modified.
	Group(loc uint64) (*store.Group, error)
	// Prune lets the log drop groups below loc and key-value records
	// expired at now (unix seconds).
	Prune(loc uint64, now int64)
	// SaveMeter stores a new or changed meter.
	SaveMeter(m meter.Meter) error
	PutKV(ns, key string, value []byte, expires int64) error
	GetKV(ns, key string, now int64) ([]byte, bool, error)
	DeleteKV(ns, key string) error
	// WriteKV applies several puts and deletes in one commit: all or none.
	WriteKV(ws []store.KVWrite) error
	ListKV(ns, after string, now int64, fn func(key string, value []byte) bool) error
	// MemoryBytes estimates the heap the log holds.
	MemoryBytes() int64
	Sync() error
	Close() error
}

// commit is an Append in progress.
type commit struct {
	p    store.Pending // file logs
	loc  uint64        // memory logs: final at once
	held *heldCommit   // tests: a commit that completes later
}

// heldCommit is a commit whose completion a test controls.
type heldCommit struct {
	done chan struct{}
	loc  uint64
}

func (c commit) done() <-chan struct{} {
	switch {
	case c.held != nil:
		return c.held.done
	case c.loc != 0:
		return closed
	}
	return c.p.Done()
}

func (c commit) result() (uint64, error) {
	switch {
	case c.held != nil:
		return c.held.loc, nil
	case c.loc != 0:
		return c.loc, nil
	}
	return c.p.Result()
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// memLog is the log of an in-memory database: it keeps the groups of the
// retention window in a slice.
type memLog struct {
	mu     sync.Mutex // guards the fields below
	base   uint64     // location of groups[0]
	groups []*store.Group
	events int64 // in groups
	kv     map[[2]string]kvValue
}

type kvValue struct {
	value   []byte
	expires int64
}

func newMemLog() *memLog { return &memLog{base: 1, kv: map[[2]string]kvValue{}} }

func (j *memLog) Append(g *store.Group, kvs []store.KVWrite) (commit, error) {
	j.mu.Lock()
	loc := j.base + uint64(len(j.groups))
	j.groups = append(j.groups, g)
	j.events += int64(len(g.Events) + len(g.Cancels))
	for _, w := range kvs {
		j.writeLocked(w)
	}
	j.mu.Unlock()
	return commit{loc: loc}, nil
}

func (j *memLog) Group(loc uint64) (*store.Group, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if loc < j.base || loc-j.base >= uint64(len(j.groups)) {
		return nil, nil
	}
	return j.groups[loc-j.base], nil
}

func (j *memLog) Prune(loc uint64, now int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for k, v := range j.kv {
		if v.expires <= now {
			delete(j.kv, k)
		}
	}
	if loc <= j.base {
		return
	}
	n := min(loc-j.base, uint64(len(j.groups)))
	for _, g := range j.groups[:n] {
		j.events -= int64(len(g.Events) + len(g.Cancels))
	}
	j.groups = append([]*store.Group(nil), j.groups[n:]...)
	j.base += n
}

func (j *memLog) PutKV(ns, key string, value []byte, expires int64) error {
	return j.WriteKV([]store.KVWrite{{NS: ns, Key: key, Value: value, Expires: expires}})
}

func (j *memLog) GetKV(ns, key string, now int64) ([]byte, bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	v, ok := j.kv[[2]string{ns, key}]
	if !ok || v.expires <= now {
		return nil, false, nil
	}
	return append([]byte(nil), v.value...), true, nil
}

func (j *memLog) DeleteKV(ns, key string) error {
	return j.WriteKV([]store.KVWrite{{NS: ns, Key: key, Delete: true}})
}

func (j *memLog) WriteKV(ws []store.KVWrite) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, w := range ws {
		if !w.Delete {
			w.Value = append([]byte(nil), w.Value...)
		}
		j.writeLocked(w)
	}
	return nil
}

// writeLocked applies w, keeping its value.
func (j *memLog) writeLocked(w store.KVWrite) {
	if w.Delete {
		delete(j.kv, [2]string{w.NS, w.Key})
		return
	}
	j.kv[[2]string{w.NS, w.Key}] = kvValue{value: w.Value, expires: w.Expires}
}

func (j *memLog) ListKV(ns, after string, now int64, fn func(key string, value []byte) bool) error {
	j.mu.Lock()
	var keys []string
	for k, v := range j.kv {
		if k[0] == ns && k[1] > after && v.expires > now {
			keys = append(keys, k[1])
		}
	}
	j.mu.Unlock()
	slices.Sort(keys)
	for _, k := range keys {
		j.mu.Lock()
		v, ok := j.kv[[2]string{ns, k}]
		j.mu.Unlock()
		if ok && v.expires > now && !fn(k, v.value) {
			return nil
		}
	}
	return nil
}

// MemoryBytes counts the events and group headers; strings are shared with
// the aggregates and the callers' payloads and are not counted.
func (j *memLog) MemoryBytes() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.events*int64(unsafe.Sizeof(store.Event{})) + int64(len(j.groups))*(int64(unsafe.Sizeof(store.Group{}))+8)
}

func (j *memLog) SaveMeter(meter.Meter) error { return nil }
func (j *memLog) Sync() error                 { return nil }
func (j *memLog) Close() error                { return nil }

// fileLog is the log of a file-backed database. Pruning is deferred to
// the next checkpoint.
type fileLog struct {
	*store.DB
	pruneLoc atomic.Uint64 // log records below it are no longer needed for dedupe
}

func (j *fileLog) Append(g *store.Group, kvs []store.KVWrite) (commit, error) {
	p, err := j.AppendWith(g, kvs)
	return commit{p: p}, err
}

// MemoryBytes is zero: the file log keeps nothing in memory beyond the
// records waiting for their commit.
func (j *fileLog) MemoryBytes() int64 { return 0 }

func (j *fileLog) Prune(loc uint64, now int64) {
	if loc > j.pruneLoc.Load() {
		j.pruneLoc.Store(loc)
	}
}
