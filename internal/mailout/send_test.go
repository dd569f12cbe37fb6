package mailout

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/go-cmp/cmp"
)

// testMessage has lines that need dot-stuffing (a leading dot, a lone dot,
// two dots) and a long base64 line, with CRLF line ends.
var testMessage = []byte(strings.Join([]string{
	"From: DMARC reports <dmarc-reports@receiver.example>",
	"To: dmarc@example.com",
	"Subject: Report Domain: example.com Submitter: receiver.example Report-ID: <1@receiver.example>",
	"",
	".leading dot",
	".",
	"..",
	"middle . dot",
	strings.Repeat("QUJD", 19),
	"",
}, "\r\n"))

func newTestClient(t *testing.T, o ClientOptions) *Client {
	t.Helper()
	if o.HeloName == "" {
		o.HeloName = "reporter.receiver.example"
	}
	c, err := NewClient(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// result is the comparable part of a RecipientResult.
type result struct {
	Recipient string
	Status    Status
	Stage     Stage
	Code      int
	Enhanced  string
	Text      string
}

func results(rs []RecipientResult) []result {
	var out []result
	for _, r := range rs {
		out = append(out, result{r.Recipient, r.Status, r.Stage, r.Code, r.Enhanced.String(), r.Text})
	}
	return out
}

// TestSendPlain: a relay without TLS, opportunistic STARTTLS: the message
// arrives byte for byte, with our EHLO name and envelope, and the accepting
// reply is returned per recipient.
func TestSendPlain(t *testing.T) {
	t.Parallel()
	r := newRelay(t, relayOptions{})
	c := newTestClient(t, ClientOptions{Relay: "smtp://" + r.addr})
	to := []string{"dmarc@example.com", "rua@example.net"}
	got := c.Send(ctxFor(t, 10*time.Second), "dmarc-reports@receiver.example", to, testMessage)
	for _, res := range got {
		if res.Status != StatusAccepted || res.Stage != StageData || res.Code != 250 || res.Err != nil {
			t.Errorf("%+v", res)
		}
	}
	msgs := r.messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages received", len(msgs))
	}
	m := msgs[0]
	if m.helo != "reporter.receiver.example" || m.tls || m.from != "dmarc-reports@receiver.example" || !cmp.Equal(m.to, to) {
		t.Errorf("received %+v", m)
	}
	if !bytes.Equal(m.data, testMessage) {
		t.Errorf("message differs after dot-unstuffing:\n got %q\nwant %q", m.data, testMessage)
	}
}

// TestSendSTARTTLS: STARTTLS is used when offered; the certificate is not
// verified in opportunistic mode, is verified when asked, and fails without
// the CA.
func TestSendSTARTTLS(t *testing.T) {
	t.Parallel()
	r := newRelay(t, relayOptions{startTLS: true})
	for _, tc := range []struct {
		name   string
		opts   ClientOptions
		status Status
		err    error
	}{
		{"opportunistic, not verified", ClientOptions{}, StatusAccepted, nil},
		{"required, verified with the CA file", ClientOptions{StartTLS: StartTLSRequired, CAFile: r.caFile}, StatusAccepted, nil},
		{"verified without the CA", ClientOptions{TLSVerify: VerifyYes}, StatusTemporary, ErrTLS},
		{"required verifies by default", ClientOptions{StartTLS: StartTLSRequired}, StatusTemporary, ErrTLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Relay = "smtp://" + r.addr
			c := newTestClient(t, tc.opts)
			got := c.Send(ctxFor(t, 10*time.Second), "a@receiver.example", []string{"dmarc@example.com"}, testMessage)[0]
			if got.Status != tc.status || !errors.Is(got.Err, tc.err) || tc.err != nil && got.Stage != StageStartTLS {
				t.Errorf("got %+v, want %s with %v", got, tc.status, tc.err)
			}
		})
	}
	for _, m := range r.messages() {
		if !m.tls {
			t.Errorf("message received without TLS: %+v", m)
		}
	}
	if n := len(r.messages()); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}
}

