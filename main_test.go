package meterdb_test

import (
	"flag"
	"os"
	"testing"
)

// Defaults for rapid in this package, unless set by flag (-rapid.checks,
// -rapid.steps) or environment (RAPID_CHECKS, RAPID_STEPS): the model test
// alone runs at least a thousand checks of about a hundred actions each.
var rapidDefaults = []struct{ flag, env, value string }{
	{"rapid.checks", "RAPID_CHECKS", "1000"},
	{"rapid.steps", "RAPID_STEPS", "100"},
}

func TestMain(m *testing.M) {
	flag.Parse()
	explicit := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	for _, d := range rapidDefaults {
		if _, env := os.LookupEnv(d.env); !explicit[d.flag] && !env {
			if err := flag.Set(d.flag, d.value); err != nil {
				panic(err)
			}
		}
	}
	os.Exit(m.Run())
}
