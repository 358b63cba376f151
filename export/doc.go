// Package export writes per-customer usage of one meter over a period as
// CSV or NDJSON, for invoice runs and spreadsheets.
//
// Write takes a *meterdb.DB (opened read-only, or the live one of a
// server) and writes one row per customer per window: customer, meter id,
// event name, window start and end, value and count, each row equal to
// what meterdb.DB.Summaries returns for that customer and window. Handler
// serves the same rows over HTTP from the same Write, for a server that
// holds the database file; cmd/meterd mounts it at /v1/meterdb/export
// behind its API keys, and `meterd export` reads from either.
//
// Data flow: the customers with usage come from DB.Customers, a page at a
// time, and each customer's windows from DB.Summaries; rows are streamed
// as they are computed, so memory does not grow with the number of
// customers. The export is consistent per customer, not across customers:
// events recorded during an export may or may not be in it.
//
// Every function is safe for concurrent use.
package export
