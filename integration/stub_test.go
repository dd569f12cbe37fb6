package integration

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-milter"
)

// stubMilter is a tiny milter used only to check the test bed itself
// (Postfix, XCLIENT, macros, hold queue, header edits, Dovecot, Sieve)
// independently of our daemon, so that a bed problem is not mistaken for a
// daemon bug. The header X-Stub-Action picks what it does at end of message;
// it always adds X-Stub-Seen with what Postfix told it.
type stubMilter struct {
	milter.NoOpMilter
	authservID string

	connAddr, helo string            // from the connect and HELO events
	mail           map[string]string // macros copied at MAIL FROM
	action         string
}

func (s *stubMilter) Connect(host, family string, port uint16, addr net.IP, m *milter.Modifier) (milter.Response, error) {
	s.connAddr = addr.String()
	return milter.RespContinue, nil
}

func (s *stubMilter) Helo(name string, m *milter.Modifier) (milter.Response, error) {
	s.helo = name
	return milter.RespContinue, nil
}

func (s *stubMilter) MailFrom(from string, m *milter.Modifier) (milter.Response, error) {
	// Modifier.Macros is replaced on every macro packet: copy what we need now.
	s.mail = map[string]string{}
	for _, k := range []string{"i", "{auth_authen}", "{client_addr}", "{client_name}"} {
		s.mail[k] = m.Macros[k]
	}
	return milter.RespContinue, nil
}

func (s *stubMilter) Header(name, value string, m *milter.Modifier) (milter.Response, error) {
	if strings.EqualFold(name, "X-Stub-Action") {
		s.action = strings.TrimSpace(value)
	}
	return milter.RespContinue, nil
}

func (s *stubMilter) Body(m *milter.Modifier) (milter.Response, error) {
	seen := fmt.Sprintf("connect=%q helo=%q client_addr=%q client_name=%q auth_authen=%q i_at_mail=%q i_at_eom=%v",
		s.connAddr, s.helo, s.mail["{client_addr}"], s.mail["{client_name}"], s.mail["{auth_authen}"],
		s.mail["i"], m.Macros["i"] != "")
	if err := m.AddHeader("X-Stub-Seen", seen); err != nil {
		return nil, err
	}
	switch s.action {
	case "reject":
		return milter.NewResponseStr('y', "550 5.7.1 stub says no"), nil
	case "tempfail":
		return milter.NewResponseStr('y', "451 4.7.5 stub says later"), nil
	case "hold":
		if err := m.Quarantine("stub hold"); err != nil {
			return nil, err
		}
	case "junk":
		// Only the A-R route of the Sieve script: no marker header.
		ar := s.authservID + "; dmarc=fail (p=quarantine) policy.dmarc=quarantine header.from=stub.example"
		if err := m.InsertHeader(0, "Authentication-Results", ar); err != nil {
			return nil, err
		}
	case "delete-second-ar":
		// Header indexes are 1-based per field name (milter protocol).
		if err := m.ChangeHeader(2, "Authentication-Results", ""); err != nil {
			return nil, err
		}
	}
	return milter.RespAccept, nil
}

// startStub serves the stub on a loopback port and returns its Postfix
// address ("inet:127.0.0.1:PORT").
func startStub(t *testing.T, authservID string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveStub(t, ln, authservID)
	return "inet:" + ln.Addr().String()
}

// startStubUnix serves the stub on a unix socket that Postfix (user
// postfix) may use, at path.
func startStubUnix(t *testing.T, path, authservID string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	chownName(t, path, "postfix")
	serveStub(t, ln, authservID)
}

func serveStub(t *testing.T, ln net.Listener, authservID string) {
	srv := &milter.Server{
		NewMilter: func() milter.Milter { return &stubMilter{authservID: authservID} },
		Actions:   milter.OptAddHeader | milter.OptChangeHeader | milter.OptQuarantine | milter.OptSetSymList,
		// go-milter cannot handle SMFIC_UNKNOWN: ask Postfix not to send it.
		Protocol: milter.OptNoUnknown,
		// Ask for the MAIL-stage macros ourselves, as the daemon does (the
		// shipped main.cf fragment sets no milter_mail_macros).
		SymList: map[milter.Stage][]string{
			milter.StageMailFrom: {"i", "{auth_authen}", "{client_addr}", "{client_name}", "s"},
		},
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); wg.Wait() })
}
