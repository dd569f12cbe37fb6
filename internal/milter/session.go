package milter

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"strings"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/internal/milterproto"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// connection is the state of one milter connection (one SMTP session, or
// several in a row when the MTA sends SMFIC_QUIT_NC). It is the
// milterproto.Handler of its connection: every callback runs on the
// connection's one Serve goroutine, and so does closeTx after Serve
// returns, so the state needs no lock.
type connection struct {
	srv  *Server
	ps   *milterproto.Session
	opts milterproto.Options // this connection's (the idle timeout is read at accept)
	id   uint64

	// ctx is the parent of every message context; cancel ends it when the
	// connection closes (also when Shutdown cuts it from another goroutine).
	ctx    context.Context
	cancel context.CancelFunc

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
	// bypassed is the decision of a message bypassed at MAIL FROM whose
	// accept, with the MTA reading no reply there, waits for the end of
	// message (its verdict line too).
	bypassed *Decision
	// connFailed is set when the connect or HELO callback panicked under
	// on_error = "tempfail" while the MTA reads no reply at that stage:
	// every message of the connection gets the on_error reply at its end,
	// as the tempfail reply to the connection would have given.
	connFailed error
}

var _ milterproto.Handler = (*connection)(nil)

// Connect records the client; it arrives once per SMTP session.
func (c *connection) Connect(host []byte, family milterproto.Family, _ uint16, addr []byte) (resp milterproto.Response) {
	defer c.guard("connect", &resp)
	c.srv.engine.Load().at("connect")
	c.clientIP = netip.Addr{}
	if family == milterproto.FamilyInet || family == milterproto.FamilyInet6 {
		if a, err := netip.ParseAddr(string(addr)); err == nil && a.Zone() == "" {
			c.clientIP = a.Unmap()
		}
	}
	c.clientName = string(host)
	c.noteMacros()
	if c.srv.log.Enabled(c.ctx, slog.LevelDebug) {
		c.srv.log.Debug("milter connection", "conn", c.id, "protocol", protocolNames(c.ps.Negotiated().Protocol))
	}
	return milterproto.Continue
}

// Helo records the HELO/EHLO name (sent again after STARTTLS).
func (c *connection) Helo(name []byte) (resp milterproto.Response) {
	defer c.guard("helo", &resp)
	c.srv.engine.Load().at("helo")
	c.helo = string(name)
	c.noteMacros()
	return milterproto.Continue
}

// Mail starts a message. The address arrives in angle brackets, which are
// removed ("<>" becomes the empty null sender); ESMTP arguments are not
// used.
func (c *connection) Mail(from []byte, _ milterproto.Args) (resp milterproto.Response) {
	defer c.guard("mail", &resp)
	c.resetTx()
	c.noteMacros()
	env := c.envelope(string(milterproto.StripAngles(from)))
	c.started = time.Now()
	e := c.srv.engine.Load()
	c.hyg = newHygiene(e.authservID(env.MTAHost), e.cfg.Actions.QuarantineHeader)
	if c.connFailed != nil {
		c.failed = c.connFailed // answered at end of message (guard)
		return milterproto.Continue
	}
	tx := e.Begin(c.ctx, env)
	if tx.Bypassed() {
		// Trusted network: nothing more to do for this message. Its
		// context is released now, even if End panics (a Transaction not
		// closed stays registered with the connection's context until the
		// connection ends: one per message on a connection kept for
		// hours).
		d := func() *Decision { defer tx.Close(); return tx.End() }()
		if !c.ps.Replies(milterproto.CmdMail) {
			// The MTA reads no reply to MAIL: the accept is given at end
			// of message, and so is the verdict line, with the queue id
			// the MTA has by then (Postfix assigns it at the first
			// accepted RCPT: macro i is empty at MAIL FROM). The fields
			// of the message are not looked at (c.hyg nil).
			c.hyg, c.bypassed = nil, d
			return milterproto.Continue
		}
		c.logVerdict(d)
		return milterproto.Accept
	}
	c.tx = tx
	return milterproto.Continue
}

