package dashboard

import (
	"context"
	"errors"
	"time"

	"github.com/meterdb/meterdb"
)

var errPending = errors.New("dashboard: cross-customer queries are not available")

func (h *handler) totals(ctx context.Context, meterID string, start, end time.Time, g meterdb.Grouping) ([]meterdb.Summary, error) {
	return nil, errPending
}

func (h *handler) topCustomers(ctx context.Context, meterID string, start, end time.Time, n int) ([]customerUsage, error) {
	return nil, errPending
}
