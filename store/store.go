package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/meterdb/meterdb/internal/idhash"
	"github.com/meterdb/meterdb/meter"
)

// FormatVersion is the version of the layout in FORMAT.md that this code
// writes and reads.
const FormatVersion = 4

var (
	bucketMeta   = []byte("meta")
	bucketMeters = []byte("meters")
	bucketLog    = []byte("log")
	bucketAgg    = []byte("agg")
	bucketKV     = []byte("aux")

	keyFormat     = []byte("format")
	keyIdentKey   = []byte("ident_hash_key") // the 16-byte secret key of the identifier hashes in format 3 records (internal/idhash)
	keyCheckpoint = []byte("checkpoint")     // 8-byte location covered by the aggregate checkpoint
	keyLastSeq    = []byte("last_seq")       // 8-byte last event sequence at the checkpoint
	keyLastLoc    = []byte("last_loc")       // 8-byte last log location at the checkpoint
	// keyFrozenThrough is the 8-byte time (unix seconds) before which
	// every hour and day record belongs to a day kept in a frozen block.
	keyFrozenThrough = []byte("frozen_through")
)

// DB is an open store file.
type DB struct {
	opts   Options
	bolt   *bolt.DB
	path   string     // the file's path; bbolt's own is cleared by Close
	format uint64     // of the file: FormatVersion, or 1 for a format 1 file opened read-only (no checksums)
	idKey  idhash.Key // of the identifier hashes (keyIdentKey)

	wake chan struct{} // tells the committer that work is queued (capacity 1)

	mu           sync.Mutex // guards the fields below
	cond         *sync.Cond // broadcast when a commit finishes or Close starts
	queue        []*item    // waiting for the committer, in location order
	queued       int        // events in queue
	nextLoc      uint64     // location of the next Append
	items        uint64     // items ever queued
	commits      uint64     // items ever committed (or failed); batches commit in queue order
	pending      map[uint64]*Group
	kvPend       map[[2]string]kvRecord
	failed       error     // sticky: a commit failed for a reason other than space
	stalled      error     // a buffered batch waits for space; new buffered writes are refused
	lastSpaceLog time.Time // when a failure for lack of space was last logged
	closing      bool
	closed       bool

	counters counters // statistics; see Stats

	done chan struct{} // closed when the committer exits
}

type item struct {
	seq   uint64      // queue order
	loc   uint64      // log location; 0 for key-value records alone
	data  []byte      // encoded log record; nil for key-value records alone
	buf   *[]byte     // the pooled buffer holding data (release)
	nev   int         // events in data
	kvs   []*kvRecord // key-value records committed with the log record
	group *Group
	done  chan struct{} // closed when loc and err are final; nil for buffered writes
	err   error
}

// Pending is an Append in progress: its record is queued for a commit.
type Pending struct{ it *item }

// Done is closed once the record's commit is over (at once with
// DurabilityBuffered).
func (p Pending) Done() <-chan struct{} {
	if p.it.done == nil {
		return closedChan
	}
	return p.it.done
}

// Result returns the record's location, or why its commit failed. Call it
// after Done is closed.
func (p Pending) Result() (uint64, error) { return p.it.loc, p.it.err }

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Open opens or creates the store at path. A second process opening the
// same file gets ErrLocked after Options.LockTimeout; a file that is not a
// meterdb store gets ErrNotStore (an empty file too: Open never leaves one
// behind, see create), one of an unknown format version ErrVersion, a
// damaged one an error wrapping ErrCorrupt, and one the process may not
// open an error wrapping fs.ErrPermission. A file of an older format (1, 2
// or 3) is upgraded to the current format in one transaction, unless
// opened read-only, when it is read as it is (a format 1 file without
// checksums).
func Open(path string, opts *Options) (_ *DB, err error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	fi, statErr := os.Stat(path)
	switch {
	case statErr == nil && fi.Size() == 0:
		return nil, fmt.Errorf("%w: %s: file is empty", ErrNotStore, path)
	case statErr == nil:
	case errors.Is(statErr, fs.ErrNotExist) && !o.ReadOnly:
		if err := create(path, &o); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("store: opening %s: %w", path, statErr)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s: %v", ErrCorrupt, path, r)
		}
	}()
	bdb, err := bolt.Open(path, 0o600, o.boltOptions())
	if err != nil {
		return nil, openError(path, err)
	}
	s := &DB{opts: o, bolt: bdb, path: bdb.Path(), pending: map[uint64]*Group{}, kvPend: map[[2]string]kvRecord{},
		done: make(chan struct{}), wake: make(chan struct{}, 1), counters: newCounters()}
	s.cond = sync.NewCond(&s.mu)
	if err := s.init(path); err != nil {
		bdb.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	go s.commitLoop()
	return s, nil
}