// Rcpt records the recipient (for the verdict's report row; recipients
// do not change the DMARC outcome).
func (c *connection) Rcpt(to []byte, _ milterproto.Args) (resp milterproto.Response) {
	defer c.guard("rcpt", &resp)
	if c.tx != nil {
		c.tx.AddRcpt(string(milterproto.StripAngles(to)))
	}
	return milterproto.Continue
}

// Data is the DATA command (not sent when SMFIP_NODATA is negotiated).
func (c *connection) Data() milterproto.Response { return milterproto.Continue }

// Unknown is an SMTP command the MTA does not know (not sent when
// SMFIP_NOUNKNOWN is honoured): nothing to do with it.
func (c *connection) Unknown([]byte) milterproto.Response { return milterproto.Continue }

// Header passes one header field, value byte for byte (HDR_LEADSPC).
func (c *connection) Header(name, value []byte) (resp milterproto.Response) {
	defer c.guard("header", &resp)
	if c.hyg == nil && c.tx == nil {
		return milterproto.Continue
	}
	n, v := string(name), string(value)
	if c.hyg != nil {
		c.hyg.add(n, v)
	}
	if c.tx != nil {
		c.tx.Header(n, v)
	}
	return milterproto.Continue
}

// EndOfHeaders is the end of the header block.
func (c *connection) EndOfHeaders() (resp milterproto.Response) {
	defer c.guard("eoh", &resp)
	if c.tx != nil {
		c.tx.EndOfHeaders()
	}
	return milterproto.Continue
}

// Body streams a body chunk into the DKIM verifier.
func (c *connection) Body(chunk []byte) (resp milterproto.Response) {
	defer c.guard("body", &resp)
	if c.tx != nil {
		c.tx.BodyChunk(chunk)
	}
	return milterproto.Continue
}

// EndOfMessage joins, decides, modifies and replies; the modifications and
// the reply go out in one write.
func (c *connection) EndOfMessage(m *milterproto.Modifier) (resp milterproto.Response) {
	defer c.guard("eom", &resp)
	c.noteMacros()
	if d := c.bypassed; d != nil {
		// Bypassed at MAIL FROM while the MTA read no reply there.
		c.logVerdict(d)
		c.resetTx()
		return milterproto.Accept
	}
	d := c.endDecision()
	if d == nil {
		return milterproto.Accept // no message in progress
	}
	c.logVerdict(d)
	c.resetTx()
	if err := applyModifications(m, d); err != nil {
		// An action the MTA did not grant us (or a value that cannot be
		// sent): better a closed session, which the MTA answers with its
		// milter_default_action, than a message without its changes.
		c.srv.log.Error("end-of-message modifications refused, closing the connection", "conn", c.id, "queue_id", d.QueueID, "err", err.Error())
		c.ps.Close()
		return milterproto.TempFail
	}
	return d.response()
}

// Abort ends the message without a reply (Postfix sends it after every
// transaction, and when the client gives up).
func (c *connection) Abort() {
	defer func() {
		if v := recover(); v != nil {
			c.logPanic("abort", v)
		}
	}()
	c.resetTx()
}

// Reset ends the SMTP session while the MTA keeps the connection for the
// next one (SMFIC_QUIT_NC): everything learnt about the client goes.
func (c *connection) Reset() {
	c.Abort()
	c.clientIP, c.clientName, c.helo, c.mta = netip.Addr{}, "", "", ""
	c.connFailed = nil
}

