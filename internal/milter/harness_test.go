package milter

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	milter "github.com/emersion/go-milter"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
)

const testAuthservID = "mx.test.example"

// The signing key of sel._domainkey.pass.example (fixed seed: the zone is
// static text).
var testKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

// testZone is the DNS of every scenario.
func testZone() string {
	pub := base64.StdEncoding.EncodeToString(testKey.Public().(ed25519.PublicKey))
	return `$TTL 300
pass.example.            IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.pass.example.     IN TXT "v=DMARC1; p=reject"
sel._domainkey.pass.example. IN TXT "v=DKIM1; k=ed25519; p=` + pub + `"
bounces.pass.example.    IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
reject.example.          IN TXT "v=spf1 -all"
_dmarc.reject.example.   IN TXT "v=DMARC1; p=reject"
quar.example.            IN TXT "v=spf1 -all"
_dmarc.quar.example.     IN TXT "v=DMARC1; p=quarantine"
none.example.            IN TXT "v=spf1 -all"
_dmarc.none.example.     IN TXT "v=DMARC1; p=none"
temp.example.            IN TXT "v=spf1 -all"
_dmarc.temp.example.     IN TXT "v=DMARC1; p=reject"
mail.client.example.     IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
slow.example.            IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.slow.example.     IN TXT "v=DMARC1; p=none"
`
}

