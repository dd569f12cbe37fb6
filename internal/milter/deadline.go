package milter

import (
	"context"
	"time"
)

// eomDeadline is the end-of-message deadline. It becomes a context (and a
// timer) only when something has to be waited for: with the answers in the
// cache, the checks are finished before the end of the message.
type eomDeadline struct {
	parent context.Context
	at     time.Time
	ctx    context.Context
	cancel context.CancelFunc
}

// context returns the deadline as a context.
func (d *eomDeadline) context() context.Context {
	if d.ctx == nil {
		d.ctx, d.cancel = context.WithDeadline(d.parent, d.at)
	}
	return d.ctx
}

// done is closed when the deadline passes (a stop for pending.Check.Wait).
func (d *eomDeadline) done() <-chan struct{} { return d.context().Done() }

func (d *eomDeadline) stop() {
	if d.cancel != nil {
		d.cancel()
	}
}
