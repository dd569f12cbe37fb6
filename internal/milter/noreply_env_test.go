package milter

import (
	"strings"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
)

// The envelope NR flags and SMFIP_NODATA, spelt out from milter-protocol.txt
// (Postfix's milter8.c has the same values).
const (
	nrConn   = 1 << 12
	nrHelo   = 1 << 13
	nrMail   = 1 << 14
	nrRcpt   = 1 << 15
	noData   = 1 << 9
	nrEnv    = nrConn | nrHelo | nrMail | nrRcpt
	nrEvery  = nrEnv | nrAll
	optional = nrEvery | noData
)

// TestNoReplyEnvelopeNegotiation: the NR flags of connect, HELO, MAIL and
// RCPT and NODATA are negotiated to what the MTA offered; with all of them
// (Postfix 3.7) the end of message is the only event answered, and nothing
// stray reaches the wire through several messages; an MTA that offers no
// NODATA sends DATA and reads its continue.
func TestNoReplyEnvelopeNegotiation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	for _, tc := range []struct {
		name  string
		offer uint32
	}{
		{"all offered (Postfix 3.7)", postfixProtocol},
		{"content NR only, no NODATA", postfixProtocol &^ (nrEnv | noData)},
		{"MAIL and RCPT only", postfixProtocol&^optional | nrMail | nrRcpt},
		{"v2 MTA", 0x7f},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := dialRawProto(t, h.addr, tc.offer)
			if got, want := uint32(r.proto)&optional, tc.offer&optional; got != want {
				t.Fatalf("negotiated optional flags %#x, want %#x (offered %#x)", got, want, tc.offer)
			}
			r.want('C', connectData("client.example", "198.51.100.7"), 'c')
			r.want('H', cstr("mail.client.example"), 'c')
			for i, m := range rawMessages(t) {
				if i == 1 && uint32(r.proto)&noData == 0 {
					// DATA goes between RCPT and the header when not
					// skipped; go-milter answers it.
					m.withData = true
				}
				m.run(t, r)
			}
			r.send('Q', nil)
		})
	}
}

// TestNoReplyBypassAtEOM: a message from a trusted network is accepted at
// MAIL FROM when the MTA reads that reply; when it does not (NR_MAIL), the
// accept waits for the end of message and comes alone, with no
// modification: the bypassed message is not evaluated and not changed.
func TestNoReplyBypassAtEOM(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	forged := "Authentication-Results: " + testAuthservID + "; dmarc=pass header.from=reject.example"

	r := dialRawProto(t, h.addr, postfixProtocol)
	r.want('C', connectData("localhost", "127.0.0.1"), 'c')
	r.want('H', cstr("localhost"), 'c')
	m := rawMessage{ip: "127.0.0.1", mailFrom: "x@reject.example", raw: []byte(message("reject.example", forged)), code: 'a'}
	m.run(t, r)
	// The connection goes on: the next message is evaluated.
	next := rawMessage{ip: "198.51.100.7", mailFrom: "a@reject.example", raw: []byte(message("reject.example")), code: 'y', prefix: "550 5.7.1"}
	next.run(t, r)
	if !strings.Contains(h.logs.String(), "bypass=trusted-network") {
		t.Errorf("bypass not logged:\n%s", h.logs)
	}

	// Without NR_MAIL the accept is the reply to MAIL FROM.
	r2 := dialRawProto(t, h.addr, postfixProtocol&^nrMail)
	r2.want('C', connectData("localhost", "127.0.0.1"), 'c')
	r2.want('H', cstr("localhost"), 'c')
	r2.send('D', macroData('M', "{client_addr}", "127.0.0.1", "j", testAuthservID))
	r2.want('M', cstr("<x@reject.example>"), 'a')
	r2.send('A', nil)
	r2.send('Q', nil)
}

// TestNoReplyEnvelopePanic: a panic at connect or HELO under on_error =
// "tempfail", with the MTA reading no reply there, gives every message of
// the connection the tempfail reply at its end; a panic at MAIL gives it to
// that message only. Nothing is written before the end of message, and with
// on_error = "accept" the messages get their normal verdicts.
func TestNoReplyEnvelopePanic(t *testing.T) {
	t.Parallel()
	for _, point := range []string{"connect", "helo", "mail"} {
		for _, onErr := range []config.ErrorAction{config.ErrorTempFail, config.ErrorAccept} {
			t.Run(point+"/"+string(onErr), func(t *testing.T) {
				t.Parallel()
				h, armed := panicHarness(t, point, onErr)
				r := dialRawProto(t, h.addr, postfixProtocol)
				r.want('C', connectData("client.example", "198.51.100.7"), 'c')
				r.want('H', cstr("mail.client.example"), 'c')
				tempfail := rawMessage{ip: "198.51.100.7", mailFrom: "a@reject.example", raw: []byte(message("reject.example")), code: 'y', prefix: "451 4.3.0 "}
				normal := rawMessage{ip: "198.51.100.7", mailFrom: "b@reject.example", raw: []byte(message("reject.example")), code: 'y', prefix: "550 5.7.1"}
				first, second := normal, normal
				switch {
				case onErr == config.ErrorAccept && point == "mail":
					first = rawMessage{ip: "198.51.100.7", mailFrom: "a@reject.example", raw: []byte(message("reject.example")), code: 'a'}
				case onErr == config.ErrorTempFail && point == "mail":
					first = tempfail
				case onErr == config.ErrorTempFail:
					first, second = tempfail, tempfail
				}
				first.run(t, r)
				if armed.Load() {
					t.Fatalf("the panic at %s was never triggered", point)
				}
				second.run(t, r)
				r.send('Q', nil)
				if !strings.Contains(h.logs.String(), "panic in milter callback") {
					t.Errorf("panic not logged:\n%s", h.logs)
				}
			})
		}
	}
}

// TestNoReplyConnectPanicWithReply: when the MTA reads the reply to the
// connection, a panic there under on_error = "tempfail" is answered at once.
func TestNoReplyConnectPanicWithReply(t *testing.T) {
	t.Parallel()
	h, armed := panicHarness(t, "connect", config.ErrorTempFail)
	r := dialRawProto(t, h.addr, postfixProtocol&^nrConn)
	c, d := r.step('C', connectData("client.example", "198.51.100.7"))
	if c != 'y' || !strings.HasPrefix(string(d), "451 4.3.0") {
		t.Fatalf("reply to connect %q %q, want the tempfail reply", c, d)
	}
	if armed.Load() {
		t.Fatal("the panic at connect was never triggered")
	}
	if !r.silent(100 * time.Millisecond) {
		t.Fatal("bytes after the connect reply")
	}
}
