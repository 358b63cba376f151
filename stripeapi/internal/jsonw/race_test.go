//go:build race

package jsonw

// raceEnabled reports whether the race detector is on (sync.Pool then
// drops items at random, which changes allocation counts).
const raceEnabled = true
