package milter

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	milter "github.com/emersion/go-milter"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// connection is the state of one milter connection (one SMTP session). It
// outlives go-milter's backends, which are recreated after every message.
type connection struct {
	srv *Server
	tc  *trackedConn
	id  uint64

	mu         sync.Mutex // held by every callback; closeTx takes it too
	clientIP   netip.Addr
	clientName string
	helo       string
	mta        string // macro j
	tx         *Transaction
	queueID    string
	started    time.Time
	// hyg tracks forged A-R fields of the message apart from the
	// Transaction, and failed is set when a callback of the message
	// panicked and its on_error reply waits for the end of message (see
	// guard): the message goes on unevaluated to its end, where forged
	// fields can still be deleted.
	hyg    *hygiene
	failed error
	// connFailed is set when the connect or HELO callback panicked under
	// on_error = "tempfail" while the MTA reads no reply at that stage:
	// every message of the connection gets the on_error reply at its end,
	// as the tempfail reply to the connection would have given.
	connFailed error
}

// session is the go-milter backend. It keeps nothing itself: every callback
// works on the connection.
type session struct {
	c *connection
}

var _ milter.Milter = (*session)(nil)

// Connect records the client; it arrives once per connection.
func (s *session) Connect(host, family string, port uint16, addr net.IP, m *milter.Modifier) (resp milter.Response, err error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.guard("connect", &resp, &err)
	c.srv.engine.Load().at("connect")
	if a, ok := netip.AddrFromSlice(addr); ok {
		c.clientIP = a.Unmap()
	}
	c.clientName = host
	c.noteMacros(m.Macros)
	if c.srv.log.Enabled(c.tc.ctx, slog.LevelDebug) {
		c.srv.log.Debug("milter connection", "conn", c.id, "protocol", protocolNames(c.tc.out.proto))
	}
	return milter.RespContinue, nil
}

// Helo records the HELO/EHLO name (sent again after STARTTLS).
func (s *session) Helo(name string, m *milter.Modifier) (resp milter.Response, err error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.guard("helo", &resp, &err)
	c.srv.engine.Load().at("helo")
	c.helo = name
	c.noteMacros(m.Macros)
	return milter.RespContinue, nil
}

// MailFrom starts a message. The macros of this stage are copied here:
// go-milter replaces its macro map on every packet.
func (s *session) MailFrom(from string, m *milter.Modifier) (resp milter.Response, err error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.guard("mail", &resp, &err)
	c.resetTx()
	c.tc.beginMessage()
	c.noteMacros(m.Macros)
	env := c.envelope(from, m.Macros)
	c.started = time.Now()
	e := c.srv.engine.Load()
	c.hyg = newHygiene(e.authservID(env.MTAHost), e.cfg.Actions.QuarantineHeader)
	if c.connFailed != nil {
		c.failed = c.connFailed // answered at end of message (guard)
		return milter.RespContinue, nil
	}
	tx := e.Begin(c.tc.ctx, env)
	if tx.Bypassed() {
		// Trusted network: nothing more to do for this message.
		c.logVerdict(tx.End())
		if c.tc.noReply(cmdMail) {
			// The MTA reads no reply to MAIL: the accept is given at end
			// of message, where no Transaction means accept unchanged.
			return milter.RespContinue, nil
		}
		c.tc.endMessage()
		return milter.RespAccept, nil
	}
	c.tx = tx
	return milter.RespContinue, nil
}

// RcptTo records the recipient (for the verdict's report row; recipients
// do not change the DMARC outcome).
func (s *session) RcptTo(rcpt string, m *milter.Modifier) (resp milter.Response, err error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.guard("rcpt", &resp, &err)
	if c.tx != nil {
		c.tx.AddRcpt(rcpt)
	}
	return milter.RespContinue, nil
}

// Header passes one header field, value byte for byte (HDR_LEADSPC).
func (s *session) Header(name, value string, m *milter.Modifier) (resp milter.Response, err error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.guard("header", &resp, &err)
	// go-milter keeps every header field of the message in m.Headers (a
	// map we never read) until the next ABORT: empty it, so that a message
	// with many fields is not held twice.
	clear(m.Headers)
	c.noteMacros(m.Macros)
	if c.hyg != nil {
		c.hyg.add(name, value)
	}
	if c.tx != nil {
		c.tx.Header(name, value)
	}
	return milter.RespContinue, nil
}

// Headers is the end of the header block.
func (s *session) Headers(_ textproto.MIMEHeader, m *milter.Modifier) (resp milter.Response, err error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.guard("eoh", &resp, &err)
	c.noteMacros(m.Macros)
	if c.tx != nil {
		c.tx.EndOfHeaders()
	}
	return milter.RespContinue, nil
}

