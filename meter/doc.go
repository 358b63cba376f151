// Package meter defines meters: what an event name measures and how its
// events are aggregated.
//
// A Meter maps one event name to a formula (count, sum or last), the payload
// keys that carry the customer and the value, and an optional pre-aggregation
// window (hour or day). Meters mirror Stripe's billing.meter object field for
// field; see Params for the creation rules.
//
// A Registry holds every meter of a database. Reads (Lookup, ByID, List) are
// lock-free: they load an immutable snapshot that writers replace under a
// mutex (copy-on-write), so the ingest path never waits for a meter change.
// Registry methods are safe for concurrent use.
package meter