func (o *Options) boltOptions() *bolt.Options {
	return &bolt.Options{
		Timeout:        o.LockTimeout,
		NoSync:         o.NoFsync,
		NoGrowSync:     o.NoFsync,
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: false,
		ReadOnly:       o.ReadOnly,
	}
}

// openError classifies an error of bolt.Open on an existing, non-empty
// file.
func openError(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("store: opening %s: %w", path, err)
	case errors.Is(err, bolterrors.ErrTimeout):
		return fmt.Errorf("%w: %s", ErrLocked, path)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrVersionMismatch):
		return fmt.Errorf("%w: %s: %v", ErrNotStore, path, err)
	case errors.Is(err, bolterrors.ErrChecksum):
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("store: opening %s: %w", path, err) // I/O, not content
	}
	return fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
}

// create makes a new, initialised store at path, which does not exist.
// It builds the file under a temporary name in the same directory and
// links it into place only once it is complete and synced, so that a crash
// never leaves an empty or half-written file at path: an empty file there
// was not made by Open (ErrNotStore). A crash can leave the temporary file
// (path + ".new-" + digits) behind; it is safe to delete. If another
// process creates path meanwhile, its file wins and this one is dropped.
func create(path string, o *Options) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".new-*")
	if err != nil {
		return fmt.Errorf("store: creating %s: %w", path, err)
	}
	tmp := f.Name()
	f.Close()
	os.Remove(tmp) // bolt.Open initialises a missing file, not an empty one
	defer os.Remove(tmp)
	bopts := o.boltOptions()
	bopts.Timeout = 0
	bdb, err := bolt.Open(tmp, 0o600, bopts)
	if err != nil {
		return fmt.Errorf("store: creating %s: %w", path, err)
	}
	err = bdb.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		if err := meta.Put(keyFormat, u64(FormatVersion)); err != nil {
			return err
		}
		if err := meta.Put(keyIdentKey, seal(scopeMeta, keyIdentKey, idhash.New().Bytes())); err != nil {
			return err
		}
		return createBuckets(tx)
	})
	if cerr := bdb.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: creating %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		// A file system without hard links: rename, which (unlike link)
		// would replace a file created meanwhile, so check first.
		if _, serr := os.Lstat(path); serr == nil {
			return nil
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("store: creating %s: %w", path, err)
		}
	}
	if !o.NoFsync {
		if d, err := os.Open(dir); err == nil {
			d.Sync()
			d.Close()
		}
	}
	return nil
}

func createBuckets(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketMeters, bucketLog, bucketAgg, bucketKV} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}

