// Package milter is dmarc-milter's side of the milter protocol: the session
// state machine over our own protocol loop (internal/milterproto), the
// local policy (bypasses, allowlists, enforcement mode, quarantine method,
// replies) and Authentication-Results hygiene.
//
// Server accepts connections and runs one connection (the
// milterproto.Handler of one SMTP session) per socket. A Transaction is
// one message and owns all of its state: SPF starts at MAIL FROM, policy
// discovery at the From: header, DKIM verification at the end of the
// header block with the body streamed into it, and everything is joined at
// end of message (docs/flow.md). Engine holds what does not change between
// messages and is swapped atomically on reload. EvaluateMessage drives a
// Transaction from a message file (the evaluate subcommand).
package milter

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/milterproto"
)

// Actions and protocol options negotiated with the MTA (milterproto answers
// our actions ∩ the MTA's, requiredProtocol, and optionalProtocol ∩ what the
// MTA offered).
//
// Every decision is taken at end of message, so we ask for no reply to any
// event before it (noReplyProtocol: connect, HELO, MAIL, RCPT, each header
// field, the end of the header block and each body chunk, about 20 round
// trips per message that Postfix no longer waits for) and for no DATA event
// (SMFIP_NODATA): an MTA that does not offer them gets every reply, so they
// are optional. SMFIP_NOUNKNOWN (we have nothing to say about unknown SMTP
// commands; milterproto would answer continue) and SMFIP_HDR_LEADSPC are
// required, answered even to an MTA that did not offer them, as go-milter
// always did: HDR_LEADSPC makes Postfix pass header values byte for byte
// (DKIM needs the exact bytes) and insert ours as given, so our values
// start with a space.
const (
	negotiatedActions = milterproto.ActAddHeader | milterproto.ActChangeHeader | milterproto.ActQuarantine | milterproto.ActSetSymList
	noReplyProtocol   = milterproto.ProtoNRConnect | milterproto.ProtoNRHelo | milterproto.ProtoNRMail |
		milterproto.ProtoNRRcpt | milterproto.ProtoNRHeader | milterproto.ProtoNREOH | milterproto.ProtoNRBody
	requiredProtocol = milterproto.ProtoNoUnknown | milterproto.ProtoHdrLeadSpc
	optionalProtocol = noReplyProtocol | milterproto.ProtoNoData
)

// mailMacros are requested for the MAIL FROM stage. The list replaces
// Postfix's milter_mail_macros, so it names everything we read there. Postfix
// sends neither s (the HELO name: Sendmail's) nor, before RCPT, i; they are
// asked for so that an MTA which has them gives them, and i is read again at
// end of message.
var mailMacros = []string{"{client_addr}", "{client_name}", "s", "i", "j", "{auth_authen}", "{auth_type}"}

// macroLists is the SETSYMLIST request.
var macroLists = map[milterproto.Stage][]string{milterproto.StageMail: mailMacros}

// maxPacket is the largest packet accepted from the MTA; a larger one ends
// the session (Postfix's body chunks are at most 65535 bytes, its header
// fields under header_size_limit, 100 KiB by default).
const maxPacket = 1 << 20

// Server accepts milter connections and runs one session per connection.
type Server struct {
	engine atomic.Pointer[Engine]
	log    *slog.Logger

	mu        sync.Mutex
	conns     map[*connection]struct{}
	listeners []net.Listener
	shutdown  bool
	wg        sync.WaitGroup // one per connection being served
	nextID    atomic.Uint64

	// free holds the connections that have ended, with their buffers
	// (macro tables, reply buffer), for the next ones.
	free sync.Pool
	// handoff gives a new connection to a worker waiting for one; a
	// worker is a goroutine that serves connections one after another,
	// so that each does not start on a new goroutine whose stack grows
	// again to what a message needs. quit ends the idle workers at
	// Shutdown; workers counts them.
	handoff chan *connection
	quit    chan struct{}
	workers sync.WaitGroup
}

// workerIdle is how long a worker waits for a connection before it ends:
// the idle goroutines are bounded by the busiest moment of the last
// workerIdle.
const workerIdle = 15 * time.Second

// NewServer returns a server that evaluates messages with e. log may be nil.
func NewServer(e *Engine, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{log: log, conns: map[*connection]struct{}{}, handoff: make(chan *connection), quit: make(chan struct{})}
	s.engine.Store(e)
	return s
}

