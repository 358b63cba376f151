//go:build !race

package stripeapi

const raceEnabled = false
