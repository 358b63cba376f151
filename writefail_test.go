package meterdb_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/meter"
)

// TestWriteErrorReopens makes the kernel refuse to grow the store file
// (RLIMIT_FSIZE: writes past the limit fail with EFBIG, an error that,
// unlike a full disk, leaves the store unsure of what it wrote) and checks
// that the database never retries blindly: the failed writes record
// nothing, the database reopens its file and rebuilds its state from what
// is durable, and once the file may grow again it serves writes without a
// restart, with everything acknowledged counted once.
func TestWriteErrorReopens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "efbig.db")
	opts := &meterdb.Options{CheckpointInterval: time.Hour}
	db, err := meterdb.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	m := mustMeter(t, db, meter.Params{EventName: "calls", Formula: meter.Sum})
	acked := int64(0)
	record := func(prefix string) error {
		errs, err := db.RecordBatch(ctx, usageBatch(prefix, "c", 200))
		if err == nil {
			for _, e := range errs {
				if e != nil {
					t.Fatalf("event rejected: %v", e)
				}
			}
			acked += 200
		}
		return err
	}
	// The limit applies to every file the process writes, the go command's
	// test log too (which grows with every test of the binary): grow the
	// store well past anything else first.
	target := int64(1 << 20)
	if f := flag.Lookup("test.testlogfile"); f != nil && f.Value.String() != "" {
		if li, err := os.Stat(f.Value.String()); err == nil {
			target = max(target, li.Size()+1<<20)
		}
	}
	var fi os.FileInfo
	for i := 0; fi == nil || fi.Size() < target; i++ {
		if i == 5000 {
			t.Fatalf("the store is %d bytes after %d batches", fi.Size(), i)
		}
		if err := record(fmt.Sprintf("before-%d", i)); err != nil {
			t.Fatal(err)
		}
		if fi, err = os.Stat(path); err != nil {
			t.Fatal(err)
		}
	}

	// Writes past the file's current size now fail with EFBIG.
	signal.Ignore(syscall.SIGXFSZ)
	defer signal.Reset(syscall.SIGXFSZ)
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	limit := old
	limit.Cur = uint64(fi.Size())
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
		t.Skipf("setting RLIMIT_FSIZE: %v", err)
	}
	lifted := false
	lift := func() {
		if !lifted {
			lifted = true
			if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer lift()

	var ferr error
	var failed string
	for i := 0; i < 5000 && ferr == nil; i++ {
		failed = "grow" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		ferr = record(failed)
	}
	// bbolt reports a failed resize in words ("file resize error: ...
	// file too large"), not as a wrapped errno.
	if !errors.Is(ferr, meterdb.ErrUnavailable) || !strings.Contains(ferr.Error(), "file too large") {
		t.Fatalf("write past the file size limit: %v, want ErrUnavailable for EFBIG", ferr)
	}
	// The database reopens in the background; until the file may grow,
	// writes keep failing with the retryable error and record nothing.
	deadline := time.Now().Add(10 * time.Second)
	for db.Stats().Reopens == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the database did not reopen its file after the write error")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := sumNow(t, db, m, "c"); got != acked {
		t.Fatalf("total %d after the reopen, want the %d acknowledged events", got, acked)
	}
	lift()
	deadline = time.Now().Add(10 * time.Second)
	for {
		err := record(failed) // the same identifiers: nothing of them was kept
		if err == nil {
			break
		}
		if !errors.Is(err, meterdb.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("write after the limit was lifted: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := record("after"); err != nil {
		t.Fatal(err)
	}
	db = checkAcked(t, db, path, opts, m, acked)
}
