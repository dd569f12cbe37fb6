// Package pending holds the result of a check that is either known at once
// or answered later by a goroutine, and waits for it with a deadline.
//
// A mail filter starts its checks as early as it can and joins them at the
// end of the message. Many are answered at once (their DNS answers are
// cached) and need neither a goroutine nor a timer; the others run in a
// goroutine. Check hides the difference from the code that waits.
package pending

// Check is the result of one check. The zero value is a check not started.
// Set, Start and Wait are called from one goroutine (the one that owns the
// check); only the sender on Start's channel runs concurrently.
type Check[T any] struct {
	state state
	v     T
	ch    chan T
}

type state uint8

const (
	notStarted state = iota
	ready            // v is the result
	running          // the result comes on ch
)

// Set records the result of a check answered at once.
func (c *Check[T]) Set(v T) {
	c.state, c.v, c.ch = ready, v, nil
}

// Start marks the check as answered later and returns the channel its
// goroutine sends the result on (buffered: the send never blocks). When
// no result is sent (the goroutine panicked), Wait returns at one of its
// stops.
func (c *Check[T]) Start() chan<- T {
	c.state, c.ch = running, make(chan T, 1)
	return c.ch
}

// Started reports whether Set or Start was called.
func (c *Check[T]) Started() bool { return c.state != notStarted }

// Wait returns the result and true, or the zero value and false when the
// check was not started or one of stops (at most two) closed first. Each
// stop is a function returning a channel, called only when the result is
// not ready (so that a deadline costs a timer only when there is something
// to wait for). A result ready at the call wins over a stop already closed.
func (c *Check[T]) Wait(stops ...func() <-chan struct{}) (T, bool) {
	switch c.state {
	case ready:
		return c.v, true
	case notStarted:
		var zero T
		return zero, false
	}
	select {
	case v := <-c.ch:
		c.Set(v)
		return v, true
	default:
	}
	var s [2]<-chan struct{} // a nil channel (no stop) is never ready
	if len(stops) > len(s) {
		panic("pending: Wait takes at most two stops")
	}
	for i, f := range stops {
		s[i] = f()
	}
	select {
	case v := <-c.ch:
		c.Set(v)
		return v, true
	case <-s[0]:
	case <-s[1]:
	}
	var zero T
	return zero, false
}
