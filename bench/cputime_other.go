//go:build !unix

package main

// cpuTime returns 0: CPU time is not measured on this platform.
func cpuTime() int64 { return 0 }
