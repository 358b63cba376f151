// Package replica implements sharedlog.Log on a NATS JetStream stream, so
// that several meterdb processes share one replicated log and form one
// database.
//
// # Data flow
//
// Open connects to the NATS servers and creates, if missing, the stream
// Options.Stream (default METERDB: subject <stream>.rec, file storage,
// Options.Replicas copies, limits retention by Options.MaxAge) and the
// object store bucket <stream>_SNAPSHOTS with the same replicas; an
// existing stream is checked (its only subject must be <stream>.rec and
// its retention must be limits) and used as it is configured.
//
// Append publishes one record as one message with a message id unique to
// the Log (Nats-Msg-Id) and waits for the stream's acknowledgement, which
// JetStream sends once a quorum of the replicas stored the message; the
// stream sequence is the record's position. A publish that times out or
// finds no leader is sent again with the same id, so the stream's dedupe
// window stores it once. Read delivers the records after a position
// through an ordered consumer and checks every sequence (no repeat, no
// hole); Last is the stream's last sequence from its leader, asked again
// like a publish while the stream has no leader. Snapshots
// are objects of the bucket, named by the position they cover, with the
// position and the time in their metadata; the newest wins. They are
// listed and read through the leader of the bucket's stream, so a
// snapshot stored is seen at once by every process (the object store's
// own listing and reader use a consumer on any replica, which may lag).
//
// # Ownership and concurrency
//
// A Log owns its NATS connection. Its methods are safe for concurrent
// use: many goroutines Append while others Read. The record passed to
// Append is not retained; the record passed to a Read callback is valid
// only during the call. Close ends the Reads and Appends in flight,
// waits for them and closes the connection; every method returns
// ErrClosed after it.
//
// # Errors
//
// Every request to the servers waits at most Options.AttemptTimeout for
// its answer, whatever ctx allows: a request in flight when its server
// died is never answered. Requests that fail so, or for want of a
// connection, a responder or a stream leader, are made again until
// Options.AppendTimeout has passed since the call began. Errors a later
// retry may overcome (no connection, no responders, no stream leader, a
// server offline, a timeout) wrap sharedlog.ErrUnavailable; a ctx that
// ends gives an error wrapping ctx.Err(); a stream that dropped records a
// reader needs gives sharedlog.ErrTruncated.
//
// # Durability: JetStream's sync_interval
//
// An acknowledged record is stored by a quorum of the stream's replicas,
// but "stored" means written to the servers' files, not fsynced: by
// default a nats-server fsyncs its JetStream files every two minutes
// (the server option sync_interval, default 2m). Losing one server, or a
// minority, loses nothing, since the others hold the record. A power cut
// of the whole cluster at once (one rack, one power feed, one cloud zone
// holding all replicas) can lose the records acknowledged since the last
// fsync of a quorum: up to sync_interval of writes, which the replicas
// that applied them will then hold while the stream does not (a replica
// that finds its position beyond the stream's last sequence gets
// ErrTruncated and must bootstrap again). To close that window, run the
// servers with
//
//	jetstream { sync_interval: always }
//
// which fsyncs every message before the acknowledgement, at a cost in
// throughput (meterdb writes group-committed records, so the count of
// fsyncs stays that of its batches), or spread the replicas over
// independent power domains.
//
// # Retention sizing
//
// The stream keeps records for MaxAge (default 72 h). A replica restarts
// from its local checkpoint and reads the stream after the checkpoint's
// position; if the stream no longer holds that position, it bootstraps
// from the newest snapshot and reads after the snapshot's position. For
// that to work:
//
//	MaxAge ≥ snapshot interval + longest replica outage you want to
//	         recover without a bootstrap, and in any case
//	MaxAge > snapshot interval + the time a bootstrap takes
//
// so that the records after the newest snapshot are always still held.
// meterdb's dedupe window (24 h) and cancel window (24 h) are kept in the
// database state that checkpoints and snapshots carry, so they add to
// MaxAge only for a replica that restarts from a checkpoint older than
// both; the default 72 h covers a 24 h window, a snapshot interval of up
// to a day and a day of outage. Disk needed on each of the R servers:
// MaxAge times the record rate times the record size (a batch of 1,000
// events is one record, and the batches of concurrent writers of one
// database are combined into records of up to MaxRecord bytes), plus two
// snapshots in the bucket.
//
// The message id dedupe window (DuplicateWindow, default 2 min) only has
// to cover Append's own retries (AppendTimeout, default 15 s); meterdb's
// event dedupe does not depend on it.
//
// # Scaling past one stream
//
// Every replica applies the whole stream: dedupe and cancellation are
// keyed by event identifier across customers, so a replica that held only
// some customers could neither dedupe nor cancel. The next step, when one
// stream's rate is not enough, is to partition by customer: N streams (or
// subjects <stream>.rec.<k>), k = hash(customer) mod N, each with its own
// sequence and snapshots, and a replica applying only its partitions.
// That needs three changes of scope: dedupe by (customer, identifier)
// instead of identifier alone, so that a duplicate always lands in the
// partition of its original; Cancel, which names only an identifier,
// either given the customer or broadcast to every partition (each drops
// it unless it holds the event); and meters, few and small, on one
// separate stream that every replica applies, with each partition's
// records naming the meter version they were validated against.
package replica
