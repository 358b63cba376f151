// Package dedupe remembers which event identifiers were accepted within a
// time window, in less than 5 bytes per identifier.
//
// The Index does not keep identifiers. Each accepted identifier leaves one
// 32-bit slot in a cuckoo table: a 14-bit tag of its hash and the 18-bit
// offset of its location (where the log keeps the event: a log record
// number) from the base of the slot's epoch. A tag match is only a
// candidate: the caller confirms it against what is stored at that
// location, so a collision costs one read and never drops a real event,
// and a duplicate is always caught.
//
// With Options.EventLocs (the in-memory database) a location names one
// event (the memory log's event index) and CommitEach gives each
// identifier of a batch its own. Slots are then a 9-bit tag and a 23-bit
// offset counted in single locations, never coarse: a shard's epoch ends
// when its offsets run out (1<<23 locations: 131 k identifiers of a
// shard, 8.4 M of the index), and an epoch is sized for no
// more identifiers than its offsets are expected to reach. A candidate's
// slot belongs to exactly one identifier, whose shard and tag it shares,
// so the top ImpliedBits bits of its hash are those of the candidate: the
// caller keeps only the rest and still compares whole fingerprints. The
// 9-bit tag gives a fresh identifier about 0.2 candidates (eight slots
// in each of about thirteen live epochs, 1 in 511 of them matching): each
// an in-memory comparison with one event.
//
// Data flow. Identifiers are inserted into the epoch being filled. An
// epoch is a table sized when it starts, for as many identifiers as the
// previous epoch received (the database starts a new epoch number a few
// times per window with SetEpoch; a table that fills early is followed by
// another). While the window fills, no earlier number sizes an epoch: a
// file-backed index's shard then keeps its one epoch's slots with the low
// 32 bits of their hashes (8 bytes each) and rebuilds the table twice as
// large when it reaches three quarters of its slots (or when its offsets
// cannot reach a location), with offsets as coarse as the locations per
// identifier so far call for, so that a lookup probes one table; a
// location beyond them (a gap) starts a new epoch instead, and the next
// number settles the table (shrunk to what it holds, the kept slots
// dropped). An EventLocs index grows by new epochs instead, each sixteen
// times larger. Buckets hold four slots; an identifier has two buckets, the
// first from its hash, the other from the first and its tag, so slots can
// move between their buckets without the identifier and a table stays
// reliable up to 96 % load. When the window moves past every location of
// an epoch (SetMinLoc), the whole table is dropped: there is no
// per-identifier expiry work. Where an epoch spans more locations than 18
// bits express, an offset stands for 2^shift consecutive locations and
// the caller confirms each. A lookup probes two buckets of every live
// epoch: with a 14-bit tag, well under 1 % of fresh identifiers meet a
// candidate.
//
// Identifiers whose events are still being committed are held in full in
// a small pending set per shard (an open-addressing table keyed by the
// hash already computed), which is what makes two concurrent events with
// one identifier collide.
//
// An identifier's hash is its keyed hash (internal/idhash: SipHash-1-3
// under Options.Key), which store format 3 keeps of every event under the
// same key, the file's: Open rebuilds the index from the stored hashes
// without reading a single identifier. Shard, tag and buckets come from
// the hash; without the key nobody can make identifiers share them.
//
// Open rebuilds the index with a PlannedLoader: the log's record headers
// give the identifiers per location range, and every range becomes one
// epoch per shard (file-backed indexes only). A range is read twice, in parallel with the others:
// the first pass counts its identifiers per shard from the stored hashes,
// the second sorts them by shard into a reused buffer of 8 bytes each
// (slot and bucket bits); each shard's table, sized for exactly its
// identifiers, is then filled from its run of the buffer while it fits
// in the cache. A Loader does the same from identifiers, without a plan,
// cutting each shard's identifiers into LoadEpochs epochs of equal counts.
//
// Concurrency. Index is striped over 64 shards by the top bits of the
// hash and is safe for concurrent use; the confirm callbacks run under a
// shard's lock and must not call the Index. A Loader is used by one
// goroutine before the Index is shared.
package dedupe
