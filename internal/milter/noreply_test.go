package milter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	milter "github.com/emersion/go-milter"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
)

// The SMFIP_NR_* flags, spelt out from milter-protocol.txt (Postfix's
// milter8.c has the same values) rather than taken from the code under test.
const (
	nrHdr  = 1 << 7
	nrEOH  = 1 << 18
	nrBody = 1 << 19
	nrAll  = nrHdr | nrEOH | nrBody
)

// silent reports whether the milter sends nothing within d: after an end
// of message, a reply the wrapper failed to drop would be waiting here.
func (r *rawClient) silent(d time.Duration) bool {
	r.c.SetReadDeadline(time.Now().Add(d))
	var b [1]byte
	_, err := r.c.Read(b[:])
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// rawMessage is one transaction for the raw client and what it must get.
type rawMessage struct {
	ip, mailFrom string
	raw          []byte
	code         byte   // final reply
	prefix       string // of the final reply's text
	mods         string // a substring of the joined modifications
	withData     bool   // send DATA after RCPT (an MTA not asked for NODATA)
}

// run drives m on r: MAIL, RCPT, each header field, EOH, the body in two
// chunks, EOM, then ABORT as Postfix does after every transaction.
func (m rawMessage) run(t *testing.T, r *rawClient) {
	t.Helper()
	r.send('D', macroData('M', "i", "RAWQ1", "{client_addr}", m.ip, "j", testAuthservID))
	r.want('M', cstr("<"+m.mailFrom+">"), 'c')
	r.want('R', cstr("<bob@mx.test.example>"), 'c')
	if m.withData {
		r.want('T', nil, 'c')
	}
	body := sendHeaders(r, m.raw)
	r.want('N', nil, 'c')
	body = bytes.ReplaceAll(body, []byte("\n"), []byte("\r\n"))
	half := len(body) / 2
	r.want('B', body[:half], 'c')
	r.want('B', body[half:], 'c')
	mods, code, data := r.eom()
	for _, mod := range mods {
		if !isModCode(mod[0]) {
			t.Fatalf("%s: %q before the final reply, want only modifications (mods %q)", m.mailFrom, mod[0], mods)
		}
	}
	if code != m.code || !strings.HasPrefix(data, m.prefix) {
		t.Fatalf("%s: final reply %q %q, want %q %q… (mods %q)", m.mailFrom, code, data, m.code, m.prefix, mods)
	}
	if joined := strings.Join(mods, "|"); !strings.Contains(joined, m.mods) {
		t.Fatalf("%s: modifications %q, want %q in them", m.mailFrom, joined, m.mods)
	}
	if !r.silent(150 * time.Millisecond) {
		t.Fatalf("%s: bytes after the final reply: a stray reply on the wire", m.mailFrom)
	}
	r.send('A', nil)
}

// isModCode: the milter's modification replies (milter-protocol.txt).
func isModCode(c byte) bool { return strings.IndexByte("+-2behimq", c) >= 0 }

// rawMessages are three verdicts on one connection: a DMARC reject, a
// DKIM-signed pass (accept with our Authentication-Results) and a
// quarantine by header.
func rawMessages(t *testing.T) []rawMessage {
	return []rawMessage{
		{ip: "198.51.100.7", mailFrom: "a@reject.example", raw: []byte(message("reject.example")), code: 'y', prefix: "550 5.7.1", mods: ""},
		{ip: "192.0.2.10", mailFrom: "a@pass.example", raw: signMessage(t, []byte(message("pass.example"))), code: 'a', mods: "dmarc=pass"},
		{ip: "198.51.100.7", mailFrom: "a@quar.example", raw: []byte(message("quar.example")), code: 'a', mods: "X-DMARC-Quarantine"},
		{ip: "198.51.100.7", mailFrom: "b@reject.example", raw: []byte(message("reject.example")), code: 'y', prefix: "550 5.7.1"},
	}
}

// TestNoReplyNegotiation: the NR flags are negotiated to what the MTA
// offered. With a flag negotiated no reply to that event reaches the wire,
// without it every reply does, and either way the end-of-message replies
// of several messages on one connection come in order with nothing stray.
func TestNoReplyNegotiation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	for _, tc := range []struct {
		name  string
		offer uint32
	}{
		{"all offered (Postfix 3.7)", postfixProtocol},
		{"none offered", postfixProtocol &^ nrAll},
		{"header only", postfixProtocol&^nrAll | nrHdr},
		{"end of header and body", postfixProtocol&^nrAll | nrEOH | nrBody},
		{"v2 MTA", 0x7f},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := dialRawProto(t, h.addr, tc.offer)
			if got, want := uint32(r.proto)&nrAll, tc.offer&nrAll; got != want {
				t.Fatalf("negotiated NR flags %#x, want %#x (offered %#x)", got, want, tc.offer)
			}
			if keep := milter.OptNoUnknown | milter.OptHeaderLeadingSpace; r.proto&keep != keep {
				t.Fatalf("protocol %#x lost NOUNKNOWN or HDR_LEADSPC", r.proto)
			}
			r.want('C', connectData("client.example", "198.51.100.7"), 'c')
			r.want('H', cstr("mail.client.example"), 'c')
			for _, m := range rawMessages(t) {
				m.run(t, r)
			}
			r.send('Q', nil)
		})
	}
}

