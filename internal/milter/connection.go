package milter

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/internal/milterproto"
)

// connection is one milter connection: one SMTP session, or several in a
// row when the MTA sends SMFIC_QUIT_NC. It keeps what belongs to the
// session (the client, HELO, the HELO SPF memo) and the message in
// progress, whose state is the Transaction's. Every callback runs on the
// connection's one Serve goroutine, so the state needs no lock.
type connection struct {
	engine *atomic.Pointer[Engine] // the server's current engine
	log    *slog.Logger
	ps     *milterproto.Session
	opts   milterproto.Options // this connection's (the idle timeout is read at accept)
	id     uint64

	// ctx is the parent of every message context; cancel ends it when
	// Shutdown cuts the connection from another goroutine. A connection
	// that ends by itself has already cancelled its message (resetTx), so
	// ctx is kept for the next connection served by this value: a new
	// context per connection costs its allocations again (its done
	// channel, its map of children).
	ctx    context.Context
	cancel context.CancelFunc

	clientIP   netip.Addr
	clientName string
	helo       string
	mta        string // macro j
	heloSPF    HeloSPFMemo
	// connFailed is set when the connect or HELO callback panicked under
	// on_error = "tempfail" while the MTA reads no reply there: each
	// message of the session gets the on_error reply at its end.
	connFailed error

	tx *Transaction // the message in progress, nil between messages

	// field is a header field's name and value joined, so that both
	// become strings in one allocation.
	field []byte
	// lastMTA is macro j of an earlier connection (Postfix sends the same
	// one every time): kept so that the string is not made again.
	lastMTA string
}

var _ milterproto.Handler = (*connection)(nil)

// Connect records the client; it arrives once per SMTP session.
func (c *connection) Connect(host []byte, family milterproto.Family, _ uint16, addr []byte) (resp milterproto.Response) {
	defer c.guard(milterproto.CmdConnect, &resp)
	c.engine.Load().at("connect")
	c.clientIP = netip.Addr{}
	if family == milterproto.FamilyInet || family == milterproto.FamilyInet6 {
		if a, err := netip.ParseAddr(string(addr)); err == nil && a.Zone() == "" {
			c.clientIP = a.Unmap()
		}
	}
	c.clientName = string(host)
	c.noteMacros()
	if c.log.Enabled(c.ctx, slog.LevelDebug) {
		c.log.Debug("milter connection", "conn", c.id, "protocol", protocolNames(c.ps.Negotiated().Protocol))
	}
	return milterproto.Continue
}

// Helo records the HELO/EHLO name (sent again after STARTTLS).
func (c *connection) Helo(name []byte) (resp milterproto.Response) {
	defer c.guard(milterproto.CmdHelo, &resp)
	c.engine.Load().at("helo")
	c.helo = string(name)
	c.noteMacros()
	return milterproto.Continue
}

// Mail starts a message. The address arrives in angle brackets, which are
// removed ("<>" becomes the empty null sender).
func (c *connection) Mail(from []byte, _ milterproto.Args) (resp milterproto.Response) {
	defer c.guard(milterproto.CmdMail, &resp)
	c.resetTx()
	c.noteMacros()
	env := c.envelope(string(milterproto.StripAngles(from)))
	tx := NewTransaction(c.ctx, c.engine.Load(), env, &c.heloSPF)
	c.tx = tx
	c.noteMacros() // the queue id, when the MTA has one already
	if c.connFailed != nil {
		tx.Fail(c.connFailed)
		return milterproto.Continue
	}
	tx.Start()
	if !tx.Bypassed() {
		return milterproto.Continue
	}
	// Trusted network: decided now, and its context released now.
	d := func() *Decision { defer tx.Close(); return tx.End() }()
	if !c.ps.Replies(milterproto.CmdMail) {
		// The MTA reads no reply here: the accept and the verdict line
		// wait for the end of message, and its queue id (Postfix assigns
		// it at the first accepted RCPT).
		return milterproto.Continue
	}
	c.logVerdict(d)
	c.tx = nil
	return milterproto.Accept
}

// Rcpt records the recipient (for the report rows; recipients do not
// change the DMARC outcome).
func (c *connection) Rcpt(to []byte, _ milterproto.Args) (resp milterproto.Response) {
	defer c.guard(milterproto.CmdRcpt, &resp)
	if c.tx != nil {
		c.tx.AddRcpt(string(milterproto.StripAngles(to)))
	}
	return milterproto.Continue
}

// Data is the DATA command (not sent when SMFIP_NODATA is negotiated).
func (c *connection) Data() milterproto.Response { return milterproto.Continue }

// Unknown is an SMTP command the MTA does not know: nothing to do with it.
func (c *connection) Unknown([]byte) milterproto.Response { return milterproto.Continue }

