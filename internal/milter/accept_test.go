package milter

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
)

// failingListener returns the errors of errs from Accept, one per call,
// then net.ErrClosed.
type failingListener struct {
	net.Listener
	errs []error
}

func (l *failingListener) Accept() (net.Conn, error) {
	if len(l.errs) == 0 {
		return nil, fmt.Errorf("accept: %w", syscall.EINVAL)
	}
	err := l.errs[0]
	l.errs = l.errs[1:]
	return nil, err
}
func (l *failingListener) Close() error   { return nil }
func (l *failingListener) Addr() net.Addr { return &net.TCPAddr{} }

// TestServeRetriesResourceShortage: EMFILE, ENFILE, ENOBUFS and ENOMEM are
// waited out; any other accept error ends Serve with that error.
func TestServeRetriesResourceShortage(t *testing.T) {
	h := newHarness(t, nil)
	s := NewServer(h.eng, nil)
	ln := &failingListener{errs: []error{
		&net.OpError{Op: "accept", Err: syscall.EMFILE},
		&net.OpError{Op: "accept", Err: syscall.ENFILE},
		&net.OpError{Op: "accept", Err: syscall.ENOBUFS},
		&net.OpError{Op: "accept", Err: syscall.ENOMEM},
	}}
	err := s.Serve(ln)
	if !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("Serve = %v, want the EINVAL that followed the shortages", err)
	}
	if len(ln.errs) != 0 {
		t.Errorf("%d shortage errors not retried", len(ln.errs))
	}
}