// TestNoReplyPanicAnsweredAtEOM: a panic at a stage negotiated without
// reply (a header field, the end of the header block, a body chunk) is
// answered at the end of the message with the on_error action, nothing is
// written at the stage itself, and the next message on the same
// connection gets its normal verdict.
func TestNoReplyPanicAnsweredAtEOM(t *testing.T) {
	t.Parallel()
	for _, point := range []string{"header:Subject", "eoh", "body"} {
		for _, onErr := range []config.ErrorAction{config.ErrorTempFail, config.ErrorAccept} {
			t.Run(point+"/"+string(onErr), func(t *testing.T) {
				t.Parallel()
				var armed atomic.Bool
				armed.Store(true)
				h := newHarness(t, func(c *config.Config) { c.OnError = onErr }, panicOnce(point, &armed))
				r := dialRaw(t, h.addr)
				if uint32(r.proto)&nrAll != nrAll {
					t.Fatalf("NR flags not negotiated: %#x", r.proto)
				}
				r.want('C', connectData("client.example", "192.0.2.10"), 'c')
				r.want('H', cstr("mail.client.example"), 'c')
				failed := rawMessage{ip: "192.0.2.10", mailFrom: "a@pass.example", raw: []byte(forgedRaw),
					code: 'y', prefix: "451 4.3.0 "}
				if onErr == config.ErrorAccept {
					// The forged Authentication-Results (1st and 3rd) are
					// still deleted, highest index first.
					failed.code, failed.prefix = 'a', ""
					failed.mods = "m:\x00\x00\x00\x03Authentication-Results\x00\x00|m:\x00\x00\x00\x01Authentication-Results\x00\x00"
				}
				failed.run(t, r)
				if armed.Load() {
					t.Fatalf("the panic at %s was never triggered", point)
				}
				next := rawMessage{ip: "198.51.100.7", mailFrom: "a@reject.example", raw: []byte(message("reject.example")), code: 'y', prefix: "550 5.7.1"}
				next.run(t, r)
				if !strings.Contains(h.logs.String(), "panic in milter callback") {
					t.Errorf("panic not logged:\n%s", h.logs)
				}
			})
		}
	}
}

// TestGoMilterClientGetsEveryReply: go-milter's own client offers no NR
// flag (and could not: it refuses a version-2 milter when it offers
// anything beyond the v2 mask), so it gets none back and reads every reply
// through several messages on one connection.
func TestGoMilterClientGetsEveryReply(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	s := h.session("198.51.100.7")
	if got := uint32(s.ProtocolOpts) & nrAll; got != 0 {
		t.Fatalf("NR flags %#x negotiated with a client that offered none", got)
	}
	for i := range 3 {
		r := h.send(s, msg{mailFrom: "a@reject.example", raw: message("reject.example")})
		if r.act == nil || r.act.Code != milter.ActReplyCode || r.act.SMTPCode != 550 {
			t.Fatalf("message %d: %+v", i, r.act)
		}
	}
}

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	writes atomic.Int32
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// wirePair is a trackedConn over a loopback TCP connection, with the MTA
// end as a rawClient.
func wirePair(t *testing.T) (*trackedConn, *countingConn, *rawClient) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	mta, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mta.Close() })
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	cc := &countingConn{Conn: srv}
	tc := newTrackedConn(t.Context(), cc, 0)
	t.Cleanup(func() { tc.Close() })
	return tc, cc, &rawClient{t: t, c: mta}
}

// packet builds one milter packet.
func packet(code byte, data ...byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(1+len(data)))
	return append(append(b, code), data...)
}

// readPacketFrom reads one whole packet from the wrapper as go-milter does
// (length, then the rest), in two reads.
func readPacketFrom(t *testing.T, tc *trackedConn) byte {
	t.Helper()
	var n [4]byte
	if _, err := io.ReadFull(tc, n[:]); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, binary.BigEndian.Uint32(n[:]))
	if _, err := io.ReadFull(tc, b); err != nil {
		t.Fatal(err)
	}
	return b[0]
}