// init checks the format (upgrading a file of an older format) and finds
// the next log location.
func (s *DB) init(path string) error {
	run := s.bolt.Update
	if s.opts.ReadOnly {
		run = s.bolt.View
	}
	return run(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			if hasBuckets(tx) || s.opts.ReadOnly {
				// A bbolt file of another application.
				return ErrNotStore
			}
			// A bbolt file without any bucket: a format 1 Open crashed
			// before its first transaction. Initialise it.
			var err error
			if meta, err = tx.CreateBucket(bucketMeta); err != nil {
				return err
			}
			if err := meta.Put(keyFormat, u64(FormatVersion)); err != nil {
				return err
			}
			if err := meta.Put(keyIdentKey, seal(scopeMeta, keyIdentKey, idhash.New().Bytes())); err != nil {
				return err
			}
		}
		v := meta.Get(keyFormat)
		if len(v) != 8 {
			return fmt.Errorf("%w: missing format version", ErrNotStore)
		}
		ver := binary.BigEndian.Uint64(v)
		switch {
		case ver == FormatVersion:
			s.format = ver
		case ver >= 1 && ver < FormatVersion && s.opts.ReadOnly:
			s.format = ver
		case ver == 2 || ver == 3:
			// Format 3 adds a log record kind and format 4 an aggregate
			// record kind (frozen blocks) and a meta record
			// (frozen_through), absent meaning none: every format 2 or 3
			// record is a format 4 record, so the upgrade only sets the
			// version. (A format 2 file gets its identifier hash key
			// below.)
			if err := meta.Put(keyFormat, u64(FormatVersion)); err != nil {
				return err
			}
			s.format = FormatVersion
			s.opts.Logger.Info("store upgraded", "path", path, "from_format", ver, "to_format", FormatVersion, "records", 0)
		case ver == 1:
			start := time.Now()
			n, err := upgradeV1(tx)
			if err != nil {
				return fmt.Errorf("upgrading from format 1: %w", err)
			}
			s.format = FormatVersion
			s.opts.Logger.Info("store upgraded", "path", path, "from_format", 1, "to_format", FormatVersion,
				"records", n, "took", time.Since(start))
		default:
			return fmt.Errorf("%w: file has format %d, this build reads formats 1 to %d", ErrVersion, ver, FormatVersion)
		}
		if err := s.loadIdentKey(meta, ver >= 3); err != nil {
			return err
		}
		if !s.opts.ReadOnly {
			if err := createBuckets(tx); err != nil {
				return err
			}
		}
		lastLoc, err := s.metaU64(meta, keyLastLoc)
		if err != nil {
			return err
		}
		ck, err := s.metaU64(meta, keyCheckpoint)
		if err != nil {
			return err
		}
		s.nextLoc = max(lastLoc, ck) + 1
		if log := tx.Bucket(bucketLog); log != nil {
			if k, _ := log.Cursor().Last(); k != nil {
				if len(k) != 8 {
					return fmt.Errorf("%w: log key of %d bytes", ErrCorrupt, len(k))
				}
				s.nextLoc = max(s.nextLoc, binary.BigEndian.Uint64(k)+1)
			}
		}
		return nil
	})
}

// loadIdentKey reads the key of the identifier hashes, which every file of
// format 3 or later has (hashed). A file of an older format gets one as it
// is upgraded; read as it is, it is given a random one, which no record
// needs.
func (s *DB) loadIdentKey(meta *bolt.Bucket, hashed bool) error {
	v := meta.Get(keyIdentKey)
	if v == nil {
		if hashed {
			return fmt.Errorf("%w: %s is missing", ErrCorrupt, metaName(keyIdentKey))
		}
		s.idKey = idhash.New()
		if s.opts.ReadOnly {
			return nil
		}
		return meta.Put(keyIdentKey, seal(scopeMeta, keyIdentKey, s.idKey.Bytes()))
	}
	body, err := s.open(scopeMeta, keyIdentKey, v, func() string { return metaName(keyIdentKey) })
	if err != nil {
		return err
	}
	if s.idKey, err = idhash.Parse(body); err != nil {
		return corrupt(metaName(keyIdentKey), errMalformedBody)
	}
	return nil
}

// IdentKey returns the secret key under which the file hashes identifiers
// (internal/idhash; format 3 records keep those hashes): a dedupe index
// built with it can load the stored hashes. It must not leave the process.
func (s *DB) IdentKey() [idhash.Size]byte { return [idhash.Size]byte(s.idKey.Bytes()) }

