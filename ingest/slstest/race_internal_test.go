//go:build race

package slstest

const raceEnabled = true
