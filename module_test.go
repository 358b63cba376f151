package meterdb_test

import (
	"testing"

	"golang.org/x/mod/zip"
)

// TestModuleZip checks that the module can be served by a module proxy:
// no file name reserved on Windows, no file the zip format refuses, and
// the size limits hold.
func TestModuleZip(t *testing.T) {
	cf, err := zip.CheckDir(".")
	if err != nil {
		t.Fatalf("the module zip would be refused: %v", err)
	}
	for _, f := range cf.Invalid {
		t.Errorf("the module zip refuses %s: %v", f.Path, f.Err)
	}
	if len(cf.Valid) == 0 {
		t.Fatal("the module zip would hold no file")
	}
}
