// Package stripeapi serves the Stripe Billing Meters HTTP API (v1 and v2)
// from a meterdb.DB, so that stripe-go, the other Stripe SDKs and curl can
// create meters, record, stream and cancel usage events, and read event
// summaries and the error reports of the meter event stream.
//
// # Endpoints (v1)
//
//	GET  /v1/billing/meters                         list of billing.meter
//	POST /v1/billing/meters                         billing.meter
//	GET  /v1/billing/meters/{id}                    billing.meter
//	POST /v1/billing/meters/{id}                    billing.meter (display_name)
//	POST /v1/billing/meters/{id}/deactivate         billing.meter
//	POST /v1/billing/meters/{id}/reactivate         billing.meter
//	GET  /v1/billing/meters/{id}/event_summaries    list of billing.meter_event_summary
//	POST /v1/billing/meter_events                   billing.meter_event
//	POST /v1/billing/meter_event_adjustments        billing.meter_event_adjustment
//
// # Endpoints (v2)
//
//	POST /v2/billing/meter_events                   v2.billing.meter_event
//	POST /v2/billing/meter_event_adjustments        v2.billing.meter_event_adjustment
//	POST /v2/billing/meter_event_session            v2.billing.meter_event_session
//	POST /v2/billing/meter_event_stream             {} (session token, not an API key)
//	GET  /v2/core/events                            list of v2.core.event (error reports)
//	GET  /v2/core/events/{id}                       v2.core.event
//
// v2 bodies are JSON; JSON null reads as an absent parameter, unknown
// parameters are parameter_unknown, and an object that names a member
// twice is parameter_invalid ("Invalid payload[value]: given more than
// once."): keeping the last, as many JSON decoders do, would drop the
// first without a word. Timestamps are RFC 3339 (fractional
// seconds and offsets accepted; meterdb keeps whole seconds, so a
// returned timestamp is the given one truncated to the second) and are
// written in UTC with milliseconds ("2024-06-01T12:00:00.000Z"). Errors
// are {"error":{"type","code","message"}}, type invalid_request_error
// (api_error for 5xx, idempotency_error, rate_limit for 429s and
// temporary_session_expired), so that stripe-go returns
// *stripe.V2RawError, *stripe.RateLimitError or
// *stripe.TemporarySessionExpiredError; the offending parameter is named
// in the message, as v2 bodies have no param field. The meter event
// stream is served at the root like everything else: stripe-go's
// MeterEvents backend takes the same URL (stripe.NewBackendsWithConfig).
//
// Objects carry exactly Stripe's fields; v1 lists are
// {"object":"list","data":[…],"has_more":…,"url":"/v1/…"}, newest first,
// with limit (1 to 100, default 10), starting_after and ending_before.
//
// # Pipeline
//
// Every request takes one path: a fresh Request-Id header; routing;
// authentication (by API key, or by session token for the meter event
// stream; an unknown route is reported after API key authentication);
// admission (Options.MaxConcurrentRequests, Options.RateLimit);
// decoding and validation, which name the offending parameter; execution
// against the DB, through the idempotency layer for a POST with an
// Idempotency-Key; and one JSON writer for successes and errors alike.
// The shared steps live in handler.go (the pipeline), route.go (the
// route table), call.go (a request's state and execution), respond.go
// (the one writer), auth.go, idempotency.go, ratelimit.go and errors.go;
// each endpoint file serves one endpoint or one family of them
// (v1_meters.go, v1_events.go, v1_summaries.go, v2_events.go,
// v2_sessions.go, v2_stream.go, v2_core_events.go), with what is
// particular to each version in v1.go and v2.go; the stream's error
// reports live in report.go, report_list.go, report_store.go and
// report_index.go. The wire decoders live in
// stripeapi/internal: form (v1 form encoding and its parameter reader),
// jsonw (v2 JSON parameters, the meter event stream's single-pass
// decoder, the UTF-8 check of bodies, RFC 3339) and wire (the error they
// return, rendered here by each API version). Routing is net/http's:
// route.go holds the one route table, net/http patterns
// ("POST /v1/billing/meters/{id}/deactivate", read with r.PathValue) with
// each endpoint's options (session authentication, asynchronous
// idempotency records) and request reader; an http.ServeMux only matches,
// and the pipeline answers unknown routes and methods itself. Another
// API version plugs in as an apiVersion (its error shape), a request
// reader like formRequest (its decoding, which also gives the canonical
// parameters that idempotency compares), its rows in the route table and
// a case in apiFor.
//
// # Authentication
//
// The API key comes as "Authorization: Bearer <key>" or as the user name
// of Basic authentication ("Basic base64(<key>:)", or "Basic <key>").
// Options.APIKeys lists the accepted keys; without any, every key starting
// with sk_test_ is accepted and live keys are refused. A key starting with
// sk_live_ or rk_live_ makes objects report livemode true. One DB is one
// account: test and live keys see the same meters and usage, and livemode
// only follows the key of the request. Failures are 401 with Stripe's
// bodies: "You did not provide an API key. …" or "Invalid API Key
// provided: sk_test_****abcd", type invalid_request_error, no code.
//
// # Parameters
//
// v1 parameters are form-encoded, in the query string (GET, and also
// accepted on POST) and the body (POST, Content-Type
// application/x-www-form-urlencoded). Bracket keys nest hashes
// (default_aggregation[formula], payload[k], cancel[identifier]); list
// parameters (expand) accept expand[]=a, expand[0]=a and repeated
// expand=a. Problems are 400 invalid_request_error with param set:
//
//   - an unknown parameter, or a key not in bracket notation, is
//     parameter_unknown ("Received unknown parameter: x"); it is reported
//     before anything else, the first in sorted order;
//   - a missing required parameter is parameter_missing ("Missing required
//     param: x."); a nested one is named in bracket form
//     (customer_mapping[event_payload_key]);
//   - an integer that does not parse is parameter_invalid_integer;
//   - an empty value unsets an optional parameter, and is
//     parameter_invalid_empty for a required one;
//   - a value of the wrong shape (a hash for a string, a repeated string),
//     an unknown enum value or a limit outside 1 to 100 is
//     parameter_invalid; a too-long string is string_too_long;
//   - starting_after with ending_before is parameters_exclusive;
//   - a key or value that is not valid UTF-8 (after percent-decoding) is
//     parameter_invalid naming the parameter ("Invalid identifier: must
//     be valid UTF-8."). v2 JSON bodies and the meter event stream take
//     the same check on the raw body, before a decoder could turn a bad
//     byte into U+FFFD and make two identifiers collide.
//
// expand is accepted and ignored: nothing on these objects expands.
//
// # Behaviour where Stripe's is not documented
//
//   - Meter events are validated synchronously, like Stripe's v2
//     endpoint: the engine's rejections are 400s carrying its codes
//     (no_meter, archived_meter, payload_no_customer_defined,
//     payload_no_value_defined, payload_invalid_value,
//     meter_event_value_too_many_digits, timestamp_too_far_in_past,
//     timestamp_in_future, duplicate_meter_event) and the offending param.
//     Nothing is reported asynchronously.
//   - Values are whole numbers, negatives allowed, at most 15 digits;
//     decimals are rejected. Timestamps lie within the last 35×24 hours
//     and at most 5 minutes ahead.
//   - An event without identifier gets one: derived from the caller's
//     Idempotency-Key when there is one ("mev_" and 24 hex digits; stripe-go
//     sends a key with every POST), so that even a retry whose idempotency
//     record was lost meets the dedupe index instead of counting twice;
//     otherwise generated by the engine. Identifiers are unique within the
//     DB's dedupe window (24 hours by default); a repeat is 400
//     duplicate_meter_event.
//   - Event names are unique among all meters, inactive ones included: a
//     taken name is 400 meter_event_name_taken, param event_name.
//   - A count meter still shows value_settings {"event_payload_key":
//     "value"}; event_time_window is null when unset.
//   - An unknown meter id in the path is 404 resource_missing, param id,
//     "No such billing.meter: 'mtr_…'". An unknown list cursor is 400
//     resource_missing with param starting_after or ending_before.
//   - Deactivating an inactive meter and reactivating an active one return
//     it unchanged (idempotent). Reactivation clears
//     status_transitions.deactivated_at. updated changes with the display
//     name and the status. Inactive meters can be renamed and queried.
//     An update without display_name returns the meter unchanged.
//   - Event summaries: without value_grouping_window the answer is always
//     exactly one summary over [start_time, end_time), with
//     aggregated_value 0 when there were no events; with hour or day,
//     windows without events are omitted and the newest comes first.
//     start_time and end_time must be minute aligned (hour aligned, or at
//     00:00 UTC, with grouping), with start_time < end_time, both within
//     0 and 253402300799; otherwise 400 parameter_invalid naming the
//     parameter. There is no maximum range. aggregated_value is written
//     as the exact integer. "last" is the value of the event with the
//     greatest timestamp, the one received last among equal timestamps.
//     Cancelled events are excluded.
//   - Summary ids are "mtrusg_" ("mtrusg_test_" with test keys) followed
//     by an encoding of the window and the (meter, customer) series: the
//     same window always has the same id, and ids work as cursors. A
//     cursor that is not a summary id of the queried meter and customer is
//     400 resource_missing.
//   - Adjustments are applied synchronously and come back with status
//     complete. cancel[identifier] is required (parameter_missing "cancel"
//     or "cancel[identifier]"); the event must belong to the meter of
//     event_name and have been received within the last 24 hours.
//     Failures are 400 with param cancel[identifier] and the codes
//     meter_event_not_found, meter_event_cancel_window_expired and
//     meter_event_already_cancelled (event.CodeNotFound,
//     event.CodeCancelExpired, event.CodeAlreadyCancelled).
//
// # Idempotency
//
// A POST with an Idempotency-Key (at most 255 characters after trimming;
// longer is 400) executes once per API key and Idempotency-Key for
// Options.IdempotencyTTL (24 hours). The record, kept with DB.PutKV in the
// database file, holds the status and body of the first response; a
// repeat with the same parameters on the same endpoint gets them back, with
// a new Request-Id and the header "Idempotent-Replayed: true". Other
// parameters or another endpoint get 400 idempotency_error ("Keys for
// idempotent requests can only be used with the same parameters they were
// first used with. …"). While the first request executes, a repeat gets
// 409 idempotency_key_in_use, which stripe-go retries. Only successes are
// stored: an error response (a request that fails decoding or validation,
// one the engine rejects such as no_meter or duplicate_meter_event, 409,
// 429, 5xx) means nothing was done, and its key can be reused with
// corrected parameters, or after the missing meter is created. Keys on
// GET are ignored.
//
// On a replica of a shared log (meterdb.Options.Log) the processes serving
// one database agree on a key through DB.ClaimKV: the first claim in the
// log's order executes the request, and a repeat at any replica meanwhile
// waits (up to 10 seconds) for its record and replays it, or gets the 409.
// A claim whose process died frees its key after those 10 seconds, and an
// error response deletes the claim. The record is then stored before the
// response is sent.
//
// For meter events (v1 and v2) and the meter event stream the record is
// committed with the request's events, in the same commit: a request
// waits for one commit, and a crash keeps both or neither. A stream
// request none of whose events was accepted logs nothing; its record is
// written after the response, and until it is stored a repeat is answered
// from memory. A crash in between loses only the replay: the repeat's
// events carry the same identifiers (derived from the Idempotency-Key
// when the request has none), so they meet the same fate and none is
// counted twice.
//
// # Errors and limits
//
// Errors are {"error":{"type","code","message","param","doc_url"}}, with
// code, param and doc_url left out when empty; doc_url is set for codes
// Stripe documents. An unknown route or method is 404 "Unrecognized
// request URL (GET: /v1/x).", checked after authentication. Untrusted
// input is bounded and its excess is always a 4xx: bodies over
// Options.MaxBodyBytes (1 MiB) are 413; more than Options.MaxParams (500)
// form fields, keys over 500 bytes or nested deeper than four brackets,
// payloads over 50 keys or with keys or values over 100 characters,
// event_name and identifier over 100, display_name over 250, customer,
// cursors and expand entries over 5000 are 400 (a path id over 5000 is
// 404, an API key over 255 is 401); a request beyond
// Options.MaxConcurrentRequests (256) in flight waits up to
// Options.AdmissionWait (1 s) for a slot, its body already read (a
// client that stalls mid-body holds a connection, never a slot; the
// bodies being read are bounded instead by Options.MaxBodyMemory, 64 MiB
// of bytes received, all requests together, and a body that finds it
// spent is 429 rate_limit); one that still
// finds none, or exceeds the per-key Options.RateLimit, is 429 rate_limit
// with Stripe-Should-Retry: true, so that stripe-go retries it. A request
// line and headers over Options.MaxHeaderBytes (32 KiB) are 431; an
// http.Server answers larger headers than its own MaxHeaderBytes, and
// request lines it cannot parse (a bad percent escape in the path), in
// plain text before the handler runs, so give it a limit above the
// handler's. A 401 closes the connection. A closed DB gives 503 api_error;
// so does a write the database could not store (a full disk, or its file
// being reopened after an I/O error: meterdb.ErrUnavailable), with
// Stripe-Should-Retry: true, since nothing was recorded and the same
// request, retried, is recorded once; any other failure 500 api_error,
// logged with its request id.
//
// Responses also carry Cache-Control: no-cache, no-store, echo the
// request's Idempotency-Key and Stripe-Version, and any Stripe-Version,
// Stripe-Account or Stripe-Context request header is otherwise ignored.
//
// # Mounting
//
// NewHandler's handler serves the paths above from the root of whatever
// it is given; under a prefix, wrap it in http.StripPrefix. stripe-go
// (v85) needs the API at the root of its base URL: it rejects responses
// to paths that do not start with /v1 or /v2, so point it at a host or
// port whose root serves the handler.
//
// The handler is safe for concurrent use. It does not own the DB: close
// the DB after the server stopped calling the handler (http.Server's
// Shutdown returns once requests in flight are answered).
//
// # Behaviour of v2 where Stripe's is not documented
//
//   - POST /v2/billing/meter_events validates synchronously with the codes
//     of v1 (no_meter, archived_meter, duplicate_meter_event,
//     payload_no_customer_defined, payload_no_value_defined,
//     payload_invalid_value, meter_event_value_too_many_digits,
//     timestamp_too_far_in_past, timestamp_in_future), all 400. An event
//     without identifier gets one derived from the Idempotency-Key, as in
//     v1. Missing or empty event_name or payload is parameter_missing or
//     parameter_invalid_empty; a payload value that is not a string is
//     parameter_invalid.
//   - Adjustments: event_name and type are required (parameter_missing);
//     a type other than cancel, a missing cancel object or an empty
//     cancel.identifier is 400 invalid_cancel_configuration. Cancellation
//     is synchronous, so the adjustment comes back with status complete and
//     an id "mtr_event_adj_…"; an unknown, expired or already cancelled
//     event fails as in v1 (meter_event_not_found,
//     meter_event_cancel_window_expired, meter_event_already_cancelled).
//   - Sessions: POST /v2/billing/meter_event_session takes no parameters
//     and returns a session ("mes_…") whose authentication_token
//     ("mets_…") is valid for SessionTTL (15 minutes) from created. The
//     session is stored in the database (DB.PutKV, keyed by a hash of the
//     token, expiring with it), so it survives a restart. It carries the
//     livemode and the idempotency and rate-limit scope of the API key
//     that created it. The stream accepts only session tokens: an API key,
//     a missing or unknown token is 401 invalid_request_error; an expired
//     one is 401 {"type":"temporary_session_expired",
//     "code":"billing_meter_event_session_expired"}, with a doc_url.
//   - Stream shape: a body that is not a JSON object, events missing,
//     null or empty, a member given twice (events, an event's field or a
//     payload key), more than MaxStreamEvents (100) events, anything after
//     the top-level object, an event that
//     is not an object or lacks event_name or payload (or has an empty
//     payload), strings over Stripe's limits or a malformed timestamp is
//     400 for the whole request (parameter_missing, parameter_invalid,
//     string_too_long, naming events[i][…]); nothing is recorded.
//   - Stream validation is what Stripe calls asynchronous: the events of a
//     well-formed request are recorded as one group, and those the engine
//     rejects are not counted. Each failure goes into an error report,
//     which is stored (for ErrorReportTTL, 30 days) before the request is
//     acknowledged with {}, in the same commit as the request's accepted
//     events (so a crash never keeps the events and loses their report),
//     or in a commit of its own: when none was accepted, before the
//     handler's first report has opened the report store, when a meter
//     was created while the request was recorded, and on a replica of a
//     shared log (where records that follow the events are a second
//     change anyway, as DB.RecordBatchKV describes, whose failure would
//     fail the request): a
//     v1.billing.meter.no_meter_found event for unknown event names and
//     one v1.billing.meter.error_report_triggered event per meter for the
//     rest, with related_object the meter. The codes are Stripe's
//     asynchronous ones: no_meter, archived_meter,
//     meter_event_no_customer_defined, meter_event_invalid_value (a bad or
//     a missing value), meter_event_value_too_many_digits,
//     timestamp_in_future and timestamp_too_far_in_past. Every failed event
//     is a sample (error_message and request.identifier). Reports are per
//     request, so validation_start and validation_end bound that request,
//     and reason.request names its Request-Id and Idempotency-Key. Should
//     a report's own commit fail once the events are committed, the
//     request is still answered 200 {} (its valid events counted; a 5xx
//     would say otherwise) and the failure is logged at Error level with
//     the request id.
//   - Duplicates in the stream: an event whose identifier was already
//     recorded within the dedupe window is not counted again, and is
//     reported under the code duplicate_meter_event (meterdb's addition to
//     Stripe's open list), so that a reused identifier never loses usage
//     silently. A retry with the same Idempotency-Key replays {} and
//     reports nothing; events without identifier get one derived from the
//     Idempotency-Key and their position, so such a retry, even one whose
//     idempotency record was lost, counts them once. A request none of
//     whose events was accepted, whose reports are identical to reports
//     stored in the last 24 hours (same types, meters, codes and samples:
//     a client retrying a batch already recorded, under new
//     Idempotency-Keys), stores no new report, so that retries add
//     nothing to the file. (A report committed with accepted events is
//     stored without that check, which would read the database inside the
//     commit.)
//   - The report store is bounded: past Options.MaxErrorReportBytes (64
//     MiB of stored records) the oldest reports are dropped first, down to
//     90% of the bound, whatever their age; otherwise reports expire after
//     ErrorReportTTL. Index records, written in the same commit as each
//     report (DB.WriteKV), serve types, object_id and created filters:
//     a filtered page reads the reports it returns, not every report
//     stored. Reports stored by earlier versions are indexed on the
//     handler's first use of the store.
//   - Error reports are read with ListErrorReports and GetErrorReport, or
//     as v2 thin events: GET /v2/core/events (newest first; limit 1 to
//     100, default 10; object_id, the meter id; types; created[gt|gte|lt|
//     lte] in unix seconds or RFC 3339; the next page through
//     next_page_url) and GET /v2/core/events/{id} (404 not_found when
//     unknown), which stripe-go's V2CoreEvents decodes into
//     *stripe.V1BillingMeterErrorReportTriggeredEvent and
//     *stripe.V1BillingMeterNoMeterFoundEvent. A page (up to 100 reports
//     of up to 100 samples, megabytes of JSON) is written as it is read,
//     a few reports at a time, each read in its own transaction, after
//     the request released its slot: a client that does not read pins a
//     few reports' worth of memory until the server's WriteTimeout drops
//     it. Event ids are "evt_"
//     followed by 32 characters; every key sees every report, livemode
//     being the mode of the session that streamed the events.
//   - Idempotency works as in v1; for v2 the parameters compared are the
//     request body's bytes (stripe-go's retries send the same bytes). For
//     the stream, as for meter events, the key's record is committed with
//     the request's events, so a crash keeps both or neither. A request
//     none of whose events was accepted logs nothing: its record is stored
//     after the response is sent, and until then a repeat gets the
//     response from memory.
//
// # The stream path
//
// The stream decoder (internal/jsonw) makes one pass over the body
// without reflection, reusing pooled buffers, events and payload maps; it
// allocates only the strings the engine may keep (identifiers and payload
// values). A request whose every event has an active meter, its customer
// and a valid value is then recorded as typed usage with one
// DB.RecordUsage call, the engine reading no payload map; the pipeline's
// group commit gathers concurrent requests into one commit. Measured
// against recording them in combined batches of several requests (a
// leader/follower combiner, since removed), the direct call served 82–96
// k events/s against 64–85 k in four paired runs, with the same process
// CPU and 12% fewer bytes allocated per request (go test -run '^$' -bench
// '^BenchmarkStream$/client=raw/workers=16' -benchtime 6000x ./bench,
// load average 14–20 on 2 cores). Any other request takes the map path,
// whose validation reports each problem with its code and param: its
// events are recorded with one DB.RecordBatch call. Either way a request
// waits for one commit, which holds its Idempotency-Key's record too, and
// a client that goes away stops the request's wait for its commit, not
// the commit (its events may still be recorded). Error reports, when
// there are any, cost a second write.
//
// # Statistics
//
// Stats(h) returns a handler's counters as a value: responses by route
// pattern and status code, a latency histogram per route, 429s, and the
// stream's events by outcome. Routes are the handler's patterns (plus
// "other"), never raw paths, so an exporter's label values stay bounded;
// package metrics exports them to Prometheus.
//
// Not served: Stripe's one-concurrent-call-per-customer-per-meter rule and
// too_many_concurrent_requests; asynchronous error reports for v1 and the
// synchronous v2 endpoint (their validation is synchronous); customer
// existence (meter_event_customer_not_found), as a DB has no customers.
package stripeapi
