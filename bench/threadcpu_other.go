//go:build !linux

package main

// threadCPUTime returns 0: the thread's CPU time is read on Linux only.
func threadCPUTime() int64 { return 0 }