// TestSendSTARTTLSRequiredNotOffered: nothing is sent in plain text when
// STARTTLS is required and the relay does not offer it.
func TestSendSTARTTLSRequiredNotOffered(t *testing.T) {
	t.Parallel()
	r := newRelay(t, relayOptions{})
	c := newTestClient(t, ClientOptions{Relay: "smtp://" + r.addr, StartTLS: StartTLSRequired})
	got := c.Send(ctxFor(t, 10*time.Second), "a@receiver.example", []string{"x@example.com", "y@example.com"}, testMessage)
	for _, res := range got {
		if res.Status != StatusTemporary || res.Stage != StageStartTLS || !errors.Is(res.Err, ErrStartTLSNotOffered) || res.DestinationRefused() {
			t.Errorf("%+v", res)
		}
	}
	if n := len(r.messages()); n != 0 {
		t.Errorf("%d messages sent without TLS", n)
	}
}

// TestSendSMTPSAuth: implicit TLS (RFC 8314), verified with the CA file,
// and AUTH PLAIN with the password from a file.
func TestSendSMTPSAuth(t *testing.T) {
	t.Parallel()
	r := newRelay(t, relayOptions{implicitTLS: true, user: "reporter", pass: "s3cret pass"})
	pw := passwordFile(t, "s3cret pass\n", 0o600)
	c := newTestClient(t, ClientOptions{Relay: "smtps://" + r.addr, CAFile: r.caFile, Username: "reporter", PasswordFile: pw})
	if !c.Verifies() {
		t.Error("smtps does not verify by default")
	}
	got := c.Send(ctxFor(t, 10*time.Second), "a@receiver.example", []string{"dmarc@example.com"}, testMessage)[0]
	if got.Status != StatusAccepted {
		t.Fatalf("%+v", got)
	}
	m := r.messages()
	if len(m) != 1 || !m[0].tls || m[0].user != "reporter" || !bytes.Equal(m[0].data, testMessage) {
		t.Errorf("received %+v", m)
	}
	// The same relay without the CA: the certificate does not verify.
	c = newTestClient(t, ClientOptions{Relay: "smtps://" + r.addr, Username: "reporter", PasswordFile: pw})
	got = c.Send(ctxFor(t, 10*time.Second), "a@receiver.example", []string{"dmarc@example.com"}, testMessage)[0]
	if got.Status != StatusTemporary || got.Stage != StageConnect || !errors.Is(got.Err, ErrTLS) {
		t.Errorf("unverified smtps: %+v", got)
	}
}

