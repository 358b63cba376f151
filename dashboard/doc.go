// Package dashboard serves a usage dashboard for a meterdb.DB in the
// browser: meters with their totals, usage over time per meter and per
// customer, recent error reports of the meter event stream, the ingest
// rate and store health.
//
// # Data flow
//
// NewHandler returns an http.Handler. Each page is built on request from
// the DB and rendered on the server with html/template; charts are inline
// SVG, one bar per window with usage. The style sheet, icon and templates
// are embedded (go:embed): a page loads nothing but its own style sheet and
// icon from the same handler, and runs no script.
//
//   - The overview ("/") lists every meter with its total over all
//     customers for today (UTC), the last 7 and the last 30 days
//     (DB.Totals); the newest error reports (stripeapi.ListErrorReports);
//     the ingest rate, the difference of Stats().EventsAccepted between
//     this page load and an earlier one (about a minute before, when the
//     page's self-refresh allows), divided by the time between them; and
//     the store's Stats.
//   - A meter page ("/meters/{id}") charts the meter's total per hour for
//     48 hours and per day for 35 days (DB.Totals with grouping), and lists
//     its top customers of the last 30 days (DB.TopCustomers), linked to
//     their pages.
//   - A customer page ("/customers/{customer}") charts the customer's usage
//     of each meter per hour and per day: DB.Summaries, the numbers the
//     Stripe API's event summaries give for the same windows.
//
// Every number is rendered exactly (Int128 in decimal) and carries
// machine-readable attributes: data-value on values, data-count on event
// counts, data-window-start and data-window-end (unix seconds) on windows.
//
// # Authentication
//
// With Options.APIKeys, a request needs one of the keys: in an
// Authorization header (Bearer or Basic, as the Stripe API takes it; for
// scripts), or through a session. The login form (POST /login) takes a key
// and sets an HttpOnly, SameSite=Strict cookie (Secure over TLS) holding a
// token signed with HMAC-SHA256 under Options.SessionKey: an expiry and a
// random nonce, never the key. Every form carries a CSRF token, an HMAC of
// the session's nonce (or, for the login form, of a nonce in a short-lived
// login cookie), checked on POST. Logout revokes the token. Other requests
// are redirected to the login form. Without keys the dashboard is open, as
// the Stripe API handler is on a loopback address.
//
// # Concurrency
//
// The handler is safe for concurrent use. It holds no lock while it reads
// the DB; the ingest-rate samples and revoked sessions are guarded by their
// own mutexes.
package dashboard
