package pipeline

import (
	"errors"
	"fmt"

	"github.com/meterdb/meterdb/aggregate"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/internal/stats"
	"github.com/meterdb/meterdb/store"
)

// RejectCodes are the Stripe codes rejections are counted under, by the
// index stats.MeterSnapshot.Rejected uses; the last, "other", takes any
// code not listed.
var RejectCodes = []string{
	event.CodeNoMeter, event.CodeArchivedMeter, event.CodeNoCustomer, event.CodeNoValue,
	event.CodeInvalidValue, event.CodeTooManyDigits, event.CodeTooFarInPast, event.CodeInFuture,
	event.CodeParameterMissing, event.CodeStringTooLong, event.CodeParameterInvalid, "other",
}

// counters are an Engine's event statistics. They outlive reopens.
type counters struct {
	meters *stats.Meters    // by meter Seq; 0 for events naming no meter
	batch  *stats.Histogram // inputs per Record call
}

func newCounters() counters {
	return counters{meters: stats.NewMeters(len(RejectCodes)), batch: stats.NewHistogram(stats.SizeBounds)}
}

// countAccepted counts the applied items of a group: one atomic add per
// run of items of the same meter.
func (e *Engine) countAccepted(items []aggregate.Item) {
	for i := 0; i < len(items); {
		j := i + 1
		for j < len(items) && items[j].Key.Meter == items[i].Key.Meter {
			j++
		}
		e.stats.meters.Get(items[i].Key.Meter).Accepted.Add(int64(j - i))
		i = j
	}
}

// countRejected counts the inputs of b that have an error, by meter and
// code. It runs only for batches with errors.
func (e *Engine) countRejected(st *state, b *Batch, errs []error) {
	for i, err := range errs {
		if err == nil {
			continue
		}
		name := ""
		if b.Usages != nil {
			name = b.Usages[i].Name
		} else {
			name = b.Events[i].Name
		}
		var seq uint64
		if m, ok := st.reg.Lookup(name); ok {
			seq = m.Seq
		}
		c := e.stats.meters.Get(seq)
		var ee *event.Error
		switch {
		case errors.Is(err, event.ErrDuplicate):
			c.Duplicate.Add(1)
		case errors.As(err, &ee):
			c.Reject(rejectCode(ee.Code))
		default:
			c.Reject(len(RejectCodes) - 1)
		}
	}
}

// rejectCode returns the index of code in RejectCodes.
func rejectCode(code string) int {
	for i, c := range RejectCodes[:len(RejectCodes)-1] {
		if c == code {
			return i
		}
	}
	return len(RejectCodes) - 1
}

// Ready returns nil when the engine can record: ErrClosed once Close has
// started, or an error wrapping store.ErrUnavailable while a write failure
// keeps writes refused (a reopen under way or failed, a buffered batch
// waiting for disk space). It does no I/O and does not wait for a Close
// or reopen in progress.
func (e *Engine) Ready() error {
	if !e.life.TryRLock() {
		// Only Close and reopen hold the lifecycle lock for writing.
		if e.reopening.Load() {
			return fmt.Errorf("%w: reopening the file after a write failure", store.ErrUnavailable)
		}
		return ErrClosed
	}
	defer e.life.RUnlock()
	if e.closed {
		return ErrClosed
	}
	st := e.st
	if err := st.writable(); err != nil {
		return err
	}
	if e.reopening.Load() {
		return fmt.Errorf("%w: reopening the file after a write failure", store.ErrUnavailable)
	}
	if st.file != nil {
		if err := st.file.Err(); err != nil {
			return fmt.Errorf("meterdb: %w", err)
		}
	}
	if e.repl != nil {
		e.repl.mu.Lock()
		err := e.repl.applyErr
		e.repl.mu.Unlock()
		if err != nil {
			return fmt.Errorf("%w: the replica cannot apply the shared log: %w", store.ErrUnavailable, err)
		}
	}
	return nil
}
