package lazyfs

import (
	"errors"
	"os"
	"testing"
)

// Check reports why this machine cannot mount a lazy file system (no
// /dev/fuse; neither root nor a fusermount helper), or nil. Mount can still
// fail where Check passes (in a container without the capability to mount,
// say).
func Check() error {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return err
	}
	if os.Geteuid() != 0 && !haveFusermount() {
		return errors.New("not root, and no fusermount helper")
	}
	return nil
}

// Unavailable ends a test that needs FUSE on a machine without it: it
// skips, except under CI (the environment variable CI is "true"), where
// FUSE must be available and the test fails.
func Unavailable(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("lazyfs: FUSE is not usable here, and CI=true requires it: %v", err)
	}
	tb.Skipf("lazyfs: FUSE is not usable here (needs /dev/fuse and root, or a fusermount helper): %v", err)
}

// MountTest mounts a lazy view of backing on a new temporary directory
// for the test, and unmounts it when the test ends, failed or not. Without
// FUSE it skips the test (fails it under CI=true; see Unavailable).
func MountTest(tb testing.TB, backing string, opts *Options) *FS {
	tb.Helper()
	if err := Check(); err != nil {
		Unavailable(tb, err)
	}
	// Created before the unmount is registered, so removed after it: the
	// removal never walks into a live mount.
	mountpoint := tb.TempDir()
	f, err := Mount(mountpoint, backing, opts)
	if err != nil {
		Unavailable(tb, err)
	}
	tb.Cleanup(func() {
		if err := f.Unmount(); err != nil {
			tb.Errorf("lazyfs: %v", err)
		}
	})
	return f
}
