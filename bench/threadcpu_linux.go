//go:build linux

package main

import (
	"syscall"
	"unsafe"
)

// threadCPUTime returns the CPU time of the calling OS thread so far, in
// nanoseconds (CLOCK_THREAD_CPUTIME_ID), or 0 when unknown. The caller
// locks its goroutine to the thread around the measured call: time the
// thread spends descheduled (a loaded machine) is not counted.
func threadCPUTime() int64 {
	var ts syscall.Timespec
	const clockThreadCPUTimeID = 3
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0
	}
	return ts.Nano()
}