func hasBuckets(tx *bolt.Tx) bool {
	found := false
	tx.ForEach(func([]byte, *bolt.Bucket) error { found = true; return nil })
	return found
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// open checks a stored value's checksum and returns its body; name
// names the record in the error. Values of a format 1 file (read-only)
// have no checksum.
func (s *DB) open(sc scope, key, v []byte, name func() string) ([]byte, error) {
	if s.format == 1 {
		return v, nil
	}
	body, err := unseal(sc, key, v)
	if err != nil {
		return nil, corrupt(name(), err)
	}
	return body, nil
}

// metaU64 reads an 8-byte meta value; a missing one is 0.
func (s *DB) metaU64(meta *bolt.Bucket, k []byte) (uint64, error) {
	v := meta.Get(k)
	if v == nil {
		return 0, nil
	}
	body, err := s.open(scopeMeta, k, v, func() string { return metaName(k) })
	if err != nil {
		return 0, err
	}
	if len(body) != 8 {
		return 0, corrupt(metaName(k), errMalformedBody)
	}
	return binary.BigEndian.Uint64(body), nil
}

// putMetaU64 writes an 8-byte meta value with its checksum.
func putMetaU64(meta *bolt.Bucket, k []byte, v uint64) error {
	return meta.Put(k, seal(scopeMeta, k, binary.BigEndian.AppendUint64(make([]byte, 0, 8+crcLen), v)))
}

// Append queues g as the next log record and returns its location: with
// DurabilitySync after the commit that covers it, with DurabilityBuffered
// at once. g must not be modified afterwards.
func (s *DB) Append(g *Group) (uint64, error) {
	p, err := s.AppendWith(g, nil)
	if err != nil {
		return 0, err
	}
	<-p.Done()
	return p.Result()
}

// AppendWith queues g as the next log record, and kvs to be written in the
// same transaction, and returns at once. With DurabilitySync the record's
// location is assigned when its commit starts, so a failed commit leaves
// no gap in the log; with DurabilityBuffered it is assigned now, and a
// commit that fails for lack of space is retried until it succeeds (new
// writes are refused meanwhile). Errors wrap ErrUnavailable when a retry
// later can succeed. The values of kvs must not be modified afterwards,
// nor g when KeepsGroups (it answers Group and FindEvent until its
// commit); otherwise g is encoded at once and is the caller's again when
// AppendWith returns.
func (s *DB) AppendWith(g *Group, kvs []KVWrite) (Pending, error) {
	buf, data := recordBuf(16 + crcLen + 48*len(g.Events) + 48*len(g.Cancels))
	data = appendGroup(data, g, s.idKey)
	it := &item{data: data, buf: buf, nev: len(g.Events) + len(g.Cancels)}
	if s.KeepsGroups() {
		it.group = g
	}
	for _, w := range kvs {
		it.kvs = append(it.kvs, w.record())
	}
	if s.opts.Durability == DurabilitySync {
		it.done = make(chan struct{})
	}
	if err := s.enqueue(it); err != nil {
		return Pending{}, err
	}
	return Pending{it}, nil
}

// KeepsGroups reports whether AppendWith keeps its group until the
// record's commit: with DurabilityBuffered, whose records are found in the
// queue before they are written.
func (s *DB) KeepsGroups() bool { return s.opts.Durability == DurabilityBuffered }

// recordBufs holds the buffers of encoded log records whose commit is
// over (bbolt reads a value only until its transaction ends), each kept
// with the pointer it is pooled by.
var recordBufs = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledRecord is the largest record buffer kept for reuse.
const maxPooledRecord = 256 << 10

// recordBuf returns a pooled buffer's pointer and the buffer, emptied,
// with room for n bytes.
func recordBuf(n int) (*[]byte, []byte) {
	bp := recordBufs.Get().(*[]byte)
	if cap(*bp) < n {
		*bp = make([]byte, 0, n)
	}
	return bp, (*bp)[:0]
}

// release gives the item's record buffer back for reuse, once nothing
// reads its data any more.
func (it *item) release() {
	if it.buf == nil {
		return
	}
	if cap(it.data) <= maxPooledRecord {
		*it.buf = it.data[:0]
		recordBufs.Put(it.buf)
	}
	it.buf, it.data = nil, nil
}

func (s *DB) enqueue(it *item) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Buffered writers wait while two full commits are queued: memory and
	// the loss window stay bounded when the disk falls behind.
	for it.done == nil && s.queued > 2*s.opts.MaxBatchSize && !s.closing && s.failed == nil && s.stalled == nil {
		s.cond.Wait()
	}
	if s.closed || s.closing {
		return ErrClosed
	}
	if s.failed != nil {
		return s.failed
	}
	if s.stalled != nil && it.done == nil {
		// A buffered write would be acknowledged with nowhere to go.
		return s.stalled
	}
	if s.opts.ReadOnly {
		return ErrReadOnly
	}
	s.items++
	it.seq = s.items
	if it.data != nil && it.done == nil {
		it.loc = s.nextLoc
		s.nextLoc++
		s.pending[it.loc] = it.group
	}
	for _, kv := range it.kvs {
		kv.seq = it.seq
		s.kvPend[[2]string{kv.ns, kv.key}] = *kv
	}
	s.queue = append(s.queue, it)
	s.queued += it.nev
	if len(s.queue) == 1 || s.queued >= s.opts.MaxBatchSize {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// commitLoop is the single writer: it takes what is queued and commits it
// in one transaction, until Close. After the first record arrives it waits
// up to MaxBatchDelay (FlushInterval when buffered) for a full batch.
//
// A commit that fails for lack of space (ENOSPC or EDQUOT on a write) is
// transient: with DurabilitySync its writers get an error wrapping
// ErrUnavailable, their locations are given back, and the next commit
// tries again; with DurabilityBuffered its records were acknowledged, so
// the batch stays at the head of the queue and is retried with backoff
// while new writes are refused. Any other failure (an I/O error, a failed
// fsync, after which the kernel may have dropped the dirty pages) is
// final for this handle: every later write returns an error wrapping
// ErrUnavailable and ErrFailed, and the owner reopens the file to find
// out what is durable.
func (s *DB) commitLoop() {
	defer close(s.done)
	delay := s.opts.MaxBatchDelay
	if s.opts.Durability == DurabilityBuffered {
		delay = s.opts.FlushInterval
	}
	backoff := time.Duration(0)
	for {
		s.mu.Lock()
		for len(s.queue) == 0 && !s.closing {
			s.mu.Unlock()
			<-s.wake
			s.mu.Lock()
		}
		if len(s.queue) == 0 {
			s.mu.Unlock()
			return
		}
		full := s.queued >= s.opts.MaxBatchSize || s.closing
		s.mu.Unlock()
		if backoff > 0 {
			time.Sleep(backoff)
		} else if delay > 0 && !full {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-s.wake:
			}
			t.Stop()
		}
		s.mu.Lock()
		n, events := 0, 0
		for n < len(s.queue) && (n == 0 || events+s.queue[n].nev <= s.opts.MaxBatchSize) {
			events += s.queue[n].nev
			n++
		}
		batch := append([]*item(nil), s.queue[:n]...)
		firstLoc := s.nextLoc
		for _, it := range batch {
			if it.data != nil && it.done != nil {
				it.loc = s.nextLoc
				s.nextLoc++
			}
		}
		failed := s.failed
		s.mu.Unlock()

		err := failed
		if err == nil {
			err = s.commit(batch)
		}
		s.mu.Lock()
		if err != nil && failed == nil {
			if transient(err) {
				if s.stalled == nil && time.Since(s.lastSpaceLog) > 10*time.Second {
					s.lastSpaceLog = time.Now()
					s.opts.Logger.Error("store commit failed for lack of space; writes are refused until space returns", "err", err)
				}
				err = fmt.Errorf("%w: %w", ErrUnavailable, err)
				if s.opts.Durability == DurabilityBuffered && !s.closing {
					s.stalled = err
					backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
					s.cond.Broadcast()
					s.mu.Unlock()
					continue // the batch stays queued
				}
				s.nextLoc = firstLoc
			} else {
				s.opts.Logger.Error("store commit failed; the file must be reopened", "err", err)
				s.failed = fmt.Errorf("%w: %w: %w", ErrUnavailable, ErrFailed, err)
				err = s.failed
			}
		}
		backoff, s.stalled = 0, nil
		s.queue = append(s.queue[:0], s.queue[n:]...)
		s.queued -= events
		for _, it := range batch {
			s.commits = it.seq
			if it.data != nil {
				delete(s.pending, it.loc)
			}
			it.release() // its commit is over
			for _, kv := range it.kvs {
				if p, ok := s.kvPend[[2]string{kv.ns, kv.key}]; ok && p.seq == kv.seq {
					delete(s.kvPend, [2]string{kv.ns, kv.key})
				}
			}
			if it.done != nil {
				// Only a waiting writer reads loc and err, after done is
				// closed; a buffered writer read its loc when it queued.
				if err != nil {
					it.loc = 0
				}
				it.err = err
				close(it.done)
			}
		}
		s.cond.Broadcast()
		s.mu.Unlock()
	}
}

// transient reports whether a commit failed for lack of space while
// writing pages, which a later commit can overcome. A failed fsync is
// never transient, whatever its errno.
func transient(err error) bool {
	var pe *os.PathError
	return (errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)) && errors.As(err, &pe)
}