// TestSendAuthFailures: a wrong password is the relay's 535 at the AUTH
// stage (not a refusal of the destination); a relay without TLS never sees
// the password.
func TestSendAuthFailures(t *testing.T) {
	t.Parallel()
	r := newRelay(t, relayOptions{startTLS: true, user: "reporter", pass: "right"})
	c := newTestClient(t, ClientOptions{Relay: "smtp://" + r.addr, CAFile: r.caFile, Username: "reporter", PasswordFile: passwordFile(t, "wrong", 0o600)})
	got := results(c.Send(ctxFor(t, 10*time.Second), "a@receiver.example", []string{"dmarc@example.com"}, testMessage))
	want := []result{{"dmarc@example.com", StatusPermanent, StageAuth, 535, "5.7.8", "Authentication failed"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}

	plain := newRelay(t, relayOptions{user: "reporter", pass: "right"})
	c = newTestClient(t, ClientOptions{Relay: "smtp://" + plain.addr, Username: "reporter", PasswordFile: passwordFile(t, "right", 0o600)})
	res := c.Send(ctxFor(t, 10*time.Second), "a@receiver.example", []string{"dmarc@example.com"}, testMessage)[0]
	if res.Status != StatusTemporary || res.Stage != StageAuth || !errors.Is(res.Err, ErrAuthNotPossible) || res.DestinationRefused() {
		t.Errorf("AUTH without TLS: %+v", res)
	}
	plain.mu.Lock()
	tried := plain.authTried
	plain.mu.Unlock()
	if tried != 0 {
		t.Errorf("AUTH attempted %d times over plain text", tried)
	}
}

// TestSendFaults injects faults per command and checks the typed results.
func TestSendFaults(t *testing.T) {
	t.Parallel()
	busy := &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "mailbox busy\nsecond line"}
	unknown := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	closing := &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "shutting down"}
	to := []string{"a@example.com", "b@example.com"}
	ok := func(rcpt string) result { return result{rcpt, StatusAccepted, StageData, 250, "2.0.0", "OK: queued"} }
	for _, tc := range []struct {
		name     string
		set      func(r *relay)
		want     []result
		delivers bool
	}{
		{"4xx at RCPT", func(r *relay) { r.rcptErr["a@example.com"] = busy }, []result{
			{"a@example.com", StatusTemporary, StageRcpt, 450, "4.2.0", "mailbox busy\nsecond line"},
			ok("b@example.com"),
		}, true},
		{"5xx at RCPT", func(r *relay) { r.rcptErr["b@example.com"] = unknown }, []result{
			ok("a@example.com"),
			{"b@example.com", StatusPermanent, StageRcpt, 550, "5.1.1", "no such user"},
		}, true},
		{"every RCPT refused: no DATA", func(r *relay) { r.rcptErr["a@example.com"], r.rcptErr["b@example.com"] = unknown, busy }, []result{
			{"a@example.com", StatusPermanent, StageRcpt, 550, "5.1.1", "no such user"},
			{"b@example.com", StatusTemporary, StageRcpt, 450, "4.2.0", "mailbox busy\nsecond line"},
		}, false},
		{"421 at RCPT ends the session", func(r *relay) { r.rcptErr["a@example.com"] = closing }, []result{
			{"a@example.com", StatusTemporary, StageRcpt, 421, "4.3.2", "shutting down"},
			{"b@example.com", StatusTemporary, StageRcpt, 421, "4.3.2", "shutting down"},
		}, false},
		{"4xx at DATA", func(r *relay) {
			r.dataErr = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again"}
		}, []result{
			{"a@example.com", StatusTemporary, StageData, 451, "4.3.0", "try again"},
			{"b@example.com", StatusTemporary, StageData, 451, "4.3.0", "try again"},
		}, false},
		{"5xx at DATA", func(r *relay) {
			r.dataErr = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "rejected"}
		}, []result{
			{"a@example.com", StatusPermanent, StageData, 554, "5.7.1", "rejected"},
			{"b@example.com", StatusPermanent, StageData, 554, "5.7.1", "rejected"},
		}, false},
		{"5xx at MAIL FROM", func(r *relay) {
			r.mailErr = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "sender not allowed"}
		}, []result{
			{"a@example.com", StatusPermanent, StageMail, 553, "5.7.1", "sender not allowed"},
			{"b@example.com", StatusPermanent, StageMail, 553, "5.7.1", "sender not allowed"},
		}, false},
		{"connection dropped at RCPT", func(r *relay) { r.dropAt = "rcpt" }, []result{
			{"a@example.com", StatusTemporary, StageRcpt, 0, "", ""},
			{"b@example.com", StatusTemporary, StageRcpt, 0, "", ""},
		}, false},
		{"connection dropped at DATA", func(r *relay) { r.dropAt = "data" }, []result{
			{"a@example.com", StatusTemporary, StageData, 0, "", ""},
			{"b@example.com", StatusTemporary, StageData, 0, "", ""},
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRelay(t, relayOptions{})
			tc.set(r)
			c := newTestClient(t, ClientOptions{Relay: "smtp://" + r.addr})
			rs := c.Send(ctxFor(t, 10*time.Second), "dmarc-reports@receiver.example", to, testMessage)
			if d := cmp.Diff(tc.want, results(rs)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			for _, res := range rs {
				wantRefused := res.Status == StatusPermanent && (res.Stage == StageRcpt || res.Stage == StageData)
				if res.DestinationRefused() != wantRefused || (res.Err == nil) != (res.Status == StatusAccepted) {
					t.Errorf("%+v: DestinationRefused %v", res, res.DestinationRefused())
				}
				if res.Code == 0 && res.Status != StatusAccepted && !errors.Is(res.Err, ErrConnection) {
					t.Errorf("%+v: want ErrConnection", res)
				}
				if res.Code != 0 && res.Status != StatusAccepted && !errors.Is(res.Err, ErrReply) {
					t.Errorf("%+v: want ErrReply", res)
				}
			}
			if n := len(r.messages()); n != map[bool]int{true: 1, false: 0}[tc.delivers] {
				t.Errorf("%d messages delivered", n)
			}
		})
	}
}

