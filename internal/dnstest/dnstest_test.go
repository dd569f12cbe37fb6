package dnstest

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

func ask(t *testing.T, s *Server, netw, name string, qtype uint16) (*dns.Msg, error) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: netw, Timeout: 200 * time.Millisecond}
	in, _, err := c.Exchange(m, s.Addr)
	return in, err
}

func TestAnswersAndFaults(t *testing.T) {
	s := New(t, `
a.example. 60 IN TXT "hello"
x.y.example. 60 IN A 192.0.2.1
c.example. 60 IN CNAME a.example.
`)
	for _, tc := range []struct {
		name   string
		qtype  uint16
		rcode  int
		answer int
	}{
		{"a.example.", dns.TypeTXT, dns.RcodeSuccess, 1},
		{"A.EXAMPLE.", dns.TypeTXT, dns.RcodeSuccess, 1},
		{"a.example.", dns.TypeMX, dns.RcodeSuccess, 0},     // NODATA
		{"y.example.", dns.TypeA, dns.RcodeSuccess, 0},      // empty non-terminal
		{"none.example.", dns.TypeA, dns.RcodeNameError, 0}, // NXDOMAIN
		{"c.example.", dns.TypeTXT, dns.RcodeSuccess, 2},    // CNAME + target
	} {
		in, err := ask(t, s, "udp", tc.name, tc.qtype)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if in.Rcode != tc.rcode || len(in.Answer) != tc.answer {
			t.Errorf("%s %s: rcode %d, %d answers; want %d, %d", tc.name, dns.TypeToString[tc.qtype], in.Rcode, len(in.Answer), tc.rcode, tc.answer)
		}
		if tc.answer == 0 && len(in.Ns) != 1 {
			t.Errorf("%s: negative answer without SOA", tc.name)
		}
	}
	s.SetFault("a.example", FaultServFail)
	if in, _ := ask(t, s, "udp", "a.example.", dns.TypeTXT); in == nil || in.Rcode != dns.RcodeServerFailure {
		t.Errorf("SERVFAIL fault: %v", in)
	}
	s.SetFault("a.example", FaultDrop)
	if _, err := ask(t, s, "udp", "a.example.", dns.TypeTXT); err == nil {
		t.Error("drop fault answered")
	}
	s.SetFault("a.example", FaultTruncate)
	if in, _ := ask(t, s, "udp", "a.example.", dns.TypeTXT); in == nil || !in.Truncated {
		t.Errorf("truncate fault over UDP: %v", in)
	}
	if in, _ := ask(t, s, "tcp", "a.example.", dns.TypeTXT); in == nil || in.Truncated || len(in.Answer) != 1 {
		t.Errorf("truncate fault over TCP should answer in full: %v", in)
	}
	if got := s.QueriesFor("a.example", dns.TypeTXT); got != 6 {
		t.Errorf("QueriesFor = %d, want 6", got)
	}
}

// TestWildcard checks RFC 4592 synthesis: a name that does not exist below
// the wildcard's parent is answered from it (any depth, owner name rewritten),
// a name that exists is not, another type is NODATA, and a wildcard does not
// answer below a closer name that exists.
func TestWildcard(t *testing.T) {
	s := New(t, `
*._report._dmarc.rcpt.example. 60 IN TXT "v=DMARC1"
own._report._dmarc.rcpt.example. 60 IN A 192.0.2.1
x.deeper._report._dmarc.rcpt.example. 60 IN A 192.0.2.2
`)
	for _, tc := range []struct {
		name   string
		qtype  uint16
		rcode  int
		answer int
	}{
		{"policy.example._report._dmarc.rcpt.example.", dns.TypeTXT, dns.RcodeSuccess, 1},
		{"a.b.c._report._dmarc.rcpt.example.", dns.TypeTXT, dns.RcodeSuccess, 1},        // several labels
		{"policy.example._report._dmarc.rcpt.example.", dns.TypeA, dns.RcodeSuccess, 0}, // NODATA
		{"own._report._dmarc.rcpt.example.", dns.TypeTXT, dns.RcodeSuccess, 0},          // exists: no synthesis
		{"y.deeper._report._dmarc.rcpt.example.", dns.TypeTXT, dns.RcodeNameError, 0},   // closest encloser deeper.…, no wildcard there
		{"_report._dmarc.other.example.", dns.TypeTXT, dns.RcodeNameError, 0},
	} {
		in, err := ask(t, s, "udp", tc.name, tc.qtype)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if in.Rcode != tc.rcode || len(in.Answer) != tc.answer {
			t.Errorf("%s %s: rcode %d, %d answers; want %d, %d", tc.name, dns.TypeToString[tc.qtype], in.Rcode, len(in.Answer), tc.rcode, tc.answer)
			continue
		}
		if tc.answer > 0 && in.Answer[0].Header().Name != tc.name {
			t.Errorf("%s: owner name %q, want the name asked", tc.name, in.Answer[0].Header().Name)
		}
	}
}