// classify wraps an error of a direct write (meters, checkpoints) like the
// committer does and marks the store failed when the error is not
// transient.
func (s *DB) classify(err error) error {
	if err == nil {
		return nil
	}
	if transient(err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed == nil {
		s.failed = fmt.Errorf("%w: %w: %w", ErrUnavailable, ErrFailed, err)
		s.opts.Logger.Error("store write failed", "err", err)
	}
	return s.failed
}

func (s *DB) commit(batch []*item) error {
	start := time.Now()
	err := s.bolt.Update(func(tx *bolt.Tx) error {
		s.counters.observeSync(tx)
		log := tx.Bucket(bucketLog)
		log.FillPercent = 1.0 // keys only ever grow: pack pages full
		var key [8]byte
		for _, it := range batch {
			if it.data != nil {
				// seal writes the checksum into it.data's spare capacity
				// and leaves it.data as it was: a retried commit (perhaps
				// at another location) seals it again.
				binary.BigEndian.PutUint64(key[:], it.loc)
				if err := log.Put(key[:], seal(scopeLog, key[:], it.data)); err != nil {
					return err
				}
			}
			for _, kv := range it.kvs {
				if err := putKV(tx, kv); err != nil {
					return err
				}
			}
		}
		return nil
	})
	s.counters.committed(batch, start, err)
	return err
}

// Sync returns once everything queued before the call is committed.
func (s *DB) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	target := s.items
	for s.commits < target && s.failed == nil && s.stalled == nil {
		s.cond.Wait()
	}
	if s.failed != nil {
		return s.failed
	}
	return s.stalled
}

