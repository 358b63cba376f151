// Package metrics exports a meterdb database, and optionally its Stripe API
// handler, as Prometheus metrics.
//
// NewCollector returns a prometheus.Collector for one *meterdb.DB. At each
// scrape it takes a value snapshot (DB.Stats, and stripeapi.Stats for the
// handler) and turns it into constant metrics: nothing is counted twice
// and nothing runs between scrapes. Register it on the application's own
// registry:
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(metrics.NewCollector(db, &metrics.Options{Handler: h}))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Metric names follow the Prometheus conventions: a meterdb_ prefix, base
// units (seconds, bytes), _total for counters. Counters restart at zero
// when the database is opened. Label values are bounded: meter is a meter
// id (or "unknown" for events whose event name matches no meter), code a
// Stripe error code from a fixed set, route one of the handler's route
// patterns (or "other"); no label carries a customer.
//
// This package is the only one of meterdb that imports client_golang: the
// engine itself depends on no metrics library.
//
// The metrics:
//
//	meterdb_events_total{meter,outcome}            counter  outcome: accepted, rejected, duplicate, cancelled
//	meterdb_events_rejected_total{meter,code}      counter  rejections (duplicates aside) by Stripe error code
//	meterdb_batch_events                           histogram events per RecordBatch call (Record: 1)
//	meterdb_commit_events                          histogram events and cancellations per group commit
//	meterdb_commit_duration_seconds                histogram time of a group commit's transaction
//	meterdb_fsync_duration_seconds                 histogram time a commit spends writing and syncing the file
//	meterdb_checkpoint_duration_seconds            histogram time of a checkpoint
//	meterdb_last_checkpoint_timestamp_seconds      gauge    time of the last checkpoint (absent before the first)
//	meterdb_log_records, meterdb_log_bytes         gauge    records and bytes in the file's event log
//	meterdb_file_bytes                             gauge    size of the database file
//	meterdb_dedupe_identifiers, meterdb_dedupe_slots gauge  identifiers in the dedupe index, and its slots
//	meterdb_meters, meterdb_series                 gauge    meters; (meter, customer) pairs with data
//	meterdb_buckets{kind}                          gauge    kind: hour, day, minute (cells), raw (entries)
//	meterdb_memory_bytes                           gauge    estimated heap held by the engine
//	meterdb_durability_info{mode}                  gauge    1; mode: sync, buffered or memory
//	meterdb_write_failed                           gauge    1 while writes are refused after a write failure, else 0
//	meterdb_reopens_total                          counter  reopens of the file after a write failure
//	meterdb_replica_applied_position               gauge    shared log position this replica applied
//	meterdb_replica_log_position                   gauge    the shared log's newest position at the scrape
//	meterdb_replica_lag_records                    gauge    records this replica has still to apply
//	meterdb_replica_applied_stamp_age_seconds      gauge    time since the last applied record was written
//	meterdb_replica_error                          gauge    1 while the log cannot be asked or applied, else 0
//	meterdb_http_requests_total{route,code}        counter  responses by route and status code
//	meterdb_http_request_duration_seconds{route}   histogram time from a request's arrival to its response
//	meterdb_http_throttled_total                   counter  429 responses (admission and rate limits)
//	meterdb_stream_events_total{outcome}           counter  meter event stream events: accepted, rejected
//
// The file metrics (commit, fsync, checkpoint, log, file) are absent for
// an in-memory database, the http and stream metrics without a
// handler, and the replica metrics without Options.Log; the log and lag
// positions are absent while the shared log cannot be asked.
package metrics
