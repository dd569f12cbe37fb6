//go:build race

package integration

// raceEnabled: the daemon under test is built with -race too.
const raceEnabled = true
