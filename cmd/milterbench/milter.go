package main

// A minimal MTA side of the milter protocol, written to behave like Postfix's
// milter8 client (src/milter/milter8.c) rather than like a test harness:
// protocol version 6 offered with every event flag, a macro packet before
// every event (empty when no macro of the stage is defined), the macro lists
// a milter asks for with SMFIF_SETSYMLIST honoured, the no-reply (NR_*) and
// no-event (NO*) flags the milter negotiates honoured, one space eaten after
// the header colon unless the milter negotiated SMFIP_HDR_LEADSPC, SMFIR_SKIP
// honoured for body chunks, and the packets of one event written in one
// buffered write and flushed only when a reply is expected.
//
// go-milter's client is not used because it cannot drive a libmilter peer
// the way Postfix does: it does not send the macro packets Postfix sends, it
// has no leading-space handling, its header helper reorders fields, and it
// refuses version 2 servers unless the action mask is narrowed
// (go-milter's client cannot drive libmilter peers as Postfix does: see docs/performance.md).

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"
)

// MTA commands (SMFIC_*).
const (
	cmdAbort   = 'A'
	cmdBody    = 'B'
	cmdConnect = 'C'
	cmdMacro   = 'D'
	cmdEOM     = 'E'
	cmdHelo    = 'H'
	cmdHeader  = 'L'
	cmdMail    = 'M'
	cmdEOH     = 'N'
	cmdOptneg  = 'O'
	cmdQuit    = 'Q'
	cmdRcpt    = 'R'
	cmdData    = 'T'
)

// Milter replies (SMFIR_*).
const (
	repAddRcpt    = '+'
	repDelRcpt    = '-'
	repAddRcptPar = '2'
	repAccept     = 'a'
	repReplBody   = 'b'
	repContinue   = 'c'
	repDiscard    = 'd'
	repChgFrom    = 'e'
	repAddHeader  = 'h'
	repInsHeader  = 'i'
	repChgHeader  = 'm'
	repProgress   = 'p'
	repQuarantine = 'q'
	repReject     = 'r'
	repSkip       = 's'
	repTempfail   = 't'
	repReplyCode  = 'y'
)

// Protocol flags (SMFIP_*).
const (
	pNoConnect = 1 << iota
	pNoHelo
	pNoMail
	pNoRcpt
	pNoBody
	pNoHdrs
	pNoEOH
	pNRHdr
	pNoUnknown
	pNoData
	pSkip
	pRcptRej
	pNRConn
	pNRHelo
	pNRMail
	pNRRcpt
	pNRData
	pNRUnkn
	pNREOH
	pNRBody
	pHdrLeadSpc
)

const (
	// mtaVersion, mtaActions and mtaProtocol are what Postfix 3.7 offers
	// with milter_protocol = 6: every SMFIF_* action and every SMFIP_* flag.
	mtaVersion  = 6
	mtaActions  = 0x1ff
	mtaProtocol = 0x1fffff

	// chunkSize is Postfix's MILTER_CHUNK_SIZE.
	chunkSize = 65535
	// maxPacket bounds what we accept from a milter.
	maxPacket = 4 << 20
)

// Macro stages (SMFIM_*), the index of a SETSYMLIST entry.
const (
	stageConnect = iota
	stageHelo
	stageMail
	stageRcpt
	stageData
	stageEOM
	stageEOH
	numStages
)

