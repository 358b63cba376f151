package meterdb_test

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meterdb/meterdb"
	"github.com/meterdb/meterdb/store"
)

// An empty file at the path is not a store (Open never leaves one).
func TestOpenEmptyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty.db")
	os.WriteFile(path, nil, 0o600)
	db, err := meterdb.Open(path, nil)
	if err == nil {
		db.Close()
	}
	if !errors.Is(err, store.ErrNotStore) || !strings.Contains(err.Error(), "file is empty") {
		t.Fatalf("Open of an empty file: %v, want ErrNotStore saying the file is empty", err)
	}
}

// A file Open may not write is a permission error, not corrupt data. As
// root, file modes do not stop Open: the file is made immutable.
func TestOpenPermissionDenied(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	db, err := meterdb.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if out, err := exec.Command("chattr", "+i", path).CombinedOutput(); err != nil {
		t.Skipf("chattr +i failed, no other way to deny root: %v %s", err, out)
	}
	defer exec.Command("chattr", "-i", path).Run()
	_, err = meterdb.Open(path, nil)
	if !errors.Is(err, fs.ErrPermission) || errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Open without permission: %v", err)
	}
}