// guard recovers a panic in a callback: the message gets the on_error
// action and the connection keeps serving.
//
// The on_error reply is given at end of message, with continue until then,
// when on_error = "accept" (only there may forged Authentication-Results be
// deleted, RFC 8601 §5; accepting earlier would deliver them) and at every
// stage whose reply the MTA may not read (the NR flags negotiated in
// milterproto). A "tempfail" at MAIL (when the MTA reads that reply) or at
// end of message is given at once. A panic at connect or HELO leaves no
// message to fail: the session continues under on_error = "accept"; under
// "tempfail" the connection gets the tempfail reply, or, when the MTA reads
// no reply at that stage, each of its messages gets it at its end.
func (c *connection) guard(stage string, resp *milterproto.Response) {
	v := recover()
	if v == nil {
		return
	}
	c.logPanic(stage, v)
	e := c.srv.engine.Load()
	hyg := c.hyg
	c.resetTx()
	accept := e.cfg.OnError == config.ErrorAccept
	switch {
	case stage == "connect" || stage == "helo":
		*resp = e.errorResponse()
		switch {
		case accept:
			*resp = milterproto.Continue
		case c.noReplyStage(stage):
			c.connFailed = fmt.Errorf("panic at %s: %v", stage, v)
			*resp = milterproto.Continue
		}
	case stage != "eom" && (accept || c.noReplyStage(stage) || stage == "rcpt"):
		// A reply at RCPT would refuse that one recipient and let the
		// message go on unevaluated: the failure is answered at end of
		// message instead, like at the no-reply stages.
		c.hyg, c.failed = hyg, fmt.Errorf("panic at %s: %v", stage, v)
		*resp = milterproto.Continue
	default:
		*resp = e.errorResponse()
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
		return !c.ps.Replies(milterproto.CmdConnect)
	case "helo":
		return !c.ps.Replies(milterproto.CmdHelo)
	case "mail":
		return !c.ps.Replies(milterproto.CmdMail)
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
	c.hyg, c.failed, c.bypassed = nil, nil, nil
}

// closeTx is called when the connection ends, on its Serve goroutine.
func (c *connection) closeTx() {
	c.resetTx()
}

// noteMacros keeps the macros that may arrive at several stages. The
// macro tables hold every stage's macros so far (milterproto.Macros), so
// the latest value wins; a string is made only when a value changes.
func (c *connection) noteMacros() {
	mac := c.ps.Macros()
	if v, _ := mac.Get("i"); len(v) > 0 && string(v) != c.queueID {
		c.queueID = string(v)
	}
	if v, _ := mac.Get("j"); len(v) > 0 && string(v) != c.mta {
		c.mta = string(v)
	}
}

// envelope builds the message's envelope from the connection state and the
// MAIL stage macros (requested with the symbol list). The macros win for the
// client address: with a proxy or XCLIENT they are what Postfix believes.
func (c *connection) envelope(from string) Envelope {
	mac := c.ps.Macros()
	env := Envelope{
		ClientIP:   c.clientIP,
		ClientName: c.clientName,
		Helo:       c.helo,
		MailFrom:   from,
		AuthUser:   mac.GetString("{auth_authen}"),
		MTAHost:    c.mta,
	}
	if v, _ := mac.Get("{client_addr}"); len(v) > 0 {
		if a, ok := parseClientAddr(string(v)); ok {
			env.ClientIP = a
		}
	}
	if v, _ := mac.Get("{client_name}"); len(v) > 0 {
		env.ClientName = string(v)
	}
	if env.Helo == "" {
		// Sendmail sends the HELO name as macro s; Postfix never does (its
		// HELO arrives with the HELO event, kept per connection).
		env.Helo = mac.GetString("s")
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
	c.srv.log.LogAttrs(c.ctx, slog.LevelInfo, "verdict", d.LogAttrs()...)
	if d.Err != nil {
		// The verdict line says "internal error"; this one says which (a
		// panic in one of the message's goroutines carries its stack).
		c.srv.log.Error("message failed, on_error applied", "queue_id", d.QueueID, "action", string(d.Action), "err", d.Err.Error())
	}
	if c.srv.log.Enabled(c.ctx, slog.LevelDebug) {
		c.srv.log.LogAttrs(c.ctx, slog.LevelDebug, "trace", slog.String("queue_id", d.QueueID), slog.String("steps", strings.Join(d.Trace, " | ")))
	}
}

// applyModifications deletes forged headers (highest index first, as
// computed), inserts ours at the top, and holds the message if asked.
func applyModifications(m *milterproto.Modifier, d *Decision) error {
	for _, h := range d.Delete {
		if err := m.ChangeHeader(uint32(h.Index), h.Name, ""); err != nil {
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
func (e *Engine) errorResponse() milterproto.Response {
	if e.cfg.OnError == config.ErrorAccept {
		return milterproto.Accept
	}
	return milterproto.ReplyCode(escapeReply(e.cfg.Actions.ErrorReply))
}
