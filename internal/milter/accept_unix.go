package milter

import (
	"errors"
	"syscall"
)

// resourceShortage reports whether an accept error is a passing shortage
// of file descriptors or kernel memory, which Serve waits out and retries
// (any other accept error ends Serve, and the daemon exits so that its
// supervisor restarts it).
func resourceShortage(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}
