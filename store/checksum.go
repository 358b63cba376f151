package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Checksums (format 2, see FORMAT.md). Every stored record value is its
// body followed by a 4-byte big-endian CRC-32C (Castagnoli) of
//
//	scope · key · body
//
// where scope names the bucket ("log\x00", "agg\x00", "meters\x00",
// "meta\x00", or for a key-value record "aux\x00" · uvarint len(ns) · ns)
// and key is the record's bbolt key. A body moved under another key or
// into another bucket fails its check as surely as a flipped bit does.
// This file is the only place that computes or checks them.

// crcLen is the size of the checksum suffix.
const crcLen = 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// scope is the CRC-32C state after the scope bytes of one bucket (or
// key-value namespace).
type scope uint32

func newScope(name string) scope {
	return scope(crc32.Update(0, castagnoli, []byte(name+"\x00")))
}

var (
	scopeLog    = newScope("log")
	scopeAgg    = newScope("agg")
	scopeMeters = newScope("meters")
	scopeMeta   = newScope("meta")
	scopeAux    = newScope("aux")
)

// kvScope is the scope of the records of key-value namespace ns.
func kvScope(ns string) scope {
	var n [binary.MaxVarintLen64]byte
	c := crc32.Update(uint32(scopeAux), castagnoli, n[:binary.PutUvarint(n[:], uint64(len(ns)))])
	return scope(crc32.Update(c, castagnoli, []byte(ns)))
}

func (sc scope) sum(key, body []byte) uint32 {
	return crc32.Update(crc32.Update(uint32(sc), castagnoli, key), castagnoli, body)
}

// seal appends the checksum of (sc, key, body) to body and returns the
// extended slice; give body crcLen bytes of spare capacity to avoid a
// copy.
func seal(sc scope, key, body []byte) []byte {
	return binary.BigEndian.AppendUint32(body, sc.sum(key, body))
}

// Causes that corrupt reports after naming the record.
var (
	errChecksum      = errors.New("checksum mismatch")
	errMalformedBody = errors.New("truncated or malformed record")
	// errMalformed is what the decoders return for a record that does not
	// decode exactly.
	errMalformed = fmt.Errorf("%w: %w", ErrCorrupt, errMalformedBody)
	// errHashesChecksum is what the decoders return for an indexed record
	// whose identifier hashes fail their own checksum.
	errHashesChecksum = fmt.Errorf("%w: identifier hashes: %w", ErrCorrupt, errChecksum)
)

// unseal checks the checksum of a stored value v under key and returns
// its body, which aliases v. The error is errChecksum or errMalformedBody
// (too short), to be named by corrupt.
func unseal(sc scope, key, v []byte) ([]byte, error) {
	if len(v) < crcLen {
		return nil, errMalformedBody
	}
	body := v[:len(v)-crcLen]
	if binary.BigEndian.Uint32(v[len(body):]) != sc.sum(key, body) {
		return nil, errChecksum
	}
	return body, nil
}

// corrupt returns an ErrCorrupt error naming the damaged record, such as
// "store: corrupt data: log record 1234: checksum mismatch".
func corrupt(record string, cause error) error {
	switch {
	case errors.Is(cause, errMalformedBody):
		cause = errMalformedBody
	case cause == errHashesChecksum:
		return fmt.Errorf("%w: %s: identifier hashes: %w", ErrCorrupt, record, errChecksum)
	}
	return fmt.Errorf("%w: %s: %w", ErrCorrupt, record, cause)
}

// The names corrupt gives records.
func logName(loc uint64) string  { return fmt.Sprintf("log record %d", loc) }
func aggName(k []byte) string    { return fmt.Sprintf("aggregate record %x", k) }
func frozenName(k []byte) string { return fmt.Sprintf("frozen block %x", k) }
func meterName(k []byte) string {
	if len(k) == 8 {
		return fmt.Sprintf("meter record %d", binary.BigEndian.Uint64(k))
	}
	return fmt.Sprintf("meter record %x", k)
}
func kvName(ns string, k []byte) string { return fmt.Sprintf("key-value record %q/%q", ns, k) }
func metaName(k []byte) string          { return fmt.Sprintf("meta record %q", k) }
