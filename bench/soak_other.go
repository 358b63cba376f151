//go:build !linux

package main

import (
	"errors"
	"os"
	"os/exec"
)

func mountTmpfs(dir string, size int64) error {
	return errors.New("a tmpfs mount needs Linux")
}

func unmountTmpfs(dir string) error { return nil }

func killWithParent(cmd *exec.Cmd) {}

func allocatedBytes(fi os.FileInfo) int64 { return fi.Size() }
