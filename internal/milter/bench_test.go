package milter

import (
	"bytes"
	"net"
	"testing"
	"time"

	milter "github.com/emersion/go-milter"
)

// benchSend runs one message over an open session (no testing.T helpers:
// benchmarks fail with b.Fatal).
func benchSend(b *testing.B, s *milter.ClientSession, fields []HeaderField, body []byte, want milter.ActionCode) {
	s.Macros(milter.CodeMail, "{client_addr}", "192.0.2.10", "i", "Q")
	if _, err := s.Mail("a@pass.example", nil); err != nil {
		b.Fatal(err)
	}
	for _, f := range fields {
		if _, err := s.HeaderField(f.Name, f.Value); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := s.HeaderEnd(); err != nil {
		b.Fatal(err)
	}
	_, act, err := s.BodyReadFrom(bytes.NewReader(body))
	if err != nil || act.Code != want {
		b.Fatalf("%+v %v", act, err)
	}
	s.Abort()
}

func benchSession(b *testing.B, addr string) *milter.ClientSession {
	cl := milter.NewClientWithOptions("tcp", addr, milter.ClientOptions{
		ActionMask: milter.OptAddHeader | milter.OptChangeHeader | milter.OptQuarantine, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
	})
	s, err := cl.Session()
	if err != nil {
		b.Fatal(err)
	}
	s.Conn("client.example", milter.FamilyInet, 1, "192.0.2.10")
	s.Helo("mail.client.example")
	return s
}

// BenchmarkMessage: one DKIM-signed message (SPF pass, DKIM pass, DMARC
// pass, answers from the warm DNS cache) per iteration on one connection,
// against the baseline of the same conversation with go-milter's
// NoOpMilter (the library and socket cost alone).
func BenchmarkMessage(b *testing.B) {
	t := &testing.T{}
	raw := signMessage(t, []byte(message("pass.example")))
	fields, body := SplitMessage(raw)

	b.Run("baseline-noop", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &milter.Server{NewMilter: func() milter.Milter { return milter.NoOpMilter{} }, Protocol: milter.OptNoUnknown}
		go srv.Serve(ln)
		defer srv.Close()
		s := benchSession(b, ln.Addr().String())
		defer s.Close()
		b.ReportAllocs()
		for b.Loop() {
			benchSend(b, s, fields, body, milter.ActAccept)
		}
	})
	b.Run("dmarc-milter", func(b *testing.B) {
		h := newHarness(t, nil)
		s := benchSession(b, h.addr)
		defer s.Close()
		b.ReportAllocs()
		for b.Loop() {
			benchSend(b, s, fields, body, milter.ActAccept)
		}
	})
}
