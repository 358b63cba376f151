package meterdb_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/meterdb/meterdb"

// TestImportRules checks the import graph of the module's packages: leaf
// packages import nothing above them, the HTTP adapter reaches the engine
// only through the facade, and the library pulls in none of the heavy
// dependencies that live in their own packages.
func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	// The module's packages each may import, besides the standard library
	// and outside modules.
	allowed := map[string][]string{
		"":                  {"internal/pipeline", "meter", "event", "store", "aggregate", "internal/stats", "sharedlog"},
		"meter":             {},
		"event":             {"meter"},
		"aggregate":         {"internal/binread", "internal/prefetch"},
		"store":             {"meter", "internal/binread", "internal/idhash", "internal/stats"},
		"internal/binread":  {},
		"internal/dedupe":   {"internal/idhash", "internal/prefetch"},
		"internal/idhash":   {},
		"internal/stats":    {},
		"internal/prefetch": {},
		"internal/lazyfs":   {}, // for tests only: nothing of the library imports it (go-fuse is banned below)
		"internal/pipeline": {"meter", "event", "aggregate", "store", "internal/dedupe", "internal/idhash", "internal/stats", "internal/record", "sharedlog"},
		// The shared log's interface imports nothing; its record codec and
		// its in-process implementation for tests little.
		"sharedlog":              {},
		"internal/record":        {"internal/binread"},
		"internal/sharedlogtest": {"sharedlog"},
		"stripeapi":              {"", "meter", "event", "internal/stats", "stripeapi/internal/wire", "stripeapi/internal/form", "stripeapi/internal/jsonw"},
		// The wire decoders know the event type and nothing of the engine.
		"stripeapi/internal/wire":  {},
		"stripeapi/internal/form":  {"stripeapi/internal/wire"},
		"stripeapi/internal/jsonw": {"event", "stripeapi/internal/wire"},
		"metrics":                  {"", "stripeapi"},
		"dashboard":                {"", "meter", "stripeapi"},
		// The JetStream implementation of the shared log imports only its
		// interface, and nothing of the library imports it (nats.go is
		// banned below).
		"replica":           {"sharedlog"},
		"internal/natstest": {}, // for tests only
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, ok := strings.CutPrefix(f[0], module)
		if !ok {
			continue
		}
		pkg = strings.TrimPrefix(pkg, "/")
		rules, ruled := allowed[pkg]
		if !ruled {
			continue
		}
		seen++
		for _, imp := range f[1:] {
			dep, ours := strings.CutPrefix(imp, module)
			if !ours {
				continue
			}
			dep = strings.TrimPrefix(dep, "/")
			if !slices.Contains(rules, dep) {
				t.Errorf("%s imports %s; it may import only %q of the module", f[0], imp, rules)
			}
		}
	}
	if seen != len(allowed) {
		t.Errorf("go list showed %d of the %d ruled packages", seen, len(allowed))
	}

	// What the library pulls in.
	deps, err := exec.Command("go", "list", "-deps", ".", "./stripeapi").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, banned := range []string{"github.com/prometheus/", "github.com/chromedp/", "github.com/hanwen/go-fuse", "github.com/nats-io/"} {
		for _, d := range strings.Fields(string(deps)) {
			if strings.HasPrefix(d, banned) {
				t.Errorf("the library depends on %s", d)
			}
		}
	}
}

// TestFacadeFiles checks that the root package holds only the facade: its
// files are the public API, and the engine lives below it.
func TestFacadeFiles(t *testing.T) {
	facade := []string{"backup.go", "db.go", "doc.go", "errors.go", "kv.go", "options.go", "query.go", "stats.go", "summary.go", "verify.go"}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		if !slices.Contains(facade, f) {
			t.Errorf("the root package has %s; engine code belongs below it (internal/pipeline)", f)
		}
	}
	if _, err := os.Stat("db.go"); err != nil {
		t.Fatal(err)
	}
}