// Group returns the log record at loc, decoded, or nil when there is none.
func (s *DB) Group(loc uint64) (*Group, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if g, ok := s.pending[loc]; ok {
		s.mu.Unlock()
		return g, nil
	}
	s.mu.Unlock()
	var g *Group
	err := s.view(func(tx *bolt.Tx) error {
		k := u64(loc)
		v := tx.Bucket(bucketLog).Get(k)
		if v == nil {
			return nil
		}
		var err error
		g, err = s.readGroup(k, v)
		return err
	})
	return g, err
}

// FindEvent returns the event with identifier id in the log record at
// loc, when there is one: the record's checksum is checked and its events
// are scanned without being decoded, so nothing is allocated unless the
// event is found. The result's Identifier is empty (it is id).
func (s *DB) FindEvent(loc uint64, id string) (ev Event, found bool, err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Event{}, false, ErrClosed
	}
	if g, ok := s.pending[loc]; ok {
		s.mu.Unlock()
		for i := range g.Events {
			if g.Events[i].Identifier == id {
				ev = g.Events[i]
				ev.Identifier = ""
				return ev, true, nil
			}
		}
		return Event{}, false, nil
	}
	s.mu.Unlock()
	err = s.view(func(tx *bolt.Tx) error {
		var k [8]byte
		binary.BigEndian.PutUint64(k[:], loc)
		v := tx.Bucket(bucketLog).Get(k[:])
		if !isEvents(v) {
			return nil
		}
		if v[0] == kindIndexed {
			// The hash table answers for the identifiers the record does
			// not hold, with a check of its own checksum only; a hash that
			// matches sends us to the whole record.
			hashes, _, err := splitIndexed(v[:len(v)-crcLen])
			if err != nil {
				return corrupt(logName(loc), err)
			}
			if !mayHold(hashes, idhash.Sum(s.idKey, id)) {
				return nil
			}
		}
		body, err := s.open(scopeLog, k[:], v, func() string { return logName(loc) })
		if err != nil {
			return err
		}
		if ev, found, err = findEvent(body, id); err != nil {
			return corrupt(logName(loc), err)
		}
		return nil
	})
	return ev, found, err
}

// view runs fn in a read transaction, turning a bbolt panic on a damaged
// page into an ErrCorrupt error.
func (s *DB) view(fn func(*bolt.Tx) error) (err error) {
	// A page that lies past the end of a damaged file faults when read
	// through the mapping: make that a panic, recovered below.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrCorrupt, r)
		}
	}()
	return s.bolt.View(fn)
}

