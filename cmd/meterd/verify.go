package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/meterdb/meterdb"
)

const verifyUsage = `usage: meterd verify -db FILE

Checks a database file without changing it (see meterdb.Verify): every
record's checksum, the log's continuity, and that the checkpoint plus the
log reproduces the aggregates. It prints a report. The file must not be
open in a running server: verify a copy made with meterd backup instead.
Exit status: 0 when the file is clean, 1 when a problem was found or the
file could not be checked, 2 for bad usage.
`

// verifyMain is "meterd verify": it returns the exit status.
func verifyMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("meterd verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, verifyUsage) }
	dbPath := fs.String("db", "", "database `file` to check")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dbPath == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	r, err := meterdb.Verify(*dbPath, nil)
	if r.Path != "" && (err == nil || len(r.Problems) > 0) {
		fmt.Fprint(stdout, r.String())
	}
	if err != nil {
		fmt.Fprintln(stderr, "meterd verify:", err)
		return 1
	}
	return 0
}
