// Package sharedlogtest is an in-process sharedlog.Log for tests: several
// databases of one test process share one Shared, each through its own
// Client, as several processes would share a replicated log.
//
// # Data flow
//
// Append copies a record to the end of the Shared's slice and wakes every
// Read; Read delivers copies in order and waits for more. A test drives the
// failure cases the contract names: Truncate drops old records (a Read that
// needs them fails with sharedlog.ErrTruncated), SetAvailable(false) makes
// Append, Last and the snapshot methods fail with sharedlog.ErrUnavailable
// while Reads wait, as a client cut off from its servers does. Hold and
// Release keep Appends in flight; SetMaxRecord sets a record limit that
// the clients state (sharedlog.Limited) and enforce.
//
// # Ownership and concurrency
//
// A Shared and its Clients are safe for concurrent use. Records passed to
// Append are copied; a record passed to a Read callback is overwritten
// after the callback returns, so a reader that keeps one fails loudly.
package sharedlogtest