// defaultMacros are Postfix 3.7's milter_*_macros defaults (postconf -d).
var defaultMacros = [numStages][]string{
	stageConnect: {"j", "{daemon_name}", "{daemon_addr}", "v", "_"},
	stageHelo:    {"{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}", "{cert_issuer}"},
	stageMail:    {"i", "{auth_type}", "{auth_authen}", "{auth_author}", "{mail_addr}", "{mail_host}", "{mail_mailer}"},
	stageRcpt:    {"i", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"},
	stageData:    {"i"},
	stageEOM:     {"i"},
	stageEOH:     {"i"},
}

// field is one header field as Postfix holds it: the name, and the value as
// written after the colon (leading white space included, folds as "\n").
type field struct {
	Name, Value string
}

// modification is one SMFIR_* change request received at end of message.
type modification struct {
	Code  byte
	Index uint32
	Name  string
	Value string
}

// reply is a milter's answer to one event.
type reply struct {
	Code byte   // repAccept, repContinue, repReject, repTempfail, repDiscard, repReplyCode, repSkip
	Text string // SMTP reply for repReplyCode
	Mods []modification
}

// final reports whether the reply ends the message for this milter.
func (r reply) final() bool { return r.Code != repContinue && r.Code != repSkip }

// macroSource gives the value of a macro, and whether it is defined now.
type macroSource func(name string) (string, bool)

// milterConn is one MTA-to-milter connection (one SMTP session).
type milterConn struct {
	c       net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	timeout time.Duration
	buf     []byte

	version  uint32
	actions  uint32
	protocol uint32
	macros   [numStages][]string
}

// dialMilter connects to a Postfix-style address ("unix:/path",
// "inet:host:port") and negotiates options as Postfix does.
func dialMilter(addr string, timeout time.Duration) (*milterConn, error) {
	network, address, err := splitMilterAddr(addr)
	if err != nil {
		return nil, err
	}
	c, err := net.DialTimeout(network, address, timeout)
	if err != nil {
		return nil, err
	}
	m := &milterConn{
		c:       c,
		r:       bufio.NewReaderSize(c, 8192),
		w:       bufio.NewWriterSize(c, 8192),
		timeout: timeout,
		macros:  defaultMacros,
	}
	if err := m.negotiate(); err != nil {
		c.Close()
		return nil, fmt.Errorf("milter %s: %w", addr, err)
	}
	return m, nil
}

// splitMilterAddr parses the smtpd_milters syntax.
func splitMilterAddr(addr string) (network, address string, err error) {
	kind, rest, ok := strings.Cut(addr, ":")
	switch {
	case !ok || rest == "":
		return "", "", fmt.Errorf("milter address %q: want unix:PATH or inet:HOST:PORT", addr)
	case kind == "unix" || kind == "local":
		return "unix", rest, nil
	case kind == "inet" || kind == "inet6":
		return "tcp", rest, nil
	}
	return "", "", fmt.Errorf("milter address %q: unknown transport %q", addr, kind)
}

func (m *milterConn) close() error { return m.c.Close() }

// negotiate sends SMFIC_OPTNEG and applies the milter's answer.
func (m *milterConn) negotiate() error {
	var p [12]byte
	binary.BigEndian.PutUint32(p[0:], mtaVersion)
	binary.BigEndian.PutUint32(p[4:], mtaActions)
	binary.BigEndian.PutUint32(p[8:], mtaProtocol)
	if err := m.send(cmdOptneg, p[:]); err != nil {
		return err
	}
	if err := m.flush(); err != nil {
		return err
	}
	code, data, err := m.readPacket()
	if err != nil {
		return err
	}
	if code != cmdOptneg {
		return fmt.Errorf("negotiate: unexpected reply %q", code)
	}
	return m.applyOptneg(data)
}

// applyOptneg decodes an SMFIC_OPTNEG reply: version, actions, protocol,
// then optional (stage uint32, "m1 m2\0") macro list overrides.
func (m *milterConn) applyOptneg(data []byte) error {
	if len(data) < 12 {
		return fmt.Errorf("negotiate: short reply (%d bytes)", len(data))
	}
	m.version = binary.BigEndian.Uint32(data[0:])
	m.actions = binary.BigEndian.Uint32(data[4:])
	m.protocol = binary.BigEndian.Uint32(data[8:])
	if m.version > mtaVersion || m.version < 2 {
		return fmt.Errorf("negotiate: milter protocol version %d", m.version)
	}
	if m.actions&^uint32(mtaActions) != 0 {
		return fmt.Errorf("negotiate: actions 0x%x beyond 0x%x", m.actions, mtaActions)
	}
	rest := data[12:]
	for len(rest) > 0 {
		if len(rest) < 5 {
			return errors.New("negotiate: truncated macro list")
		}
		stage := binary.BigEndian.Uint32(rest)
		i := indexNUL(rest[4:])
		if i < 0 {
			return errors.New("negotiate: unterminated macro list")
		}
		if stage < numStages {
			m.macros[stage] = strings.Fields(string(rest[4 : 4+i]))
		}
		rest = rest[4+i+1:]
	}
	return nil
}

func indexNUL(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// send buffers one packet.
func (m *milterConn) send(code byte, data ...[]byte) error {
	n := 1
	for _, d := range data {
		n += len(d)
	}
	var hdr [5]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(n))
	hdr[4] = code
	m.w.Write(hdr[:])
	for _, d := range data {
		m.w.Write(d)
	}
	return nil
}

func (m *milterConn) flush() error {
	m.c.SetWriteDeadline(time.Now().Add(m.timeout))
	return m.w.Flush()
}

// readPacket reads one packet; the data is valid until the next call.
func (m *milterConn) readPacket() (byte, []byte, error) {
	m.c.SetReadDeadline(time.Now().Add(m.timeout))
	var hdr [4]byte
	if _, err := io.ReadFull(m.r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > maxPacket {
		return 0, nil, fmt.Errorf("bad packet length %d", n)
	}
	if cap(m.buf) < int(n) {
		m.buf = make([]byte, n)
	}
	b := m.buf[:n]
	if _, err := io.ReadFull(m.r, b); err != nil {
		return 0, nil, err
	}
	return b[0], b[1:], nil
}

// macroPacket is the SMFIC_MACRO payload for a stage: the command code,
// then name\0value\0 for every macro of the stage's list that is defined.
func (m *milterConn) macroPacket(cmd byte, stage int, src macroSource) []byte {
	p := []byte{cmd}
	for _, name := range m.macros[stage] {
		v, ok := src(name)
		if !ok {
			continue
		}
		p = append(p, name...)
		p = append(p, 0)
		p = append(p, v...)
		p = append(p, 0)
	}
	return p
}

// event sends the macros of a stage and one command, and reads the reply
// unless the milter asked for no reply. skipFlag is the SMFIP_NO* flag of the
// event and nrFlag its SMFIP_NR_* flag (0 when the event always has one).
// A skipped event or an unanswered one counts as "continue".
func (m *milterConn) event(cmd byte, stage int, src macroSource, skipFlag, nrFlag uint32, data ...[]byte) (reply, error) {
	if cmd == cmdData && m.version < 4 {
		// SMFIC_DATA exists from version 4 on: Postfix sends neither the
		// event nor its macros to an older milter (milter8.c np_mask).
		return reply{Code: repContinue}, nil
	}
	if stage >= 0 {
		// Postfix sends the macros even when the event itself is skipped.
		m.send(cmdMacro, m.macroPacket(cmd, stage, src))
	}
	if m.protocol&skipFlag != 0 {
		return reply{Code: repContinue}, nil
	}
	m.send(cmd, data...)
	if nrFlag != 0 && m.protocol&nrFlag != 0 {
		return reply{Code: repContinue}, nil
	}
	if err := m.flush(); err != nil {
		return reply{}, err
	}
	return m.readReply(cmd)
}

// readReply reads replies until a decision, collecting modifications (legal
// only at end of message) and skipping progress packets.
func (m *milterConn) readReply(cmd byte) (reply, error) {
	var r reply
	for {
		code, data, err := m.readPacket()
		if err != nil {
			return r, err
		}
		switch code {
		case repProgress:
			continue
		case repAccept, repContinue, repDiscard, repReject, repTempfail:
			r.Code = code
			return r, nil
		case repSkip:
			if cmd != cmdBody {
				return r, fmt.Errorf("SMFIR_SKIP after event %q", cmd)
			}
			r.Code = code
			return r, nil
		case repReplyCode:
			r.Code, r.Text = code, cString(data)
			return r, nil
		}
		if cmd != cmdEOM {
			return r, fmt.Errorf("unexpected reply %q after event %q", code, cmd)
		}
		mod, err := parseModification(code, data)
		if err != nil {
			return r, err
		}
		r.Mods = append(r.Mods, mod)
	}
}

// parseModification decodes an end-of-message change request.
func parseModification(code byte, data []byte) (modification, error) {
	mod := modification{Code: code}
	switch code {
	case repAddHeader:
		parts := splitNUL(data, 2)
		if parts == nil {
			return mod, fmt.Errorf("malformed SMFIR_ADDHEADER")
		}
		mod.Name, mod.Value = parts[0], parts[1]
	case repInsHeader, repChgHeader:
		if len(data) < 4 {
			return mod, fmt.Errorf("malformed header change %q", code)
		}
		parts := splitNUL(data[4:], 2)
		if parts == nil {
			return mod, fmt.Errorf("malformed header change %q", code)
		}
		mod.Index = binary.BigEndian.Uint32(data)
		mod.Name, mod.Value = parts[0], parts[1]
	case repQuarantine, repAddRcpt, repDelRcpt, repChgFrom, repAddRcptPar:
		mod.Value = cString(data)
	case repReplBody:
		mod.Value = string(data)
	default:
		return mod, fmt.Errorf("unknown reply %q", code)
	}
	return mod, nil
}

// splitNUL splits n NUL-terminated strings; nil if they are not all there.
func splitNUL(b []byte, n int) []string {
	out := make([]string, 0, n)
	for range n {
		i := indexNUL(b)
		if i < 0 {
			return nil
		}
		out = append(out, string(b[:i]))
		b = b[i+1:]
	}
	return out
}

func cString(b []byte) string {
	if i := indexNUL(b); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

func strz(s string) []byte { return append([]byte(s), 0) }

// connect reports the SMTP client (SMFIC_CONNECT, family '4' or '6').
func (m *milterConn) connect(name, addr string, port uint16, src macroSource) (reply, error) {
	fam := byte('4')
	if strings.Contains(addr, ":") {
		fam = '6'
	}
	var p [3]byte
	p[0] = fam
	binary.BigEndian.PutUint16(p[1:], port)
	return m.event(cmdConnect, stageConnect, src, pNoConnect, pNRConn, strz(name), p[:], strz(addr))
}

func (m *milterConn) helo(name string, src macroSource) (reply, error) {
	return m.event(cmdHelo, stageHelo, src, pNoHelo, pNRHelo, strz(name))
}

func (m *milterConn) mail(from string, src macroSource) (reply, error) {
	return m.event(cmdMail, stageMail, src, pNoMail, pNRMail, strz("<"+from+">"))
}

func (m *milterConn) rcpt(to string, src macroSource) (reply, error) {
	return m.event(cmdRcpt, stageRcpt, src, pNoRcpt, pNRRcpt, strz("<"+to+">"))
}

func (m *milterConn) data(src macroSource) (reply, error) {
	return m.event(cmdData, stageData, src, pNoData, pNRData)
}

// header sends one field as Postfix does: one space after the colon is eaten
// unless the milter negotiated SMFIP_HDR_LEADSPC.
func (m *milterConn) header(f field, src macroSource) (reply, error) {
	v := f.Value
	if m.protocol&pHdrLeadSpc == 0 && strings.HasPrefix(v, " ") {
		v = v[1:]
	}
	return m.event(cmdHeader, stageEOH, src, pNoHdrs, pNRHdr, strz(f.Name), strz(v))
}

func (m *milterConn) eoh(src macroSource) (reply, error) {
	return m.event(cmdEOH, stageEOH, src, pNoEOH, pNREOH)
}

func (m *milterConn) bodyChunk(b []byte, src macroSource) (reply, error) {
	return m.event(cmdBody, stageEOM, src, pNoBody, pNRBody, b)
}

func (m *milterConn) eom(src macroSource) (reply, error) {
	return m.event(cmdEOM, stageEOM, src, 0, 0)
}

// abort ends the transaction (no reply), as smtpd's mail_reset does.
func (m *milterConn) abort() error {
	m.send(cmdAbort)
	return m.flush()
}

// quit ends the session (no reply).
func (m *milterConn) quit() error {
	m.send(cmdQuit)
	return m.flush()
}

// content sends the message content as Postfix's cleanup does at the end of
// DATA: each header field, end of headers, body chunks, end of message. It
// returns the final reply and the time spent waiting for the EOM reply.
func (m *milterConn) content(hdrs []field, body []byte, src macroSource) (reply, time.Duration, error) {
	for _, f := range hdrs {
		r, err := m.header(f, src)
		if err != nil || r.final() {
			return r, 0, err
		}
	}
	if r, err := m.eoh(src); err != nil || r.final() {
		return r, 0, err
	}
	for len(body) > 0 {
		n := min(len(body), chunkSize)
		r, err := m.bodyChunk(body[:n], src)
		if err != nil {
			return r, 0, err
		}
		if r.Code == repSkip {
			break
		}
		if r.final() {
			return r, 0, nil
		}
		body = body[n:]
	}
	t0 := time.Now()
	r, err := m.eom(src)
	return r, time.Since(t0), err
}

// applyHeaderMods applies a milter's header changes to the field list the
// next milter will see, as Postfix's cleanup does: add appends, insert puts
// the field at the given position, change replaces the index-th (1-based;
// 0 means 1) field of that name and an empty value deletes it. Postfix adds
// the space after the colon unless the milter negotiated HDR_LEADSPC.
func applyHeaderMods(hdrs []field, mods []modification, leadSpace bool) []field {
	sp := " "
	if leadSpace {
		sp = ""
	}
	for _, mod := range mods {
		switch mod.Code {
		case repAddHeader:
			hdrs = append(hdrs, field{mod.Name, sp + mod.Value})
		case repInsHeader:
			i := min(int(mod.Index), len(hdrs))
			hdrs = append(hdrs[:i], append([]field{{mod.Name, sp + mod.Value}}, hdrs[i:]...)...)
		case repChgHeader:
			hdrs = changeHeader(hdrs, mod, sp)
		}
	}
	return hdrs
}

func changeHeader(hdrs []field, mod modification, sp string) []field {
	want := max(int(mod.Index), 1)
	seen := 0
	for i, f := range hdrs {
		if !strings.EqualFold(f.Name, mod.Name) {
			continue
		}
		if seen++; seen != want {
			continue
		}
		if mod.Value == "" {
			return append(hdrs[:i], hdrs[i+1:]...)
		}
		hdrs[i].Value = sp + mod.Value
		return hdrs
	}
	if mod.Value != "" {
		hdrs = append(hdrs, field{mod.Name, sp + mod.Value})
	}
	return hdrs
}

// protocolNames are the SMFIP_* flag names, bit by bit.
var protocolNames = []string{"NOCONNECT", "NOHELO", "NOMAIL", "NORCPT", "NOBODY", "NOHDRS", "NOEOH", "NR_HDR",
	"NOUNKNOWN", "NODATA", "SKIP", "RCPT_REJ", "NR_CONN", "NR_HELO", "NR_MAIL", "NR_RCPT", "NR_DATA", "NR_UNKN",
	"NR_EOH", "NR_BODY", "HDR_LEADSPC"}

// describe says what the milter negotiated.
func (m *milterConn) describe() string {
	var flags []string
	for i, n := range protocolNames {
		if m.protocol&(1<<i) != 0 {
			flags = append(flags, n)
		}
	}
	var lists []string
	for st, names := range m.macros {
		if !slices.Equal(names, defaultMacros[st]) {
			lists = append(lists, fmt.Sprintf("stage %d: %s", st, strings.Join(names, " ")))
		}
	}
	return fmt.Sprintf("version %d, actions 0x%x, protocol 0x%x [%s], macro lists %v",
		m.version, m.actions, m.protocol, strings.Join(flags, " "), lists)
}