// BodyChunk streams the body into the DKIM verifier.
func (s *session) BodyChunk(chunk []byte, m *milter.Modifier) (resp milter.Response, err error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.guard("body", &resp, &err)
	if c.tx != nil {
		c.tx.BodyChunk(chunk)
	}
	return milter.RespContinue, nil
}

// Body is the end of the message: join, decide, modify, reply.
func (s *session) Body(m *milter.Modifier) (resp milter.Response, err error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.tc.endMessage()
	defer c.guard("eom", &resp, &err)
	c.noteMacros(m.Macros)
	d := c.endDecision()
	if d == nil {
		return milter.RespAccept, nil // no message in progress
	}
	c.logVerdict(d)
	c.resetTx()
	if err := applyModifications(m, d); err != nil {
		// The socket is broken: returning the error closes the session.
		return nil, fmt.Errorf("milter: modifications: %w", err)
	}
	return d.response(), nil
}

// Abort ends the message without a reply (Postfix sends it after every
// transaction, and when the client gives up).
func (s *session) Abort(m *milter.Modifier) (err error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	defer func() {
		if v := recover(); v != nil {
			c.logPanic("abort", v)
			err = nil
		}
	}()
	c.resetTx()
	c.tc.abortMessage()
	return nil
}

// guard recovers a panic in a callback: the message gets the on_error
// action and the connection keeps serving (go-milter's own recovery would
// close it and leave the decision to milter_default_action).
//
// The on_error reply is given at end of message, with continue until then,
// when on_error = "accept" (only there may forged Authentication-Results be
// deleted, RFC 8601 §5; accepting earlier would deliver them) and at every
// stage whose reply the MTA may not read (the NR flags, wire.go). A
// "tempfail" at MAIL (when the MTA reads that reply) or at end of message is
// given at once. A panic at connect or HELO leaves no message to fail: the
// session continues under on_error = "accept"; under "tempfail" the
// connection gets the tempfail reply, or, when the MTA reads no reply at
// that stage, each of its messages gets it at its end.
func (c *connection) guard(stage string, resp *milter.Response, err *error) {
	v := recover()
	if v == nil {
		return
	}
	c.logPanic(stage, v)
	e := c.srv.engine.Load()
	hyg := c.hyg
	c.resetTx()
	*err = nil
	accept := e.cfg.OnError == config.ErrorAccept
	switch {
	case stage == "connect" || stage == "helo":
		*resp = e.errorResponse()
		switch {
		case accept:
			*resp = milter.RespContinue
		case c.noReplyStage(stage):
			c.connFailed = fmt.Errorf("panic at %s: %v", stage, v)
			*resp = milter.RespContinue
		}
	case stage != "eom" && (accept || c.noReplyStage(stage) || stage == "rcpt"):
		// A reply at RCPT would refuse that one recipient and let the
		// message go on unevaluated: the failure is answered at end of
		// message instead, like at the no-reply stages.
		c.hyg, c.failed = hyg, fmt.Errorf("panic at %s: %v", stage, v)
		*resp = milter.RespContinue
	default:
		*resp = e.errorResponse()
		c.tc.endMessage()
	}
}

// noReplyStage reports whether stage is one whose reply the MTA may have
// been told not to read: a header field, the end of the header block and a
// body chunk always count (continue is the only reply there even when the
// MTA reads it), connect, HELO and MAIL when their NR flag was negotiated.
func (c *connection) noReplyStage(stage string) bool {
	switch stage {
	case "header", "eoh", "body":
		return true
	case "connect":
		return c.tc.noReply(cmdConn)
	case "helo":
		return c.tc.noReply(cmdHelo)
	case "mail":
		return c.tc.noReply(cmdMail)
	}
	return false
}

// endDecision is the decision at end of message: the Transaction's, or
// the on_error one when a callback of the message failed or the
// Transaction panics now. It is nil when no message is in progress.
func (c *connection) endDecision() (d *Decision) {
	if c.tx == nil && c.failed == nil {
		return nil
	}
	defer func() {
		if v := recover(); v != nil {
			c.logPanic("eom", v)
			d = c.errorDecision(fmt.Errorf("panic at eom: %v", v))
		}
	}()
	if c.failed != nil {
		return c.errorDecision(c.failed)
	}
	return c.tx.End()
}

