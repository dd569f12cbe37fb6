package milter

import (
	"bytes"
	"errors"
	"net"
	"strings"
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
				h, armed := panicHarness(t, point, onErr)
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