// TestTrackedConnWire drives the wrapper packet by packet, playing
// go-milter on one side and the MTA on the other: the OPTNEG answer is cut
// down to the NR flags offered, a continue to a header is dropped, a
// continue to the end of the header block (not offered) passes, an end of
// message's modification waits for the final reply and both go out in one
// write, and any other reply to a header ends the session.
func TestTrackedConnWire(t *testing.T) {
	t.Parallel()
	tc, cc, mta := wirePair(t)
	opt := binary.BigEndian.AppendUint32(nil, 6)
	opt = binary.BigEndian.AppendUint32(opt, 0x1ff)
	opt = binary.BigEndian.AppendUint32(opt, postfixProtocol&^nrAll|nrHdr)
	mta.send('O', opt)
	if code := readPacketFrom(t, tc); code != 'O' {
		t.Fatalf("read %q", code)
	}
	answer := binary.BigEndian.AppendUint32(nil, 2)
	answer = binary.BigEndian.AppendUint32(answer, 0x31)
	answer = binary.BigEndian.AppendUint32(answer, 0x100100|nrAll)
	answer = append(answer, 0, 0, 0, 2, 'i', 0)
	if _, err := tc.Write(packet('O', answer...)); err != nil {
		t.Fatal(err)
	}
	code, data, err := mta.read()
	if err != nil || code != 'O' || len(data) != len(answer) {
		t.Fatalf("OPTNEG answer %q %q %v", code, data, err)
	}
	if got := binary.BigEndian.Uint32(data[8:]); got != 0x100100|nrHdr {
		t.Fatalf("protocol answered %#x, want %#x", got, 0x100100|nrHdr)
	}
	if !bytes.Equal(data[12:], answer[12:]) || !bytes.Equal(data[:8], answer[:8]) {
		t.Fatalf("OPTNEG answer changed beyond the protocol field: %q", data)
	}

	// Header: continue dropped. Split reads must not lose the framing.
	mta.send('D', macroData('L', "i", "Q1"))
	mta.send('L', cstr("From", " a@b.example"))
	for range 2 {
		if code := readPacketFrom(t, tc); code != 'D' && code != 'L' {
			t.Fatalf("read %q", code)
		}
	}
	if n, err := tc.Write(packet('c')); n != 5 || err != nil {
		t.Fatalf("continue to a header: %d %v", n, err)
	}
	// End of header: NR_EOH not offered, so the continue goes out.
	mta.send('N', nil)
	readPacketFrom(t, tc)
	tc.Write(packet('c'))
	if code, _, err := mta.read(); code != 'c' || err != nil {
		t.Fatalf("reply to EOH %q %v, want continue", code, err)
	}

	// End of message: the insert waits for the final reply.
	mta.send('E', nil)
	readPacketFrom(t, tc)
	before := cc.writes.Load()
	tc.Write(packet('i', 0, 0, 0, 0, 'X', 0, ' ', 'y', 0))
	if !mta.silent(100 * time.Millisecond) {
		t.Fatal("a modification went out before the final reply")
	}
	tc.Write(packet('a'))
	for _, want := range []byte{'i', 'a'} {
		if code, _, err := mta.read(); code != want || err != nil {
			t.Fatalf("end of message: %q %v, want %q", code, err, want)
		}
	}
	if n := cc.writes.Load() - before; n != 1 {
		t.Errorf("%d writes for the end of message, want 1", n)
	}

	// A tempfail at a header negotiated without reply would desynchronise
	// the MTA: the session ends instead.
	mta.send('L', cstr("Subject", " x"))
	readPacketFrom(t, tc)
	if _, err := tc.Write(packet('t')); !errors.Is(err, errReplyAtNoReplyStage) {
		t.Fatalf("tempfail to a header: %v, want errReplyAtNoReplyStage", err)
	}
	if !mta.closedByServer(5 * time.Second) {
		t.Fatal("connection left open after a reply at a no-reply stage")
	}
}

