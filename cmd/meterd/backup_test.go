package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v85"
	bolt "go.etcd.io/bbolt"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/event"
)

// runCmd runs the meterd binary and returns its exit status and output.
func runCmd(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("%s %q: %v", bin, args, err)
	return 0, ""
}

// TestBackupAndVerify takes a backup from a running meterd while clients
// record events, checks that it verifies clean and holds every event
// acknowledged before the backup started, and that meterd verify fails a
// copy with a flipped byte.
func TestBackupAndVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs meterd")
	}
	dir := t.TempDir()
	bin := buildMeterd(t)
	dbPath := filepath.Join(dir, "live.db")
	ctx := context.Background()
	d := startDaemon(t, bin, dbPath)
	sc := client(d.addr, "sk_test_e2e")
	if _, err := sc.V1BillingMeters.Create(ctx, &stripe.BillingMeterCreateParams{
		DisplayName: stripe.String("requests"), EventName: stripe.String("requests"),
		DefaultAggregation: &stripe.BillingMeterCreateDefaultAggregationParams{Formula: stripe.String("count")},
	}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client(d.addr, "sk_test_e2e")
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%d", w, i)
				if _, err := c.V1BillingMeterEvents.Create(ctx, &stripe.BillingMeterEventCreateParams{
					EventName: stripe.String("requests"), Identifier: stripe.String(id),
					Payload: map[string]string{"stripe_customer_id": "cus_load"},
				}); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
		}()
	}
	waitFor := func(n int) {
		for {
			mu.Lock()
			k := len(acked)
			mu.Unlock()
			if k >= n {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor(200)

	// The file is locked by the server: reading it directly is refused
	// with a pointer to -url.
	if code, out := runCmd(t, bin, "backup", "-db", dbPath, "-out", filepath.Join(dir, "direct.db")); code != 1 || !strings.Contains(out, "-url") {
		t.Fatalf("backup of a served file without -url: exit %d\n%s", code, out)
	}
	// The endpoint wants a key.
	resp, err := http.Get("http://" + d.addr + backupPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("backup without a key: %s", resp.Status)
	}

	mu.Lock()
	before := append([]string(nil), acked...)
	mu.Unlock()
	hot := filepath.Join(dir, "hot.db")
	code, out := runCmd(t, bin, "backup", "-db", dbPath, "-out", hot, "-url", "http://"+d.addr, "-api-key", "sk_test_e2e")
	if code != 0 || !strings.Contains(out, "verified") {
		t.Fatalf("hot backup: exit %d\n%s", code, out)
	}
	waitFor(len(before) + 100) // writes went on during and after the backup
	close(stop)
	wg.Wait()
	if code, out := runCmd(t, bin, "verify", "-db", hot); code != 0 || !strings.Contains(out, "ok\n") {
		t.Fatalf("verify of the hot backup: exit %d\n%s", code, out)
	}
	if code, out := runCmd(t, bin, "backup", "-db", dbPath, "-out", hot, "-url", "http://"+d.addr, "-api-key", "sk_test_e2e"); code != 1 || !strings.Contains(out, "exists") {
		t.Fatalf("backup over an existing file: exit %d\n%s", code, out)
	}
	d.stop(t)

	// Every event acknowledged before the backup started is in it.
	db, err := meterdb.Open(hot, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range before {
		_, err := db.Record(ctx, event.Event{Name: "requests", Identifier: id, Payload: map[string]string{"stripe_customer_id": "cus_load"}})
		if !errors.Is(err, event.ErrDuplicate) {
			t.Fatalf("event %s, acknowledged before the backup, is not in it: %v", id, err)
		}
	}
	db.Close()
	t.Logf("%d events acknowledged before the backup, %d in all", len(before), len(acked))

	// With the server stopped, the file can be copied directly; a flipped
	// byte in a log record of the copy fails verification.
	cold := filepath.Join(dir, "cold.db")
	if code, out := runCmd(t, bin, "backup", "-db", dbPath, "-out", cold); code != 0 {
		t.Fatalf("backup of a closed file: exit %d\n%s", code, out)
	}
	if code, out := runCmd(t, bin, "verify", "-db", cold); code != 0 {
		t.Fatalf("verify of a clean file: exit %d\n%s", code, out)
	}
	b, err := bolt.Open(cold, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	var flipped uint64
	err = b.Update(func(tx *bolt.Tx) error {
		log := tx.Bucket([]byte("log"))
		k, v := log.Cursor().Last()
		flipped = binary.BigEndian.Uint64(k)
		v = bytes.Clone(v)
		v[len(v)/3] ^= 0x04
		return log.Put(bytes.Clone(k), v)
	})
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	code, out = runCmd(t, bin, "verify", "-db", cold)
	if want := fmt.Sprintf("log record %d: checksum mismatch", flipped); code != 1 || !strings.Contains(out, want) {
		t.Fatalf("verify of a flipped byte: exit %d, want 1 naming %q\n%s", code, want, out)
	}
	if code, _ := runCmd(t, bin, "verify"); code != 2 {
		t.Fatalf("verify without -db: exit %d", code)
	}
	if code, out := runCmd(t, bin, "verify", "-db", filepath.Join(dir, "missing.db")); code != 1 {
		t.Fatalf("verify of a missing file: exit %d\n%s", code, out)
	}
	os.Remove(cold)
}
