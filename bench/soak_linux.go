//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// mountTmpfs mounts a tmpfs of size bytes on dir. It needs root (or
// CAP_SYS_ADMIN).
func mountTmpfs(dir string, size int64) error {
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		return fmt.Errorf("mount -t tmpfs -o size=%d tmpfs %s: %w", size, dir, err)
	}
	return nil
}

// unmountTmpfs unmounts dir, detaching it lazily if it is still busy.
func unmountTmpfs(dir string) error {
	err := syscall.Unmount(dir, 0)
	if err != nil && errors.Is(err, syscall.EBUSY) {
		err = syscall.Unmount(dir, syscall.MNT_DETACH)
	}
	if err != nil {
		return fmt.Errorf("umount %s: %w", dir, err)
	}
	return nil
}

// killWithParent makes the kernel SIGKILL cmd's process if the bench dies
// first, so that an interrupted soak leaves no meterd behind, and puts it
// in a process group of its own, so that a Ctrl-C reaches the bench only
// (which then kills meterd itself).
func killWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

// allocatedBytes returns the bytes a file occupies on its file system,
// which for a sparse file is less than its size.
func allocatedBytes(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