// Replay reads the log in location order. Records after location after,
// and cancellation records anywhere, are decoded and passed to full (g
// shares nothing with the file and may be kept). Event records at or
// before after are only scanned: ident receives each event's identifier
// and receipt time, in a slice valid during the call only. This is what
// Open needs: full replay after the checkpoint, identifiers before it.
//
// Every record's checksum is checked, and so is the log's continuity:
// locations are dense from the first stored one to the last, and the
// first is at most one past the checkpoint's location (checkpoints prune
// only what they cover). A damaged record or a missing location is an
// error wrapping ErrCorrupt that names it.
func (s *DB) Replay(after uint64, full func(loc uint64, g *Group) error, ident func(loc uint64, received int64, id []byte)) error {
	var records, bytes int64
	err := s.view(func(tx *bolt.Tx) error {
		ck, err := s.metaU64(tx.Bucket(bucketMeta), keyCheckpoint)
		if err != nil {
			return err
		}
		next := uint64(0) // the location the next record must have; 0 before the first
		c := tx.Bucket(bucketLog).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) != 8 {
				return fmt.Errorf("%w: log key of %d bytes", ErrCorrupt, len(k))
			}
			records, bytes = records+1, bytes+int64(len(v))
			loc := binary.BigEndian.Uint64(k)
			if err := checkContinuity(next, loc, ck); err != nil {
				return err
			}
			next = loc + 1
			if loc <= after && isEvents(v) {
				body, err := s.open(scopeLog, k, v, func() string { return logName(loc) })
				if err != nil {
					return err
				}
				if err := scanIdentifiers(body, func(received int64, id []byte) { ident(loc, received, id) }); err != nil {
					return corrupt(logName(loc), err)
				}
				continue
			}
			g, err := s.readGroup(k, v)
			if err != nil {
				return err
			}
			if err := full(loc, g); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		s.counters.logRecords.Store(records)
		s.counters.logBytes.Store(bytes)
	}
	return err
}

// errMissing is the cause corrupt names for a location absent from the
// log.
var errMissing = errors.New("missing from the log")

// checkContinuity reports a gap before the log record at loc: next is the
// location that must follow the previous record (0 at the first record),
// ck the checkpoint's location.
func checkContinuity(next, loc, ck uint64) error {
	switch {
	case next == 0 && loc > ck+1:
		return corrupt(logName(ck+1), errMissing)
	case next != 0 && loc != next:
		return corrupt(logName(next), errMissing)
	}
	return nil
}

// readGroup checks and decodes the log record v stored under key k.
func (s *DB) readGroup(k, v []byte) (*Group, error) {
	loc := binary.BigEndian.Uint64(k)
	body, err := s.open(scopeLog, k, v, func() string { return logName(loc) })
	if err != nil {
		return nil, err
	}
	g, err := decodeGroup(body)
	if err != nil {
		return nil, corrupt(logName(loc), err)
	}
	return g, nil
}

// SaveMeter stores m, replacing the meter with the same Seq. It commits
// and syncs before returning, whatever the durability.
func (s *DB) SaveMeter(m meter.Meter) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := s.check(); err != nil {
		return err
	}
	if s.opts.ReadOnly {
		return ErrReadOnly
	}
	return s.classify(s.bolt.Update(func(tx *bolt.Tx) error {
		k := u64(m.Seq)
		return tx.Bucket(bucketMeters).Put(k, seal(scopeMeters, k, data))
	}))
}

// Meters returns every stored meter.
func (s *DB) Meters() ([]meter.Meter, error) {
	var ms []meter.Meter
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeters).ForEach(func(k, v []byte) error {
			body, err := s.open(scopeMeters, k, v, func() string { return meterName(k) })
			if err != nil {
				return err
			}
			var m meter.Meter
			if err := json.Unmarshal(body, &m); err != nil {
				return fmt.Errorf("%w: %s: %v", ErrCorrupt, meterName(k), err)
			}
			ms = append(ms, m)
			return nil
		})
	})
	return ms, err
}

func (s *DB) check() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.closing {
		return ErrClosed
	}
	return s.failed
}

// Close commits everything queued and closes the file. It is safe to call
// twice.
func (s *DB) Close() error {
	s.mu.Lock()
	if s.closed || s.closing {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.closing = true
	s.cond.Broadcast()
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	<-s.done
	s.mu.Lock()
	s.closed = true
	failed := s.failed
	s.mu.Unlock()
	err := s.bolt.Close()
	if failed != nil {
		return failed
	}
	return err
}

// LastLoc returns the location of the latest Append (0 before the first).
func (s *DB) LastLoc() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextLoc - 1
}

// Size returns the file size in bytes. It is safe to call concurrently
// with every other method, Close included.
func (s *DB) Size() (int64, error) {
	fi, err := os.Stat(s.path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