// Header passes one header field, value byte for byte (HDR_LEADSPC).
func (c *connection) Header(name, value []byte) (resp milterproto.Response) {
	defer c.guard(milterproto.CmdHeader, &resp)
	if c.tx != nil {
		c.field = append(append(c.field[:0], name...), value...)
		f := string(c.field)
		c.tx.Header(f[:len(name)], f[len(name):])
		if cap(c.field) > maxKeptField {
			c.field = nil
		}
	}
	return milterproto.Continue
}

// EndOfHeaders is the end of the header block.
func (c *connection) EndOfHeaders() (resp milterproto.Response) {
	defer c.guard(milterproto.CmdEOH, &resp)
	if c.tx != nil {
		c.tx.EndOfHeaders()
	}
	return milterproto.Continue
}

// Body streams a body chunk into the DKIM verifier.
func (c *connection) Body(chunk []byte) (resp milterproto.Response) {
	defer c.guard(milterproto.CmdBody, &resp)
	if c.tx != nil {
		c.tx.BodyChunk(chunk)
	}
	return milterproto.Continue
}

// EndOfMessage gives the message's decision; the modifications and the
// reply go out in one write.
func (c *connection) EndOfMessage(m *milterproto.Modifier) (resp milterproto.Response) {
	defer c.guard(milterproto.CmdEOM, &resp)
	c.noteMacros()
	tx := c.tx
	if tx == nil {
		return milterproto.Accept // no message in progress
	}
	d := c.end(tx)
	tx.HandOver(d) // report mail for the intake (capture.go)
	c.logVerdict(d)
	c.resetTx()
	if err := applyModifications(m, d); err != nil {
		// An action the MTA did not grant us: better a closed session,
		// which the MTA answers with its milter_default_action, than a
		// message without its changes.
		c.log.Error("end-of-message modifications refused, closing the connection", "conn", c.id, "queue_id", d.QueueID, "err", err.Error())
		c.ps.Close()
		return milterproto.TempFail
	}
	return d.response()
}

// end is tx's decision, the on_error one when End panics.
func (c *connection) end(tx *Transaction) (d *Decision) {
	defer func() {
		if v := recover(); v != nil {
			c.logPanic("eom", v)
			d = tx.EndAfterPanic(v)
		}
	}()
	return tx.End()
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

// guard recovers a panic in the callback of cmd: the message gets the
// on_error decision and the connection keeps serving. The on_error reply
// is given at once where the MTA reads it and nothing is lost by it;
// otherwise the message goes on, failed, to its end (see answeredAtEnd).
func (c *connection) guard(cmd milterproto.Command, resp *milterproto.Response) {
	v := recover()
	if v == nil {
		return
	}
	stage := stageName(cmd)
	c.logPanic(stage, v)
	e := c.engine.Load()
	err := fmt.Errorf("panic at %s: %v", stage, v)
	accept := e.cfg.OnError == config.ErrorAccept
	switch {
	case cmd == milterproto.CmdConnect || cmd == milterproto.CmdHelo:
		// No message to fail: the session goes on under accept; under
		// tempfail the reply goes to the connection, or to each of its
		// messages at their end when the MTA reads none here.
		*resp = milterproto.Continue
		switch {
		case accept:
		case !c.ps.Replies(cmd):
			c.connFailed = err
		default:
			*resp = e.errorResponse()
		}
	case c.answeredAtEnd(cmd, accept):
		c.failTx(err)
		*resp = milterproto.Continue
	default:
		c.resetTx()
		*resp = e.errorResponse()
	}
}

// answeredAtEnd reports whether a failure at cmd is answered at the end of
// the message: under on_error = "accept" (forged Authentication-Results
// can only be deleted there, RFC 8601 §5), at RCPT (a reply would refuse
// that recipient only), at the header events (continue is their only
// reply) and wherever the MTA reads no reply.
func (c *connection) answeredAtEnd(cmd milterproto.Command, accept bool) bool {
	switch cmd {
	case milterproto.CmdEOM:
		return false
	case milterproto.CmdRcpt, milterproto.CmdHeader, milterproto.CmdEOH, milterproto.CmdBody:
		return true
	}
	return accept || !c.ps.Replies(cmd)
}

// failTx fails the message in progress (one made for the purpose when the
// failure came before it).
func (c *connection) failTx(err error) {
	if c.tx == nil {
		c.tx = NewTransaction(c.ctx, c.engine.Load(), Envelope{ClientIP: c.clientIP, Helo: c.helo, MTAHost: c.mta}, nil)
	}
	c.tx.Fail(err)
}

// stageName names the milter event of cmd in logs and metrics.
func stageName(cmd milterproto.Command) string {
	switch cmd {
	case milterproto.CmdConnect:
		return "connect"
	case milterproto.CmdHelo:
		return "helo"
	case milterproto.CmdMail:
		return "mail"
	case milterproto.CmdRcpt:
		return "rcpt"
	case milterproto.CmdHeader:
		return "header"
	case milterproto.CmdEOH:
		return "eoh"
	case milterproto.CmdBody:
		return "body"
	case milterproto.CmdEOM:
		return "eom"
	}
	return string(rune(cmd))
}

func (c *connection) logPanic(stage string, v any) {
	c.engine.Load().metrics.Panic(stage)
	c.log.Error("panic in milter callback", "stage", stage, "conn", c.id, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
}

// resetTx cancels and forgets the message in progress: the one place a
// message ends.
func (c *connection) resetTx() {
	if c.tx != nil {
		c.tx.Close()
		c.tx = nil
	}
}

// maxKeptField bounds the header field buffer kept between fields.
const maxKeptField = 16 << 10

// forget clears what the connection knew of its SMTP sessions, before it
// is kept for the next connection (its session keeps its buffers).
func (c *connection) forget() {
	c.clientIP, c.clientName, c.helo, c.mta = netip.Addr{}, "", "", ""
	c.heloSPF = HeloSPFMemo{}
	c.connFailed = nil
	c.tx = nil
}

// close closes the socket and cancels everything derived from the
// connection; any goroutine may call it, under the server's lock.
func (c *connection) close() {
	c.cancel()
	c.ps.Close()
}

// noteMacros keeps the macros that may arrive at several stages. The
// macro tables hold every stage's macros so far, so the latest value wins.
func (c *connection) noteMacros() {
	mac := c.ps.Macros()
	if v, _ := mac.Get("i"); len(v) > 0 && c.tx != nil {
		c.tx.SetQueueID(v)
	}
	if v, _ := mac.Get("j"); len(v) > 0 && string(v) != c.mta {
		if string(v) != c.lastMTA {
			c.lastMTA = string(v)
		}
		c.mta = c.lastMTA
	}
}

// envelope builds the message's envelope from the connection state and the
// MAIL stage macros. The macros win for the client address: with a proxy
// or XCLIENT they are what Postfix believes.
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
		env.Helo = mac.GetString("s") // Sendmail's HELO macro; Postfix sends the HELO event
	}
	return env
}

