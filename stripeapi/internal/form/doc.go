// Package form decodes v1 parameters, form-encoded in Stripe's bracket
// notation, and reads them as typed values.
//
// Decode adds the key=value pairs of a query string or an
// application/x-www-form-urlencoded body to a tree of Nodes: a[b][c]=v
// nests hashes, a[]=v appends to a list, a plain key given twice becomes a
// list, and expand[0]=v decodes as a hash with decimal keys (the list
// readers accept both). Keys and values must be valid UTF-8 after
// percent-decoding, keys at most MaxKeyLength bytes and MaxDepth brackets
// deep. Canonical encodes a tree deterministically, for idempotency to
// compare, and Encode writes it back in form encoding.
//
// A Params reads the tree: each reader marks what it reads and records
// the first problem (a *wire.Error naming the parameter); Done reports the
// first key nobody read (in sorted order) as parameter_unknown, else that
// problem. A tree and its readers belong to one request and are not safe
// for concurrent use.
package form
