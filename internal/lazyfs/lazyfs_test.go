package lazyfs_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meterdb/meterdb/internal/lazyfs"
)

func mustWrite(t *testing.T, f *os.File, data []byte, off int64) {
	t.Helper()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

func syncDir(t *testing.T, dir string) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
}

func fileIs(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s holds %d bytes %q..., want %d bytes %q...", path, len(got), head(got), len(want), head(want))
	}
}

func head(b []byte) []byte { return b[:min(len(b), 16)] }

// TestUnsyncedIsLost writes through the mount: reads see every write, the
// backing directory only what was synced, and a power cut leaves exactly
// that.
func TestUnsyncedIsLost(t *testing.T) {
	backing := t.TempDir()
	lfs := lazyfs.MountTest(t, backing, nil)
	mnt := lfs.Mountpoint()

	// A file created and synced, with its directory.
	f, err := os.Create(filepath.Join(mnt, "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mustWrite(t, f, []byte("synced"), 0)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	syncDir(t, mnt)
	// Then written again without a sync: the mount sees it, the backing
	// file does not.
	mustWrite(t, f, []byte("SYN"), 0)
	mustWrite(t, f, bytes.Repeat([]byte("x"), 10000), 6)
	fileIs(t, filepath.Join(mnt, "a"), append([]byte("SYNced"), bytes.Repeat([]byte("x"), 10000)...))
	fileIs(t, filepath.Join(backing, "a"), []byte("synced"))
	if fi, err := os.Stat(filepath.Join(mnt, "a")); err != nil || fi.Size() != 10006 {
		t.Fatalf("stat through the mount: %v %v, want size 10006", fi, err)
	}

	// A second file: synced, but its name is not (the directory was not
	// synced after its creation).
	g, err := os.Create(filepath.Join(mnt, "b"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	mustWrite(t, g, []byte("data of b"), 0)
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	fileIs(t, filepath.Join(backing, "b"), []byte("data of b"))

	// A third: grown with truncate and synced, then shrunk without a sync.
	syncDir(t, mnt) // makes b's name durable too
	h, err := os.Create(filepath.Join(mnt, "c"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	syncDir(t, mnt)
	if err := h.Truncate(3 * lazyfs.BlockSize); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, h, []byte("end"), 3*lazyfs.BlockSize-3)
	if err := h.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := h.Truncate(10); err != nil {
		t.Fatal(err)
	}
	cSynced := make([]byte, 3*lazyfs.BlockSize)
	copy(cSynced[len(cSynced)-3:], "end")
	fileIs(t, filepath.Join(mnt, "c"), make([]byte, 10))
	if err := h.Truncate(3 * lazyfs.BlockSize); err != nil { // grows again: zeros, not the old bytes
		t.Fatal(err)
	}
	fileIs(t, filepath.Join(mnt, "c"), make([]byte, 3*lazyfs.BlockSize))

	// A file created and never synced, nor its directory.
	if err := os.WriteFile(filepath.Join(mnt, "d"), []byte("gone"), 0o600); err != nil {
		t.Fatal(err)
	}

	if err := lfs.PowerCut(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("after"), 0); !errors.Is(err, syscall.EIO) {
		t.Fatalf("write after the cut: %v, want EIO", err)
	}
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("fsync after the cut: %v, want EIO", err)
	}
	f.Close()
	g.Close()
	h.Close()
	if err := lfs.Unmount(); err != nil {
		t.Fatal(err)
	}
	fileIs(t, filepath.Join(backing, "a"), []byte("synced"))
	fileIs(t, filepath.Join(backing, "b"), []byte("data of b"))
	fileIs(t, filepath.Join(backing, "c"), cSynced)
	if _, err := os.Stat(filepath.Join(backing, "d")); !os.IsNotExist(err) {
		t.Fatalf("an unsynced new file survived the cut: %v", err)
	}
	st := lfs.Stats()
	if st.DroppedNames != 1 || st.DroppedFiles != 3 || st.Fsyncs != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// TestNewNameNeedsDirSync: a created file, even synced, is gone after the
// cut unless its directory was synced; so is a hard link.
func TestNewNameNeedsDirSync(t *testing.T) {
	backing := t.TempDir()
	lfs := lazyfs.MountTest(t, backing, nil)
	mnt := lfs.Mountpoint()
	if err := os.Mkdir(filepath.Join(mnt, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	syncDir(t, mnt)
	for _, name := range []string{"sub/kept", "sub/lost"} {
		f, err := os.Create(filepath.Join(mnt, name))
		if err != nil {
			t.Fatal(err)
		}
		mustWrite(t, f, []byte(name), 0)
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if name == "sub/kept" {
			syncDir(t, filepath.Join(mnt, "sub"))
		}
	}
	// A renamed pending name stays pending.
	if err := os.Rename(filepath.Join(mnt, "sub/lost"), filepath.Join(mnt, "sub/lost2")); err != nil {
		t.Fatal(err)
	}
	// Hard links to a synced file, in the root directory: a new name is
	// pending like a created one, and unlinking one name leaves the others
	// with the data.
	for _, name := range []string{"link", "synced-link"} {
		if err := os.Link(filepath.Join(mnt, "sub/kept"), filepath.Join(mnt, name)); err != nil {
			t.Fatal(err)
		}
	}
	syncDir(t, mnt)
	if err := os.Link(filepath.Join(mnt, "sub/kept"), filepath.Join(mnt, "lost-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(mnt, "link")); err != nil {
		t.Fatal(err)
	}
	fileIs(t, filepath.Join(mnt, "lost-link"), []byte("sub/kept"))
	if err := lfs.PowerCut(); err != nil {
		t.Fatal(err)
	}
	if err := lfs.Unmount(); err != nil {
		t.Fatal(err)
	}
	fileIs(t, filepath.Join(backing, "sub/kept"), []byte("sub/kept"))
	fileIs(t, filepath.Join(backing, "synced-link"), []byte("sub/kept"))
	for _, name := range []string{"sub/lost", "sub/lost2", "link", "lost-link"} {
		if _, err := os.Stat(filepath.Join(backing, name)); !os.IsNotExist(err) {
			t.Fatalf("%s: %v, want it gone", name, err)
		}
	}
}

// TestUnmountLeavesNothing mounts and unmounts a few times, the last time
// with a file left open (the mount is busy: Unmount detaches it and
// aborts the connection): no mount and no goroutine may remain.
func TestUnmountLeavesNothing(t *testing.T) {
	if err := lazyfs.Check(); err != nil {
		lazyfs.Unavailable(t, err)
	}
	before := runtime.NumGoroutine()
	backing, mountpoint := t.TempDir(), t.TempDir()
	for i := range 3 {
		lfs, err := lazyfs.Mount(mountpoint, backing, &lazyfs.Options{BusyWait: 100 * time.Millisecond})
		if err != nil {
			lazyfs.Unavailable(t, err)
		}
		f, err := os.Create(filepath.Join(mountpoint, "f"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		mustWrite(t, f, []byte("x"), 0)
		if i < 2 {
			f.Close()
			if err := lfs.Unmount(); err != nil {
				t.Fatal(err)
			}
			if err := lfs.Unmount(); err != nil { // a second Unmount does nothing
				t.Fatal(err)
			}
			continue
		}
		err = lfs.Unmount()
		if err == nil || !strings.Contains(err.Error(), "detached") {
			t.Fatalf("Unmount of a busy mount: %v, want an error saying it was detached", err)
		}
		if _, err := f.WriteAt([]byte("y"), 0); !errors.Is(err, syscall.ENOTCONN) {
			t.Fatalf("write to a file of the aborted mount: %v, want ENOTCONN", err)
		}
		f.Close()
	}
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err == nil && strings.Contains(string(mounts), mountpoint) {
		t.Fatalf("%s is still mounted:\n%s", mountpoint, mounts)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines after the unmounts, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
	// Nothing unsynced reached the backing directory: the files were
	// created without a sync of the directory.
	if ents, _ := os.ReadDir(backing); len(ents) != 0 {
		t.Fatalf("the backing directory holds %d entries, want none", len(ents))
	}
}
