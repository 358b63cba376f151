package meterdb_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
	"github.com/meterdb/meterdb/meter"
	"github.com/meterdb/meterdb/stripeapi"
)

// smallDisk mounts a tmpfs of size bytes and returns its directory. It
// needs root; without it the test skips, except in CI (CI=true), where it
// fails.
func smallDisk(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mounting a tmpfs (CI runs as root): %v", err)
		}
		t.Skipf("mounting a tmpfs needs root: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return dir
}

// fillDisk writes a file in dir until the filesystem is full and returns
// its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	// Small writes fill what a large one could not.
	for {
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
	}
	return path
}

// usageBatch returns n events of customer c worth 1 each, with
// identifiers prefix-0 to prefix-(n-1).
func usageBatch(prefix, c string, n int) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = event.Event{Name: "calls", Identifier: fmt.Sprintf("%s-%d", prefix, i),
			Payload: map[string]string{"stripe_customer_id": c, "value": "1"}}
	}
	return evs
}

// sumNow returns customer c's total on m over the hours around now.
func sumNow(t *testing.T, db *meterdb.DB, m meter.Meter, c string) int64 {
	t.Helper()
	now := time.Now().Truncate(time.Hour)
	s := total(t, db, m, c, now.Add(-2*time.Hour), now.Add(2*time.Hour))
	v, _ := s.Value.Int64()
	return v
}

// checkAcked checks that customer c's total on m is acked, before and
// after closing and reopening the database at path, and returns the
// reopened database.
func checkAcked(t *testing.T, db *meterdb.DB, path string, opts *meterdb.Options, m meter.Meter, acked int64) *meterdb.DB {
	t.Helper()
	if got := sumNow(t, db, m, "c"); got != acked {
		t.Fatalf("total %d, want the %d acknowledged events", got, acked)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := meterdb.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := sumNow(t, db, m, "c"); got != acked {
		t.Fatalf("total %d after reopening, want %d", got, acked)
	}
	return db
}

// TestDiskFull fills the filesystem under a database and checks that
// writes fail with a retryable error that records nothing and reserves no
// identifier, that the HTTP adapter answers them with 503 and
// Stripe-Should-Retry, and that once space returns the same requests
// succeed without a restart, and everything acknowledged survives a
// reopen, in both durability modes.
func TestDiskFull(t *testing.T) {
	for _, d := range []meterdb.Durability{meterdb.DurabilitySync, meterdb.DurabilityBuffered} {
		t.Run(fmt.Sprintf("durability=%d", d), func(t *testing.T) {
			dir := smallDisk(t, 2<<20)
			path := filepath.Join(dir, "full.db")
			opts := &meterdb.Options{Durability: d, FlushInterval: 5 * time.Millisecond, CheckpointInterval: time.Hour}
			db, err := meterdb.Open(path, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { db.Close() }()
			m := mustMeter(t, db, meter.Params{EventName: "calls", Formula: meter.Sum})
			acked := int64(0)
			record := func(evs []event.Event) error {
				errs, err := db.RecordBatch(ctx, evs)
				if err == nil {
					for _, e := range errs {
						if e != nil {
							t.Fatalf("event rejected: %v", e)
						}
					}
					acked += int64(len(evs))
				}
				return err
			}
			if err := record(usageBatch("before", "c", 100)); err != nil {
				t.Fatal(err)
			}
			if err := db.Sync(); err != nil {
				t.Fatal(err)
			}
			filler := fillDisk(t, dir)

			// Write until the store runs out of space: bbolt first uses the
			// free pages its file already has.
			var failed []event.Event
			var ferr error
			for i := 0; i < 2000 && ferr == nil; i++ {
				evs := usageBatch(fmt.Sprintf("full%d", i), "c", 200)
				if ferr = record(evs); ferr == nil && d == meterdb.DurabilityBuffered {
					// A buffered write is acknowledged before its commit;
					// Sync reports the commit's trouble.
					ferr = db.Sync()
				} else if ferr != nil {
					failed = evs
				}
			}
			if ferr == nil {
				t.Fatal("the store never ran out of space")
			}
			if !errors.Is(ferr, meterdb.ErrUnavailable) || !errors.Is(ferr, syscall.ENOSPC) {
				t.Fatalf("write on a full disk: %v, want ErrUnavailable wrapping ENOSPC", ferr)
			}
			if failed == nil {
				// Buffered: the batch that found the disk full was
				// acknowledged and waits for space; the next is refused.
				failed = usageBatch("refused", "c", 200)
				if err := record(failed); !errors.Is(err, meterdb.ErrUnavailable) {
					t.Fatalf("buffered write while the disk is full: %v, want ErrUnavailable", err)
				}
			}
			// Over HTTP: 503, Stripe's api_error shape, and a retry hint.
			h, err := stripeapi.NewHandler(db, &stripeapi.Options{APIKeys: []string{"sk_test_diskfull"}})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			form := url.Values{"event_name": {"calls"}, "identifier": {"http-1"},
				"payload[stripe_customer_id]": {"c"}, "payload[value]": {"1"}}
			post := func() *http.Response {
				req, _ := http.NewRequest("POST", srv.URL+"/v1/billing/meter_events", strings.NewReader(form.Encode()))
				req.Header.Set("Authorization", "Bearer sk_test_diskfull")
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				return res
			}
			if res := post(); res.StatusCode != 503 || res.Header.Get("Stripe-Should-Retry") != "true" {
				t.Fatalf("HTTP write on a full disk: %d, Stripe-Should-Retry %q; want 503 and true", res.StatusCode, res.Header.Get("Stripe-Should-Retry"))
			}

			// Space returns: the same requests succeed, nothing counted
			// twice, no restart.
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				err := record(failed)
				if err == nil {
					break
				}
				if !errors.Is(err, meterdb.ErrUnavailable) || time.Now().After(deadline) {
					t.Fatalf("retry after space returned: %v", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if res := post(); res.StatusCode != 200 {
				t.Fatalf("HTTP retry after space returned: %d", res.StatusCode)
			}
			acked++
			if err := db.Sync(); err != nil {
				t.Fatal(err)
			}
			db = checkAcked(t, db, path, opts, m, acked)
		})
	}
}
