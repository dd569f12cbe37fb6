package milterproto

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// Handler receives the events of one connection, one at a time, from the
// Serve goroutine. Every []byte argument is a view into the read buffer,
// valid only during the call: copy (or make a string of) what is kept.
//
// The Response of an event whose reply the MTA will not read
// (Session.Replies(cmd) is false) must be Continue; anything else ends the
// session with ErrReplyAtNoReplyStage. Embed BaseHandler for the events a
// filter does not use.
type Handler interface {
	// Connect is SMFIC_CONNECT. addr is empty for FamilyUnknown.
	Connect(host []byte, family Family, port uint16, addr []byte) Response
	// Helo is SMFIC_HELO (again after STARTTLS).
	Helo(name []byte) Response
	// Mail is SMFIC_MAIL: the address as written, angle brackets included
	// (StripAngles removes them), and its ESMTP arguments.
	Mail(from []byte, args Args) Response
	// Rcpt is SMFIC_RCPT, as Mail.
	Rcpt(to []byte, args Args) Response
	// Data is SMFIC_DATA (version 4 and later MTAs).
	Data() Response
	// Unknown is SMFIC_UNKNOWN, the SMTP command line.
	Unknown(cmd []byte) Response
	// Header is one SMFIC_HEADER field: with SMFIP_HDR_LEADSPC negotiated
	// the value is as received, leading white space included; folds are
	// "\n" with Postfix. A value may hold a NUL (not from Postfix, which
	// cuts values at the first one).
	Header(name, value []byte) Response
	// EndOfHeaders is SMFIC_EOH.
	EndOfHeaders() Response
	// Body is one SMFIC_BODY chunk (and a final chunk carried by
	// SMFIC_BODYEOB, if an MTA sends one).
	Body(chunk []byte) Response
	// EndOfMessage is SMFIC_BODYEOB. Modifications go through m, only
	// here, and are written with the returned reply in one write.
	EndOfMessage(m *Modifier) Response
	// Abort is SMFIC_ABORT: the message ends, no reply is written.
	Abort()
	// Reset is SMFIC_QUIT_NC: the SMTP session ends and another one may
	// follow on this connection; no reply is written. Connection state
	// is to be forgotten.
	Reset()
}

// BaseHandler answers Continue to every event and Accept at end of
// message.
type BaseHandler struct{}

func (BaseHandler) Connect([]byte, Family, uint16, []byte) Response { return Continue }
func (BaseHandler) Helo([]byte) Response                            { return Continue }
func (BaseHandler) Mail([]byte, Args) Response                      { return Continue }
func (BaseHandler) Rcpt([]byte, Args) Response                      { return Continue }
func (BaseHandler) Data() Response                                  { return Continue }
func (BaseHandler) Unknown([]byte) Response                         { return Continue }
func (BaseHandler) Header([]byte, []byte) Response                  { return Continue }
func (BaseHandler) EndOfHeaders() Response                          { return Continue }
func (BaseHandler) Body([]byte) Response                            { return Continue }
func (BaseHandler) EndOfMessage(*Modifier) Response                 { return Accept }
func (BaseHandler) Abort()                                          {}
func (BaseHandler) Reset()                                          {}

// Options are what a filter asks for. They are read, never written, by
// every session that shares them.
type Options struct {
	// Actions are the modifications the filter may make; the MTA gets
	// the ones it offered.
	Actions Action
	// Required protocol flags are answered whether the MTA offered them
	// or not (see Negotiated.Missing); Optional ones only if it did.
	// Optional is where the SMFIP_NR_* flags belong: a no-reply flag the
	// MTA did not offer would leave it waiting for a reply we never write.
	Required, Optional Protocol
	// MacroLists are sent with SMFIF_SETSYMLIST (when Actions has it and
	// the MTA offered it): for a stage, the macros the MTA is to send,
	// replacing its own list.
	MacroLists map[Stage][]string
	// Idle is the read deadline, set before each read from the socket,
	// and the write deadline of each reply (0: none).
	Idle time.Duration
	// MaxPacket bounds a packet's length (DefaultMaxPacket when 0).
	MaxPacket int
}

// DefaultMaxPacket is the packet size limit when Options.MaxPacket is 0:
// Postfix's body chunks are at most 65535 bytes, and its largest packets
// are header fields under header_size_limit (100 KiB by default).
const DefaultMaxPacket = 1 << 20

