// Package jsonw decodes the JSON bodies of the Stripe API's v2 endpoints:
// a parameter reader for JSON objects, the single-pass decoder of the
// meter event stream, the UTF-8 check of raw bodies, the check for
// repeated object members and RFC 3339 parsing.
//
// Bodies are checked before they are decoded: CheckUTF8 rejects invalid
// UTF-8 naming the first parameter that holds a bad byte (a decoder would
// turn the byte into U+FFFD and make two identifiers collide), and
// RepeatedMember rejects an object that names a member twice (keeping the
// last, as encoding/json does, would drop the first without a word).
// Every problem is a *wire.Error naming the parameter.
//
// Params reads the members of a JSON object as typed parameters; JSON
// null reads as absent. Each reader marks what it reads and records the
// first problem; Done reports the first unread member (sorted) as
// parameter_unknown, else that problem.
//
// Batch.Decode reads {"events":[…]} of the meter event stream in one pass
// over the body, without reflection, into pooled Batches whose events and
// payload maps are reused: it allocates only the strings the engine may
// keep (identifiers, payload values; event names are interned in a
// Names cache and the default payload keys are constants). Its
// specification is the same rules written with encoding/json (refDecode
// in the tests), which FuzzStreamDecode compares it with. The single pass
// stays because its profile justifies it: BenchmarkStreamDecode, 100
// events of 36-character identifiers, measured 2.1–2.3 µs and 2.9
// allocations per event against 54–58 µs and 127 allocations per event
// for encoding/json with the repeated-member check (go test -run '^$'
// -bench StreamDecode -benchtime 2000x -count 2
// ./stripeapi/internal/jsonw, load average 22 on 2 cores; the ratio, not
// the absolute figures, is what carries over).
//
// A Batch belongs to one request until Release; Names is safe for
// concurrent use; everything else keeps no state.
package jsonw