// FuzzWireFraming checks the wrapper's framing against a model. The input
// is cut into MTA packets, fed to inFramer in arbitrary pieces (the command
// of each whole packet and the OPTNEG protocol mask must come out), and
// into reply packets answering those commands, fed to outQueue in
// arbitrary pieces: what reaches the socket must be exactly the model's
// stream (bare continues dropped where an NR flag covers them, a refused
// reply stops everything) and a held modification never goes out before
// the packet that releases it.
func FuzzWireFraming(f *testing.F) {
	f.Add([]byte("O\x0c\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xffL\x03a\x00bN\x00B\x02xyE\x00"), []byte{3, 1, 7, 2})
	f.Add([]byte("O\x0c\x00\x00\x00\x06\x00\x00\x00\x00\x00\x00\x00\x80L\x00E\x00"), []byte{1})
	f.Add([]byte("L\x05hello"), []byte{0})
	f.Fuzz(func(t *testing.T, spec, cuts []byte) {
		if len(spec) > 4096 {
			spec = spec[:4096] // the checks below are quadratic in the packets
		}
		cut := func(i int) int {
			if len(cuts) == 0 {
				return 1 << 30
			}
			return 1 + int(cuts[i%len(cuts)])
		}
		// MTA packets: code, length byte, payload.
		var stream []byte
		var codes []byte
		var offered []milter.OptProtocol
		for len(spec) >= 2 {
			code, n := spec[0], min(int(spec[1]), len(spec)-2)
			stream = append(stream, packet(code, spec[2:2+n]...)...)
			codes = append(codes, code)
			var p milter.OptProtocol
			if code == 'O' && n >= 12 {
				p = milter.OptProtocol(binary.BigEndian.Uint32(spec[2+8:]))
			}
			offered = append(offered, p)
			spec = spec[2+n:]
		}
		var in inFramer
		var out outQueue
		var wire bytes.Buffer
		var want []byte
		var held []byte
		nr := milter.OptProtocol(0)
		pos := 0
		for i, code := range codes {
			end := pos + 4 + int(binary.BigEndian.Uint32(stream[pos:]))
			for k := 0; pos < end; k++ {
				step := min(cut(i+k), end-pos)
				in.track(stream[pos : pos+step])
				pos += step
			}
			if in.cmd != code || (code == 'O' && in.offeredProtocol() != offered[i]) {
				t.Fatalf("packet %d: framer says %q/%#x, want %q/%#x", i, in.cmd, in.offeredProtocol(), code, offered[i])
			}
			// The reply go-milter would give, picked by the code.
			var reply []byte
			switch {
			case code == 'O':
				reply = packet('O', 0, 0, 0, 2, 0, 0, 1, 0x31, 0, 0x1c, 0xf3, 0x80)
			case code == 'E' && i%2 == 0:
				reply = packet('i', 0, 0, 0, 0, 'A', 0, 'b', 0)
			case i%5 == 4:
				reply = packet('y', '4', '5', '1', 0)
			default:
				reply = packet('c')
			}
			// Model.
			refused := false
			switch {
			case code == 'O':
				p := milter.OptProtocol(0x1cf380) &^ ((noReplyOptsModel | noData) &^ offered[i])
				nr = p & noReplyOptsModel
				r := append([]byte(nil), reply...)
				binary.BigEndian.PutUint32(r[13:], uint32(p))
				want = append(append(want, held...), r...)
				held = nil
			case nr&nrFlagModel(code) != 0 && len(reply) == 5 && reply[4] == 'c':
			case nr&nrFlagModel(code) != 0:
				refused = true
			case code == 'E' && reply[4] == 'i':
				held = append(held, reply...)
			default:
				want = append(append(want, held...), reply...)
				held = nil
			}
			for k, p := 0, 0; p < len(reply); k++ {
				step := min(cut(i+k+1), len(reply)-p)
				err := out.add(reply[p:p+step], in.cmd, in.offeredProtocol())
				p += step
				if err != nil {
					if !refused || p < len(reply) {
						t.Fatalf("packet %d: refused %q (model: %v)", i, reply, refused)
					}
					if !bytes.Equal(wire.Bytes(), want) {
						t.Fatalf("wire %q, want %q", wire.Bytes(), want)
					}
					return
				}
				out.flush(&wire, false)
				if !bytes.HasPrefix(want, wire.Bytes()) {
					t.Fatalf("packet %d: wire %q is not a prefix of %q", i, wire.Bytes(), want)
				}
			}
			if refused {
				t.Fatalf("packet %d: %q to %q not refused", i, reply, code)
			}
			if !bytes.Equal(wire.Bytes(), want) {
				t.Fatalf("packet %d: wire %q, want %q", i, wire.Bytes(), want)
			}
		}
		out.flush(&wire, true)
		if !bytes.Equal(wire.Bytes(), append(want, held...)) {
			t.Fatalf("after a forced flush: wire %q, want %q", wire.Bytes(), append(want, held...))
		}
	})
}

// The model's own NR table (milter-protocol.txt).
const noReplyOptsModel = milter.OptProtocol(nrEvery)

func nrFlagModel(code byte) milter.OptProtocol {
	switch code {
	case 'C':
		return nrConn
	case 'H':
		return nrHelo
	case 'M':
		return nrMail
	case 'R':
		return nrRcpt
	case 'L':
		return nrHdr
	case 'N':
		return nrEOH
	case 'B':
		return nrBody
	}
	return 0
}