// readerSize is the socket buffer: a whole Postfix body chunk (65535 bytes
// and the 5-byte packet head) fits, so such a packet is handed to the
// handler from the buffer without a copy.
const readerSize = 64<<10 + 1<<10

// Buffer sizes kept between packets; a larger one is dropped after use.
const (
	maxKeptBig = 256 << 10
	maxKeptOut = 16 << 10
)

// Negotiated is the outcome of option negotiation.
type Negotiated struct {
	Version  uint32   // the version answered: ours or the MTA's if lower
	Actions  Action   // Options.Actions ∩ offered
	Protocol Protocol // Required | (Optional ∩ offered)
	Offered  Protocol // the MTA's protocol mask
	// Missing are Required flags the MTA did not offer. They are answered
	// anyway, as go-milter always did and Postfix accepts; an MTA that
	// does not know them may ignore them.
	Missing Protocol
}

// Replies reports whether the MTA reads a reply to cmd: false for MACRO,
// ABORT, QUIT and QUIT_NC, and for an event whose SMFIP_NR_* flag was
// negotiated.
func (n *Negotiated) Replies(cmd Command) bool {
	switch cmd {
	case CmdMacro, CmdAbort, CmdQuit, CmdQuitNC:
		return false
	}
	return n.Protocol&noReplyFlag(cmd) == 0
}

// Session is one milter connection.
type Session struct {
	conn net.Conn
	opts *Options
	r    *bufio.Reader
	dr   deadlineReader // r's source
	max  int

	pending int    // bytes of the last packet still in r (Discard at next read)
	big     []byte // payload of a packet too big for r's buffer
	out     []byte // replies not yet written
	neg     Negotiated
	macros  Macros
	mod     Modifier
	cmd     Command // the event being handled

	mu        sync.Mutex
	inMessage bool // from MAIL to the reply that ends the message, or ABORT
	draining  bool
	closed    bool
}

// NewSession prepares a session on conn; Serve runs it. opts must not
// change while sessions use it.
func NewSession(conn net.Conn, opts *Options) *Session {
	s := &Session{conn: conn, opts: opts, max: opts.MaxPacket}
	if s.max <= 0 {
		s.max = DefaultMaxPacket
	}
	s.attachReader()
	s.mod.s = s
	return s
}

// Renew makes a session whose Serve has returned ready to serve conn, as
// NewSession with the same options would, but keeping its buffers (the
// macro tables, the reply buffer): a daemon that serves one connection
// after another saves their allocations, which matter when the MTA opens
// a connection per SMTP session. The caller makes sure that nothing calls
// Close or Drain meant for the previous connection any more.
func (s *Session) Renew(conn net.Conn) {
	s.mu.Lock()
	s.inMessage, s.draining, s.closed = false, false, false
	s.mu.Unlock()
	s.conn = conn
	s.pending, s.big = 0, nil
	s.out = s.out[:0]
	s.neg = Negotiated{}
	s.macros.clearFrom(0)
	s.cmd = 0
	s.attachReader()
}

// attachReader points the read buffer at s.conn, taking one from the pool
// when the session has none.
func (s *Session) attachReader() {
	s.dr = deadlineReader{s.conn, s.opts.Idle}
	rd := &s.dr // a pointer: no allocation to make it an io.Reader
	if s.r != nil {
		s.r.Reset(rd)
		return
	}
	if r, ok := readers.Get().(*bufio.Reader); ok {
		r.Reset(rd)
		s.r = r
		return
	}
	s.r = bufio.NewReaderSize(rd, readerSize)
}

// readers keeps the read buffers of ended sessions: an MTA that opens a
// connection per SMTP session would otherwise cost a 65 KiB allocation
// (and its zeroing) every few messages.
var readers sync.Pool

// release returns the read buffer to the pool; the session reads no more.
func (s *Session) release() {
	if s.r == nil {
		return
	}
	s.r.Reset(nil)
	readers.Put(s.r)
	s.r = nil
	s.pending = 0
	s.big = nil
}

// deadlineReader sets the idle deadline before each read from the socket.
type deadlineReader struct {
	c    net.Conn
	idle time.Duration
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if d.idle > 0 {
		_ = d.c.SetReadDeadline(time.Now().Add(d.idle))
	}
	return d.c.Read(p)
}