// harness is a running Server with its DNS.
type harness struct {
	t    *testing.T
	dns  *dnstest.Server
	res  *cache.Resolver
	srv  *Server
	eng  *Engine
	addr string
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Reset empties the buffer (fuzz targets check it per input; without a
// reset each check would scan every earlier input's log again).
func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

// newHarness starts a server on 127.0.0.1:0 with the default configuration
// changed by mod, resolving through pkg/cache against dnstest.
func newHarness(t *testing.T, mod func(*config.Config), engMods ...func(*Engine)) *harness {
	t.Helper()
	return newHarnessCache(t, mod, nil, engMods...)
}

// newHarnessCache is newHarness with the resolver's configuration changed
// by cacheMod as well (fault tests shorten timeouts and inject a clock).
func newHarnessCache(t *testing.T, mod func(*config.Config), cacheMod func(*cache.Config), engMods ...func(*Engine)) *harness {
	t.Helper()
	h := &harness{t: t, dns: startDNS(t), logs: &syncBuffer{}}
	h.dns.SetFault("_dmarc.temp.example.", dnstest.FaultServFail)
	cfg := config.Default()
	cfg.AuthservID = testAuthservID
	cfg.DNS.Nameservers = []string{h.dns.Addr}
	cfg.Timeouts.Drain = 5 * time.Second
	if mod != nil {
		mod(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var err error
	cc := cache.Config{Nameservers: cfg.DNS.Nameservers, Timeout: 500 * time.Millisecond, Attempts: 1, ErrTTL: -1}
	if cacheMod != nil {
		cacheMod(&cc)
	}
	h.res, err = cache.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	h.eng, err = NewEngine(cfg, h.res, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range engMods {
		m(h.eng)
	}
	h.srv = NewServer(h.eng, slog.New(slog.NewTextHandler(h.logs, nil)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	go h.srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.srv.Shutdown(ctx)
	})
	return h
}

// startDNS starts the test DNS server, retrying when the TCP port that
// matches the random UDP port is taken (dnstest.Start binds both on one
// port number; with many short TCP connections in the tests a collision
// happens now and then).
func startDNS(t *testing.T) *dnstest.Server {
	t.Helper()
	var err error
	for range 10 {
		var s *dnstest.Server
		if s, err = dnstest.Start(testZone()); err == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("dnstest: %v", err)
	return nil
}

// session opens a milter connection with go-milter's client (v6, without
// v6-only action bits; it offers no NR flag, so every event is answered)
// and sends CONNECT and HELO.
func (h *harness) session(ip string) *milter.ClientSession {
	h.t.Helper()
	cl := milter.NewClientWithOptions("tcp", h.addr, milter.ClientOptions{
		ActionMask:   milter.OptAddHeader | milter.OptChangeHeader | milter.OptQuarantine,
		ReadTimeout:  30 * time.Second,
		WriteTimeout: 10 * time.Second,
	})
	s, err := cl.Session()
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { s.Close() })
	if !s.ProtocolOption(milter.OptHeaderLeadingSpace) || !s.ProtocolOption(milter.OptNoUnknown) {
		h.t.Fatalf("protocol options not negotiated: %#x", s.ProtocolOpts)
	}
	if err := s.Macros(milter.CodeConn, "j", testAuthservID, "{daemon_name}", "smtpd"); err != nil {
		h.t.Fatal(err)
	}
	if act, err := s.Conn("client.example", milter.FamilyInet, 40000, ip); err != nil || act.Code != milter.ActContinue {
		h.t.Fatalf("Conn: %v %v", act, err)
	}
	if act, err := s.Helo("mail.client.example"); err != nil || act.Code != milter.ActContinue {
		h.t.Fatalf("Helo: %v %v", act, err)
	}
	return s
}

// msg is one SMTP transaction.
type msg struct {
	ip       string // {client_addr} macro; "" sends none (the CONNECT address is used)
	mailFrom string
	auth     string
	raw      string // header and body, LF line ends
	sign     bool   // sign with sel._domainkey.pass.example
}

// result is what the milter answered.
type result struct {
	mailAct *milter.Action
	mods    []milter.ModifyAction
	act     *milter.Action
}

// send drives one message the way Postfix does: macros per stage, header
// fields in order with their leading space and "\n" folds, body chunks, end
// of message, then ABORT (Postfix's mail_reset after every transaction).
func (h *harness) send(s *milter.ClientSession, m msg) result {
	h.t.Helper()
	raw := []byte(m.raw)
	if m.sign {
		raw = signMessage(h.t, raw)
	}
	var r result
	mac := []string{"i", "", "{auth_authen}", m.auth}
	if m.ip != "" {
		mac = append(mac, "{client_addr}", m.ip, "{client_name}", "client.example", "s", "mail.client.example")
	}
	must(h.t, s.Macros(milter.CodeMail, mac...))
	act, err := s.Mail(m.mailFrom, nil)
	must(h.t, err)
	r.mailAct = act
	defer func() { must(h.t, s.Abort()) }()
	if act.Code != milter.ActContinue {
		return r
	}
	must(h.t, s.Macros(milter.CodeRcpt, "i", "4XyZ1"))
	if act, err := s.Rcpt("bob@mx.test.example", nil); err != nil || act.Code != milter.ActContinue {
		h.t.Fatalf("Rcpt: %v %v", act, err)
	}
	fields, body := SplitMessage(raw)
	for _, f := range fields {
		must(h.t, s.Macros(milter.CodeHeader, "i", "4XyZ1"))
		act, err := s.HeaderField(f.Name, f.Value)
		must(h.t, err)
		if act.Code != milter.ActContinue {
			r.act = act
			return r
		}
	}
	must(h.t, s.Macros(milter.CodeEOH, "i", "4XyZ1"))
	if act, err := s.HeaderEnd(); err != nil || act.Code != milter.ActContinue {
		r.act = act
		if err != nil {
			h.t.Fatal(err)
		}
		return r
	}
	must(h.t, s.Macros(milter.CodeEOB, "i", "4XyZ1"))
	r.mods, r.act, err = s.BodyReadFrom(bytes.NewReader(body))
	must(h.t, err)
	return r
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// signMessage adds a DKIM-Signature of pass.example (ed25519, relaxed).
func signMessage(t *testing.T, raw []byte) []byte {
	t.Helper()
	crlf := bytes.ReplaceAll(raw, []byte("\n"), []byte("\r\n"))
	var out bytes.Buffer
	err := dkim.Sign(&out, bytes.NewReader(crlf), &dkim.SignOptions{
		Domain: "pass.example", Selector: "sel", Signer: testKey,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys: []string{"From", "Subject", "Date"},
	})
	must(t, err)
	return out.Bytes()
}

// message builds a simple message from fromDomain with extra header lines.
func message(fromDomain string, extra ...string) string {
	var b strings.Builder
	for _, e := range extra {
		b.WriteString(e + "\n")
	}
	fmt.Fprintf(&b, "From: Alice <alice@%s>\nTo: bob@mx.test.example\nSubject: test\n \tfolded subject\nDate: Mon, 1 Jan 2026 00:00:00 +0000\n\nHello.\n", fromDomain)
	return b.String()
}

// inserted returns the values of the header fields inserted with name.
func (r result) inserted(name string) []string {
	var out []string
	for _, m := range r.mods {
		if m.Code == milter.ActInsertHeader && strings.EqualFold(m.HeaderName, name) {
			out = append(out, m.HeaderValue)
		}
	}
	return out
}

func (r result) has(code milter.ModifyActCode) bool {
	for _, m := range r.mods {
		if m.Code == code {
			return true
		}
	}
	return false
}

// checkQuarantine asserts the quarantine actions of a result: the hold
// queue (milter quarantine) and the marker header for Sieve.
func checkQuarantine(t *testing.T, r result, hold, mark bool) {
	t.Helper()
	if got := r.has(milter.ActQuarantine); got != hold {
		t.Errorf("hold = %v, want %v", got, hold)
	}
	var marked bool
	for _, m := range r.mods {
		if m.Code == milter.ActAddHeader && m.HeaderName == "X-DMARC-Quarantine" && m.HeaderValue == " yes" {
			marked = true
		}
	}
	if marked != mark {
		t.Errorf("marker header = %v, want %v (%+v)", marked, mark, r.mods)
	}
}
