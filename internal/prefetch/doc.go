// Package prefetch asks the processor to bring a cache line in ahead of
// its use.
//
// The write path touches a few cache lines per event that no earlier
// event brought in (an hour bucket among millions, a dedupe table slot).
// Loaded one after the other, each costs a full memory latency; a batch
// that first names the lines of its next events, then works on them,
// overlaps those latencies. Line is a hint: it never faults, reads no
// value and changes nothing a program can observe, so a caller may pass
// any address, even one that a concurrent writer is changing. On
// processors without an instruction for it (every architecture but amd64
// and arm64) it does nothing.
package prefetch