// Negotiated returns the outcome of option negotiation (the zero value
// before it: every event is answered).
func (s *Session) Negotiated() *Negotiated { return &s.neg }

// Replies reports whether the MTA reads a reply to cmd.
func (s *Session) Replies(cmd Command) bool { return s.neg.Replies(cmd) }

// Macros are the macros sent so far; read them from handler calls only.
func (s *Session) Macros() *Macros { return &s.macros }

// Conn is the connection.
func (s *Session) Conn() net.Conn { return s.conn }

// Close closes the connection (once); Serve then returns. It may be called
// from any goroutine.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	return s.conn.Close()
}

// Drain closes the connection now if no message is in flight, and
// otherwise as soon as its message ends (the reply that ends it is written,
// or ABORT arrives). It may be called from any goroutine.
func (s *Session) Drain() {
	s.mu.Lock()
	s.draining = true
	busy := s.inMessage
	s.mu.Unlock()
	if !busy {
		s.Close()
	}
}

// InMessage reports whether a message is in flight.
func (s *Session) InMessage() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inMessage
}

// setInMessage records a message's start or end; at an end it reports
// whether a drain asks for the connection to close now.
func (s *Session) setInMessage(v bool) (closeNow bool) {
	s.mu.Lock()
	s.inMessage = v
	closeNow = !v && s.draining
	s.mu.Unlock()
	return closeNow
}

func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// errDrained ends Serve without error after a drain.
var errDrained = errors.New("milterproto: drained")

// Serve reads and answers packets until the MTA ends the session (QUIT or
// end of stream at a packet boundary: nil), the session is closed (nil),
// or an error. The connection is closed when it returns.
func (s *Session) Serve(h Handler) error {
	defer s.release()
	defer s.Close()
	if s.r == nil {
		return net.ErrClosed // served before
	}
	for {
		cmd, p, err := s.readPacket()
		if err != nil {
			if err == io.EOF || s.isClosed() {
				return nil
			}
			return err
		}
		if err := s.dispatch(h, cmd, p); err != nil {
			if err == errQuit || err == errDrained || s.isClosed() {
				return nil
			}
			return fmt.Errorf("%w (command %q)", err, byte(cmd))
		}
	}
}

var errQuit = errors.New("milterproto: quit")

