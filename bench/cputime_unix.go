//go:build unix

package main

import "syscall"

// cpuTime returns the user plus system CPU time of the process so far, in
// nanoseconds, or 0 when unknown.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