// parseClientAddr reads the {client_addr} macro. Postfix writes an IPv6
// client as "IPv6:2001:db8::25", and some MTAs bracket the address.
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

// logVerdict writes the one INFO line per message, counts it and hands it
// to the recorder. The record goes to the handler without the caller's
// program counter, which Logger.LogAttrs would look up (runtime.Callers,
// about 0.7 % of the CPU at one message per connection) for a source our
// handler does not print.
func (c *connection) logVerdict(d *Decision) {
	e := c.engine.Load()
	e.metrics.Message(d)
	if e.recorder != nil {
		e.recorder.Record(d) // the aggregate reports: queued, never waits
	}
	if h := c.log.Handler(); h.Enabled(c.ctx, slog.LevelInfo) {
		r := slog.NewRecord(time.Now(), slog.LevelInfo, "verdict", 0)
		r.AddAttrs(d.LogAttrs()...)
		_ = h.Handle(c.ctx, r)
	}
	if d.Err != nil {
		// The verdict line says "internal error"; this one says which.
		c.log.Error("message failed, on_error applied", "queue_id", d.QueueID, "action", string(d.Action), "err", d.Err.Error())
	}
	if c.log.Enabled(c.ctx, slog.LevelDebug) {
		c.log.LogAttrs(c.ctx, slog.LevelDebug, "trace", slog.String("queue_id", d.QueueID), slog.String("steps", strings.Join(d.Trace, " | ")))
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

// protocolNames names the flags of a protocol mask that we ask for, in the
// spelling of milter-protocol.txt (for the debug log of a connection).
func protocolNames(p milterproto.Protocol) string {
	names := []struct {
		f milterproto.Protocol
		n string
	}{
		{milterproto.ProtoNRConnect, "NR_CONN"}, {milterproto.ProtoNRHelo, "NR_HELO"},
		{milterproto.ProtoNRMail, "NR_MAIL"}, {milterproto.ProtoNRRcpt, "NR_RCPT"},
		{milterproto.ProtoNRHeader, "NR_HDR"}, {milterproto.ProtoNREOH, "NR_EOH"},
		{milterproto.ProtoNRBody, "NR_BODY"}, {milterproto.ProtoNoData, "NODATA"},
		{milterproto.ProtoNoUnknown, "NOUNKNOWN"}, {milterproto.ProtoHdrLeadSpc, "HDR_LEADSPC"},
	}
	var b strings.Builder
	for _, n := range names {
		if p&n.f != 0 {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(n.n)
		}
	}
	return b.String()
}