// readPacket returns the next packet's command and payload; the payload is
// valid until the next call. io.EOF only at a packet boundary.
func (s *Session) readPacket() (Command, []byte, error) {
	if s.pending > 0 {
		_, _ = s.r.Discard(s.pending)
		s.pending = 0
	}
	if cap(s.big) > maxKeptBig {
		s.big = nil
	}
	head, err := s.r.Peek(4)
	if err != nil {
		if err == io.EOF && len(head) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(head)
	if n == 0 {
		return 0, nil, ErrZeroLength
	}
	if uint64(n) > uint64(s.max) {
		return 0, nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, n)
	}
	if int(n)+4 <= s.r.Size() {
		pkt, err := s.r.Peek(4 + int(n))
		if err != nil {
			return 0, nil, unexpected(err)
		}
		s.pending = len(pkt)
		return Command(pkt[4]), pkt[5:], nil
	}
	_, _ = s.r.Discard(4)
	if cap(s.big) < int(n) {
		s.big = make([]byte, n)
	}
	s.big = s.big[:n]
	if _, err := io.ReadFull(s.r, s.big); err != nil {
		return 0, nil, unexpected(err)
	}
	return Command(s.big[0]), s.big[1:], nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// dispatch handles one packet.
func (s *Session) dispatch(h Handler, cmd Command, p []byte) error {
	s.cmd = cmd
	var r Response
	switch cmd {
	case CmdMacro:
		if !s.macros.store(p) {
			return ErrMalformed
		}
		return nil
	case CmdOptNeg:
		return s.negotiate(p)
	case CmdAbort:
		s.macros.clearFrom(slotMail)
		h.Abort()
		if s.setInMessage(false) {
			s.Close()
			return errDrained
		}
		return nil
	case CmdQuit:
		return errQuit
	case CmdQuitNC:
		s.macros.clearFrom(0)
		h.Reset()
		if s.setInMessage(false) {
			s.Close()
			return errDrained
		}
		return nil
	case CmdConnect:
		ci, ok := decodeConnect(p)
		if !ok {
			return ErrMalformed
		}
		r = h.Connect(ci.host, ci.family, ci.port, ci.addr)
	case CmdHelo:
		r = h.Helo(decodeString(p))
	case CmdMail:
		addr, args, ok := decodeAddress(p)
		if !ok {
			return ErrMalformed
		}
		s.macros.clearFrom(slotRcpt)
		s.setInMessage(true)
		r = h.Mail(addr, args)
	case CmdRcpt:
		addr, args, ok := decodeAddress(p)
		if !ok {
			return ErrMalformed
		}
		r = h.Rcpt(addr, args)
	case CmdData:
		r = h.Data()
	case CmdUnknown:
		r = h.Unknown(decodeString(p))
	case CmdHeader:
		name, value, ok := decodeHeader(p)
		if !ok {
			return ErrMalformed
		}
		r = h.Header(name, value)
	case CmdEOH:
		r = h.EndOfHeaders()
	case CmdBody:
		r = h.Body(p)
	case CmdEOM:
		if len(p) > 0 {
			// milter-protocol.txt: SMFIC_BODYEOB may carry a last
			// chunk. Its answer, if not continue, is the final one.
			if r = h.Body(p); !r.IsContinue() {
				break
			}
		}
		r = h.EndOfMessage(&s.mod)
	default:
		return ErrUnknownCommand
	}
	return s.reply(cmd, r)
}

// reply writes the answer to an event, or checks that none is due.
func (s *Session) reply(cmd Command, r Response) error {
	if !s.neg.Replies(cmd) {
		s.out = s.out[:0] // no modification outside end of message
		if !r.IsContinue() {
			return ErrReplyAtNoReplyStage
		}
		return nil
	}
	code := r.Code()
	if code == replyReplyCode {
		if strings.IndexByte(r.text, 0) >= 0 {
			return ErrMalformedReply
		}
		s.appendPacket(code, r.text, "\x00")
	} else {
		s.appendPacket(code)
	}
	err := s.flush()
	if endsMessage(cmd, code) && s.setInMessage(false) {
		s.Close()
		return errDrained
	}
	return err
}

// endsMessage reports whether the reply code to cmd ends the message for
// the MTA: anything at end of message; a decision at MAIL, DATA or the
// content events; accept or discard at RCPT (a reject or tempfail there
// refuses that recipient only).
func endsMessage(cmd Command, code byte) bool {
	switch cmd {
	case CmdEOM:
		return true
	case CmdMail, CmdData, CmdHeader, CmdEOH, CmdBody:
		return code != replyContinue
	case CmdRcpt:
		return code == replyAccept || code == replyDiscard
	}
	return false
}

// negotiate answers SMFIC_OPTNEG.
func (s *Session) negotiate(p []byte) error {
	o, ok := decodeOptNeg(p)
	if !ok {
		return ErrMalformed
	}
	if o.version < minVersion {
		return fmt.Errorf("%w: %d", ErrVersion, o.version)
	}
	// libmilter answers the MTA's version when it is lower than its own;
	// Postfix refuses a filter version above its own.
	n := Negotiated{Version: min(o.version, Version), Offered: o.protocol}
	n.Actions = s.opts.Actions & o.actions
	n.Protocol = s.opts.Required | s.opts.Optional&o.protocol
	n.Missing = s.opts.Required &^ o.protocol
	s.neg = n

	s.out = s.out[:0]
	start := s.begin(replyOptNeg)
	s.out = binary.BigEndian.AppendUint32(s.out, n.Version)
	s.out = binary.BigEndian.AppendUint32(s.out, uint32(n.Actions))
	s.out = binary.BigEndian.AppendUint32(s.out, uint32(n.Protocol))
	if n.Actions&ActSetSymList != 0 {
		// milter-protocol-extras.txt: after the three fields, for each
		// stage, uint32 stage and "m1 m2 ...\0".
		for st := Stage(0); st < numStages; st++ {
			list, ok := s.opts.MacroLists[st]
			if !ok {
				continue
			}
			s.out = binary.BigEndian.AppendUint32(s.out, uint32(st))
			for i, m := range list {
				if i > 0 {
					s.out = append(s.out, ' ')
				}
				s.out = append(s.out, m...)
			}
			s.out = append(s.out, 0)
		}
	}
	s.end(start)
	return s.flush()
}

// begin starts a packet in out and returns its offset.
func (s *Session) begin(code byte) int {
	start := len(s.out)
	s.out = append(s.out, 0, 0, 0, 0, code)
	return start
}

// end writes the length of the packet started at start.
func (s *Session) end(start int) {
	binary.BigEndian.PutUint32(s.out[start:], uint32(len(s.out)-start-4))
}

// appendPacket appends a reply made of code and the given strings.
func (s *Session) appendPacket(code byte, parts ...string) {
	start := s.begin(code)
	for _, p := range parts {
		s.out = append(s.out, p...)
	}
	s.end(start)
}

// flush writes out in one write, under the idle limit: a peer that stops
// reading its replies would otherwise hold the session in Write, where
// the read deadline does not reach, until the daemon stops.
func (s *Session) flush() error {
	if len(s.out) == 0 {
		return nil
	}
	if s.opts.Idle > 0 {
		_ = s.conn.SetWriteDeadline(time.Now().Add(s.opts.Idle))
	}
	_, err := s.conn.Write(s.out)
	s.out = s.out[:0]
	if cap(s.out) > maxKeptOut {
		s.out = nil
	}
	return err
}

// Modifier makes end-of-message modifications; they are written before
// the final reply, in one write with it. Its methods may only be called
// from EndOfMessage.
type Modifier struct {
	s *Session
}

func (m *Modifier) check(a Action) error {
	if m.s.cmd != CmdEOM {
		return ErrNotAtEOM
	}
	if m.s.neg.Actions&a == 0 {
		return ErrNotNegotiated
	}
	return nil
}

// AddHeader appends a header field (SMFIR_ADDHEADER). With
// SMFIP_HDR_LEADSPC the value is inserted as given (start it with a
// space); CRLF in value is sent as LF, which Postfix wants.
func (m *Modifier) AddHeader(name, value string) error {
	if err := m.check(ActAddHeader); err != nil {
		return err
	}
	return m.header(replyAddHeader, false, 0, name, value)
}

// InsertHeader inserts a header field at index (0: at the top;
// SMFIR_INSHEADER). Postfix counts its own Received field.
func (m *Modifier) InsertHeader(index uint32, name, value string) error {
	if err := m.check(ActChangeHeader); err != nil {
		return err
	}
	return m.header(replyInsHeader, true, index, name, value)
}

// ChangeHeader replaces the index-th (1-based) field called name; an empty
// value deletes it (SMFIR_CHGHEADER).
func (m *Modifier) ChangeHeader(index uint32, name, value string) error {
	if err := m.check(ActChangeHeader); err != nil {
		return err
	}
	return m.header(replyChgHeader, true, index, name, value)
}

// Quarantine asks the MTA to hold the message (SMFIR_QUARANTINE; Postfix
// puts it on hold and ignores the reason).
func (m *Modifier) Quarantine(reason string) error {
	if err := m.check(ActQuarantine); err != nil {
		return err
	}
	if strings.IndexByte(reason, 0) >= 0 {
		return ErrMalformedReply
	}
	m.s.appendPacket(replyQuarantine, reason, "\x00")
	return nil
}

func (m *Modifier) header(code byte, indexed bool, index uint32, name, value string) error {
	if name == "" || strings.IndexByte(name, 0) >= 0 || strings.IndexByte(value, 0) >= 0 {
		return ErrMalformedReply
	}
	s := m.s
	start := s.begin(code)
	if indexed {
		s.out = binary.BigEndian.AppendUint32(s.out, index)
	}
	s.out = append(s.out, name...)
	s.out = append(s.out, 0)
	s.out = appendLF(s.out, value)
	s.out = append(s.out, 0)
	s.end(start)
	return nil
}

// appendLF appends v with every CRLF written as LF.
func appendLF(b []byte, v string) []byte {
	for {
		i := strings.Index(v, "\r\n")
		if i < 0 {
			return append(b, v...)
		}
		b = append(b, v[:i]...)
		b = append(b, '\n')
		v = v[i+2:]
	}
}