// errorDecision is the on_error decision made by the session itself. An
// accepted message still loses its forged Authentication-Results.
func (c *connection) errorDecision(err error) *Decision {
	e := c.srv.engine.Load()
	d := &Decision{Action: policy.ActionTempFail, AuthservID: e.authservID(c.mta), Err: err, Reason: "internal error"}
	if e.cfg.OnError == config.ErrorAccept {
		d.Action = policy.ActionAccept
		d.Delete = c.hyg.forged()
	} else {
		d.Reply = escapeReply(e.cfg.Actions.ErrorReply)
	}
	return d
}

func (c *connection) logPanic(stage string, v any) {
	c.srv.engine.Load().metrics.Panic(stage)
	c.srv.log.Error("panic in milter callback", "stage", stage, "conn", c.id, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
}

// resetTx cancels and forgets the message in flight.
func (c *connection) resetTx() {
	if c.tx != nil {
		c.tx.Close()
		c.tx = nil
	}
	c.queueID = ""
	c.hyg, c.failed = nil, nil
}

// closeTx is called when the connection ends.
func (c *connection) closeTx() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resetTx()
}

// noteMacros keeps the macros that may arrive at several stages.
func (c *connection) noteMacros(m map[string]string) {
	if v := m["i"]; v != "" {
		c.queueID = v
	}
	if v := m["j"]; v != "" {
		c.mta = v
	}
}

// envelope builds the message's envelope from the connection state and the
// MAIL stage macros (requested with the symbol list). The macros win for the
// client address: with a proxy or XCLIENT they are what Postfix believes.
func (c *connection) envelope(from string, mac map[string]string) Envelope {
	env := Envelope{
		ClientIP:   c.clientIP,
		ClientName: c.clientName,
		Helo:       c.helo,
		MailFrom:   from,
		AuthUser:   mac["{auth_authen}"],
		MTAHost:    c.mta,
	}
	if a, ok := parseClientAddr(mac["{client_addr}"]); ok {
		env.ClientIP = a
	}
	if v := mac["{client_name}"]; v != "" {
		env.ClientName = v
	}
	if env.Helo == "" {
		// Sendmail sends the HELO name as macro s; Postfix never does (its
		// HELO arrives with the HELO event, kept per connection).
		env.Helo = mac["s"]
	}
	return env
}

// parseClientAddr reads the {client_addr} macro. Postfix writes an IPv6
// client as "IPv6:2001:db8::25" (checked on Postfix 3.7 with XCLIENT), and
// some MTAs bracket the address.
func parseClientAddr(v string) (netip.Addr, bool) {
	v = strings.Trim(v, "[]")
	if len(v) > 5 && strings.EqualFold(v[:5], "ipv6:") {
		v = v[5:]
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// logVerdict writes the one INFO line per message and counts it.
func (c *connection) logVerdict(d *Decision) {
	d.QueueID = c.queueID
	d.Duration = time.Since(c.started)
	e := c.srv.engine.Load()
	e.metrics.Message(d)
	c.srv.log.LogAttrs(c.tc.ctx, slog.LevelInfo, "verdict", d.LogAttrs()...)
	if d.Err != nil {
		// The verdict line says "internal error"; this one says which (a
		// panic in one of the message's goroutines carries its stack).
		c.srv.log.Error("message failed, on_error applied", "queue_id", d.QueueID, "action", string(d.Action), "err", d.Err.Error())
	}
	if c.srv.log.Enabled(c.tc.ctx, slog.LevelDebug) {
		c.srv.log.LogAttrs(c.tc.ctx, slog.LevelDebug, "trace", slog.String("queue_id", d.QueueID), slog.String("steps", strings.Join(d.Trace, " | ")))
	}
}

// applyModifications deletes forged headers (highest index first, as
// computed), inserts ours at the top, and holds the message if asked.
func applyModifications(m *milter.Modifier, d *Decision) error {
	for _, h := range d.Delete {
		if err := m.ChangeHeader(h.Index, h.Name, ""); err != nil {
			return err
		}
	}
	for _, f := range d.Insert {
		if err := m.InsertHeader(0, f.Name, f.Value); err != nil {
			return err
		}
	}
	for _, f := range d.Add {
		if err := m.AddHeader(f.Name, f.Value); err != nil {
			return err
		}
	}
	if d.Hold {
		return m.Quarantine(d.HoldReason)
	}
	return nil
}

// errorResponse is the on_error answer.
func (e *Engine) errorResponse() milter.Response {
	if e.cfg.OnError == config.ErrorAccept {
		return milter.RespAccept
	}
	return milter.NewResponseStr('y', escapeReply(e.cfg.Actions.ErrorReply))
}
