package milter

import (
	"bufio"
	"context"
	"net"
	"sync"
	"time"
)

// trackedConn wraps one accepted milter connection. go-milter v0.5.0 gives no
// per-connection hook (it recreates the backend after every message and has
// no close callback), so the connection itself tells us what we need:
//
//   - Close (called by go-milter when the session ends, or by us when
//     draining) cancels the connection's context, which every message
//     context derives from, and releases the one-connection listener;
//   - reads go through a buffer (go-milter reads the 4-byte length and the
//     payload separately: two syscalls per packet otherwise) and each read
//     from the socket gets the idle deadline;
//   - the first write after a message ended (the end-of-message reply)
//     marks the connection idle, so a drain can close it between messages;
//   - the packets read and written are framed (wire.go): the SMFIP_NR_*
//     flags are negotiated to what the MTA offered, the replies it will not
//     read are kept off the socket, and an end of message's modifications
//     go out in one write with its final reply.
//
// Read and Write are called by go-milter's session goroutine only, so the
// framing state (in, out) needs no lock; Close may come from any goroutine
// and does not touch it.
type trackedConn struct {
	net.Conn
	r    *bufio.Reader
	idle time.Duration
	in   inFramer
	out  outQueue

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	mu         sync.Mutex
	inMessage  bool // MAIL FROM seen, end-of-message reply or abort not yet
	endPending bool // the next write is the end-of-message reply
	draining   bool // close as soon as no message is in flight
}

func newTrackedConn(ctx context.Context, c net.Conn, idle time.Duration) *trackedConn {
	ctx, cancel := context.WithCancel(ctx)
	return &trackedConn{
		Conn:   c,
		r:      bufio.NewReaderSize(deadlineReader{c, idle}, 16<<10),
		idle:   idle,
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
	}
}

// deadlineReader sets the idle deadline before each read from the socket.
type deadlineReader struct {
	c    net.Conn
	idle time.Duration
}

func (d deadlineReader) Read(p []byte) (int, error) {
	if d.idle > 0 {
		_ = d.c.SetReadDeadline(time.Now().Add(d.idle))
	}
	return d.c.Read(p)
}

// Read hands go-milter the next bytes from the MTA. Nothing written stays
// queued while we wait for the MTA: go-milter reads only after its reply is
// written, and whatever is still queued then (a partial or held packet,
// which go-milter does not leave) goes out first.
func (c *trackedConn) Read(p []byte) (int, error) {
	if len(c.out.buf) > 0 {
		if err := c.out.flush(c.Conn, true); err != nil {
			return 0, err
		}
	}
	n, err := c.r.Read(p)
	c.in.track(p[:n])
	return n, err
}

// Write takes one write of go-milter's (a reply packet or part of one) and
// sends what the framing lets through.
func (c *trackedConn) Write(p []byte) (int, error) {
	if err := c.out.add(p, c.in.cmd, c.in.offeredProtocol()); err != nil {
		// A bug of ours (the guard makes continue the only reply at a
		// no-reply stage): better a closed session, which Postfix
		// answers with milter_default_action, than a desynchronised one.
		c.Close()
		return 0, err
	}
	if !c.out.send {
		return len(p), nil // dropped or held
	}
	err := c.out.flush(c.Conn, false)
	c.mu.Lock()
	closeNow := false
	if c.endPending {
		c.endPending, c.inMessage = false, false
		closeNow = c.draining
	}
	c.mu.Unlock()
	if closeNow {
		c.Close()
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// noReply reports whether the MTA was told not to read a reply to cmd (an
// SMFIP_NR_* flag was negotiated for it). Called from go-milter's session
// goroutine only, like Read and Write.
func (c *trackedConn) noReply(cmd byte) bool {
	return c.out.nr&noReplyOpt(cmd) != 0
}

// Close closes the socket once and cancels everything derived from it.
func (c *trackedConn) Close() error {
	var err error
	c.once.Do(func() {
		c.cancel()
		err = c.Conn.Close()
		close(c.done)
	})
	return err
}

// beginMessage marks a message in flight (at MAIL FROM).
func (c *trackedConn) beginMessage() {
	c.mu.Lock()
	c.inMessage = true
	c.mu.Unlock()
}

// endMessage is called when the end-of-message callback returns: the reply
// written next ends the message.
func (c *trackedConn) endMessage() {
	c.mu.Lock()
	c.endPending = true
	c.mu.Unlock()
}

// abortMessage ends a message without a reply (SMFIC_ABORT).
func (c *trackedConn) abortMessage() {
	c.mu.Lock()
	c.inMessage, c.endPending = false, false
	closeNow := c.draining
	c.mu.Unlock()
	if closeNow {
		c.Close()
	}
}

// drain closes the connection now if no message is in flight, and
// otherwise as soon as its message ends.
func (c *trackedConn) drain() {
	c.mu.Lock()
	c.draining = true
	busy := c.inMessage
	c.mu.Unlock()
	if !busy {
		c.Close()
	}
}

// oneConnListener hands go-milter's Serve exactly one connection; its
// second Accept blocks until that connection is closed, so Serve returns
// when the session is over.
type oneConnListener struct {
	conn *trackedConn
	mu   sync.Mutex
	used bool
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	used := l.used
	l.used = true
	l.mu.Unlock()
	if !used {
		return l.conn, nil
	}
	<-l.conn.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }
