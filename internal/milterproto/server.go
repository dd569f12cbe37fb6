package milterproto

import (
	"net"
	"sync"
)

// Serve accepts connections on ln and runs a session for each one in its
// own goroutine, with the handler newHandler returns for it. It returns the
// accept error that ends it (after ln is closed: net.ErrClosed, wrapped),
// once every session has ended. A daemon that tracks its connections for a
// drain accepts them itself and calls NewSession and Session.Serve.
func Serve(ln net.Listener, opts *Options, newHandler func(*Session) Handler) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		s := NewSession(c, opts)
		h := newHandler(s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.Serve(h)
		}()
	}
}
