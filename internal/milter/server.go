// Package milter is dmarc-milter's side of the milter protocol: the session
// state machine over github.com/emersion/go-milter v0.5.0, the local policy
// (bypasses, allowlists, enforcement mode, quarantine method, replies) and
// Authentication-Results hygiene.
//
// One Transaction per message does the work phase by phase (see
// docs/flow.md): SPF starts at MAIL FROM, policy discovery at the From:
// header, DKIM verification at the end of the header block with the body
// streamed into it, and everything is joined at end of message. Engine holds
// what does not change between messages (configuration, resolver, checkers)
// and is swapped atomically on reload; Server accepts connections, tracks
// them for a graceful drain, and adapts go-milter's callbacks to the
// Transaction (session.go). The evaluate subcommand drives the same
// Transaction from a message file.
package milter

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	milter "github.com/emersion/go-milter"
)

// Actions and protocol options negotiated with the MTA.
//
// go-milter v0.5.0 writes a reply for every callback, so its own server must
// never set an SMFIP_NR_* flag (libraries.md §1.2: the stream
// desynchronises). We ask for no replies to every event before the end of
// message (noReplyOpts: connect, HELO, MAIL, RCPT, each header field, the
// end of the header block and each body chunk, about 20 round trips per
// message that Postfix no longer waits for) and for no DATA event
// (SMFIP_NODATA) because trackedConn keeps those replies off the socket, and
// clears from the answer the optional flags the MTA did not offer (wire.go). go-milter has no handler for SMFIC_UNKNOWN, so unknown SMTP
// commands must not be sent (OptNoUnknown). HDR_LEADSPC makes Postfix pass
// header values byte for byte (DKIM needs the exact bytes) and insert ours
// as given, so our values start with a space.
const (
	negotiatedActions  = milter.OptAddHeader | milter.OptChangeHeader | milter.OptQuarantine | milter.OptSetSymList
	negotiatedProtocol = milter.OptNoUnknown | milter.OptHeaderLeadingSpace | optionalOpts
)

// mailMacros are requested for the MAIL FROM stage. The list replaces
// Postfix's milter_mail_macros, so it names everything we read there. Postfix
// sends neither s (the HELO name: Sendmail's) nor, before RCPT, i; they are
// asked for so that an MTA which has them gives them, and i is read again at
// end of message.
var mailMacros = []string{"{client_addr}", "{client_name}", "s", "i", "j", "{auth_authen}", "{auth_type}"}

// Server accepts milter connections and runs one session per connection.
type Server struct {
	engine atomic.Pointer[Engine]
	log    *slog.Logger

	mu        sync.Mutex
	conns     map[*trackedConn]struct{}
	listeners []net.Listener
	shutdown  bool
	wg        sync.WaitGroup
	nextID    atomic.Uint64
}

// NewServer returns a server that evaluates messages with e. log may be nil.
func NewServer(e *Engine, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{log: log, conns: map[*trackedConn]struct{}{}}
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

// startSession registers the connection and runs a go-milter server on it
// alone: its NewMilter closure gives every backend go-milter creates (one per
// message) the same connection state.
func (s *Server) startSession(raw net.Conn) {
	e := s.engine.Load()
	tc := newTrackedConn(context.Background(), raw, e.cfg.Timeouts.Idle)
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		raw.Close()
		return
	}
	s.conns[tc] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()

	c := &connection{srv: s, tc: tc, id: s.nextID.Add(1)}
	ms := &milter.Server{
		NewMilter: func() milter.Milter { return &session{c: c} },
		Actions:   negotiatedActions,
		Protocol:  negotiatedProtocol,
		SymList:   map[milter.Stage][]string{milter.StageMailFrom: mailMacros},
	}
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.conns, tc)
			s.mu.Unlock()
			tc.Close()
			c.closeTx()
		}()
		_ = ms.Serve(&oneConnListener{conn: tc})
	}()
}

// Shutdown stops accepting, closes idle connections, lets messages in flight
// finish, and closes what remains when ctx ends. It returns ctx.Err() when
// it had to cut connections.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	for _, ln := range s.listeners {
		ln.Close()
	}
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.drain()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// ActiveConnections is the number of open milter connections.
func (s *Server) ActiveConnections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