// SetEngine replaces the engine (configuration reload). Messages already
// started finish with the engine they started with.
func (s *Server) SetEngine(e *Engine) { s.engine.Store(e) }

// Engine returns the current engine.
func (s *Server) Engine() *Engine { return s.engine.Load() }

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("milter: server closed")

// Serve accepts connections on ln until Shutdown. It returns ErrServerClosed
// after Shutdown and any other accept error otherwise.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || resourceShortage(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed, retrying", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.startSession(c)
	}
}

func (s *Server) closing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shutdown
}

// startSession registers the connection and hands it to an idle worker,
// or to a new one.
func (s *Server) startSession(raw net.Conn) {
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		raw.Close()
		return
	}
	// Renewed under s.mu, after the shutdown check: Shutdown never holds a
	// connection taken from the free list (see Session.Renew).
	c := s.newConnection(raw)
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	select {
	case s.handoff <- c:
	default:
		s.workers.Add(1)
		go s.worker(c)
	}
}

// newConnection returns a connection for raw: one that has ended, renewed,
// or a new one.
func (s *Server) newConnection(raw net.Conn) *connection {
	e := s.engine.Load()
	c, _ := s.free.Get().(*connection)
	if c == nil {
		c = &connection{engine: &s.engine, log: s.log}
		c.opts = milterproto.Options{
			Actions:    negotiatedActions,
			Required:   requiredProtocol,
			Optional:   optionalProtocol,
			MacroLists: macroLists,
			MaxPacket:  maxPacket,
		}
		c.opts.Idle = e.cfg.Timeouts.Idle
		c.ps = milterproto.NewSession(raw, &c.opts)
	} else {
		// The options are the session's: they change only here, while
		// no session uses them.
		c.opts.Idle = e.cfg.Timeouts.Idle
		c.ps.Renew(raw)
	}
	c.id = s.nextID.Add(1)
	if c.ctx == nil || c.ctx.Err() != nil {
		c.ctx, c.cancel = context.WithCancel(context.Background())
	}
	return c
}

// worker serves c, then the connections handed to it, until it has waited
// workerIdle for one or the server shuts down.
func (s *Server) worker(c *connection) {
	defer s.workers.Done()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		s.serve(c)
		idle.Reset(workerIdle)
		select {
		case c = <-s.handoff:
		case <-idle.C:
			return
		case <-s.quit:
			return
		}
	}
}

// serve runs the connection until it ends, then forgets it and keeps it
// for the next one.
func (s *Server) serve(c *connection) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.ps.Close()
		c.resetTx()
		c.forget()
		s.free.Put(c)
		s.wg.Done()
	}()
	defer func() {
		// The callbacks recover their own panics (guard); this is a bug
		// in the loop: the connection ends, the daemon lives.
		if v := recover(); v != nil {
			c.logPanic("session", v)
		}
	}()
	if err := c.ps.Serve(c); err != nil {
		s.logSessionEnd(c, err)
	}
}

// logSessionEnd logs why a session ended other than by the MTA: an idle
// timeout or a broken socket at INFO, anything that points at a bug of
// ours or of the MTA (a malformed or oversized packet, a reply refused at
// a no-reply stage) at WARN or ERROR.
func (s *Server) logSessionEnd(c *connection, err error) {
	var ne net.Error
	switch {
	case errors.Is(err, milterproto.ErrReplyAtNoReplyStage):
		s.log.Error("milter session ended", "conn", c.id, "err", err.Error())
	case errors.As(err, &ne) && ne.Timeout():
		s.log.Info("milter session idle, closed", "conn", c.id, "idle", c.opts.Idle.String())
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		s.log.Info("milter session cut by the MTA", "conn", c.id, "err", err.Error())
	default:
		s.log.Warn("milter session ended", "conn", c.id, "err", err.Error())
	}
}

// Shutdown stops accepting, closes idle connections, lets messages in flight
// finish, and closes what remains when ctx ends. It returns ctx.Err() when
// it had to cut connections.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.shutdown {
		close(s.quit)
	}
	s.shutdown = true
	for _, ln := range s.listeners {
		ln.Close()
	}
	conns := make([]*connection, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.ps.Drain()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.workers.Wait()
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		c.close()
	}
	s.mu.Unlock()
	<-done
	s.workers.Wait()
	return ctx.Err()
}

// ActiveConnections is the number of open milter connections.
func (s *Server) ActiveConnections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