// TestSendDeadlines: a relay slower than the context's deadline, a relay
// that never greets (the step timeout, shorter than the context), and a
// port where nothing listens: each is temporary, and none waits longer than
// its deadline.
func TestSendDeadlines(t *testing.T) {
	t.Parallel()
	slow := newRelay(t, relayOptions{})
	slow.slowRcpt = 3 * time.Second

	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() }) // accepted, never answered
		}
	}()

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		name    string
		opts    ClientOptions
		ctx     time.Duration
		stage   Stage
		err     error
		maxTime time.Duration
	}{
		{"slow RCPT beyond the context deadline", ClientOptions{Relay: "smtp://" + slow.addr}, 400 * time.Millisecond, StageRcpt, ErrTimeout, 1500 * time.Millisecond},
		{"no greeting, command timeout", ClientOptions{Relay: "smtp://" + silent.Addr().String(), CommandTimeout: 300 * time.Millisecond}, 10 * time.Second, StageGreeting, ErrTimeout, 1500 * time.Millisecond},
		{"no greeting, context deadline", ClientOptions{Relay: "smtp://" + silent.Addr().String()}, 300 * time.Millisecond, StageGreeting, ErrTimeout, 1500 * time.Millisecond},
		{"nothing listens", ClientOptions{Relay: "smtp://" + closedAddr}, 10 * time.Second, StageConnect, ErrConnection, 1500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newTestClient(t, tc.opts)
			start := time.Now()
			got := c.Send(ctxFor(t, tc.ctx), "a@receiver.example", []string{"x@example.com", "y@example.com"}, testMessage)
			el := time.Since(start)
			for _, res := range got {
				if res.Status != StatusTemporary || res.Stage != tc.stage || !errors.Is(res.Err, tc.err) {
					t.Errorf("%+v, want temporary at %s with %v", res, tc.stage, tc.err)
				}
			}
			if el > tc.maxTime {
				t.Errorf("took %v, more than %v", el, tc.maxTime)
			}
		})
	}
	if n := len(slow.messages()); n != 0 {
		t.Errorf("slow relay got %d messages", n)
	}
}

// TestSendCanceled: cancelling the context cuts a session in progress.
func TestSendCanceled(t *testing.T) {
	t.Parallel()
	r := newRelay(t, relayOptions{})
	r.slowRcpt = 3 * time.Second
	c := newTestClient(t, ClientOptions{Relay: "smtp://" + r.addr})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	got := c.Send(ctx, "a@receiver.example", []string{"x@example.com"}, testMessage)[0]
	if got.Status != StatusTemporary || !errors.Is(got.Err, ErrTimeout) || !errors.Is(got.Err, context.Canceled) {
		t.Errorf("%+v", got)
	}
	if el := time.Since(start); el > 1500*time.Millisecond {
		t.Errorf("took %v", el)
	}
}

func TestSendBadAddresses(t *testing.T) {
	t.Parallel()
	r := newRelay(t, relayOptions{})
	c := newTestClient(t, ClientOptions{Relay: "smtp://" + r.addr})
	got := c.Send(ctxFor(t, 10*time.Second), "a@receiver.example", []string{"x@example.com\r\nDATA", "ok@example.com"}, testMessage)
	if got[0].Status != StatusPermanent || !errors.Is(got[0].Err, ErrAddress) || got[1].Status != StatusAccepted {
		t.Errorf("%+v", got)
	}
	got = c.Send(ctxFor(t, 10*time.Second), "a@x\r\n", []string{"ok@example.com"}, testMessage)
	if got[0].Status != StatusPermanent || got[0].Stage != StageMail || !errors.Is(got[0].Err, ErrAddress) {
		t.Errorf("%+v", got)
	}
	if c.Send(ctxFor(t, time.Second), "a@receiver.example", nil, testMessage) != nil {
		t.Error("results for no recipients")
	}
}

func TestSplitEnhanced(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code      int
		in        string
		enh, text string
	}{
		{250, "2.0.0 Ok: queued as 4ABC", "2.0.0", "Ok: queued as 4ABC"},
		{450, "4.2.0 line one\n4.2.0 line two", "4.2.0", "line one\nline two"},
		{550, "no enhanced code here", "", "no enhanced code here"},
		{550, "4.1.1 class does not match the reply", "", "4.1.1 class does not match the reply"},
		{550, "5.1234.1 subject too long", "", "5.1234.1 subject too long"},
		{550, "5.+1.1 sign", "", "5.+1.1 sign"},
		{554, "5.7.1", "5.7.1", ""},
	} {
		e, text := splitEnhanced(tc.code, tc.in)
		if e.String() != tc.enh || text != tc.text {
			t.Errorf("splitEnhanced(%d, %q) = %q, %q; want %q, %q", tc.code, tc.in, e, text, tc.enh, tc.text)
		}
	}
}

func TestSplitEnhancedLastLine(t *testing.T) {
	t.Parallel()
	e, text := splitEnhanced(450, "first\n4.2.0 second")
	if e.String() != "4.2.0" || text != "first\nsecond" {
		t.Errorf("%q %q", e, text)
	}
}
