package integration

import "testing"

// scenario is one end-to-end case against the daemon.
type scenario struct {
	name string
	run  func(t *testing.T, w *world)
}

var scenarios []scenario
