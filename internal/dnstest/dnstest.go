// Package dnstest runs a real authoritative DNS server on loopback for tests.
//
// It answers over UDP and TCP on the same 127.0.0.1 port, from records given as
// zone-file text or as miekg/dns RRs. It knows the difference between a name
// that does not exist (NXDOMAIN) and a name that exists without records of the
// asked type (NODATA, RFC 8020 for empty non-terminals), attaches an SOA to
// negative answers so that resolvers can cache them (RFC 2308 §5), follows
// CNAMEs inside its data, answers names that do not exist from a wildcard
// ("*.example.com", RFC 4592), and can inject faults per name: SERVFAIL,
// REFUSED, no answer at all (a timeout), forced truncation, a garbage reply,
// a reply with a wrong ID or question. It counts every query it receives.
//
// It is test infrastructure: it is used by the tests of every package and by
// the benchmarks, never by the daemon.
package dnstest

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Fault is a misbehaviour injected for one name (or for every name).
type Fault int

// The faults a Server can inject.
const (
	FaultNone          Fault = iota
	FaultServFail            // answer SERVFAIL
	FaultRefused             // answer REFUSED
	FaultDrop                // send nothing: the client times out
	FaultTruncate            // answer over UDP with TC=1 and no records
	FaultGarbage             // send bytes that are not a DNS message
	FaultWrongID             // a well-formed answer with another message ID
	FaultWrongQuestion       // a well-formed answer to another question
	FaultFormErr             // answer FORMERR
)

type key struct {
	name  string
	qtype uint16
}

// Server is an authoritative DNS server on 127.0.0.1. Create it with Start or
// New; it is safe for concurrent use.
type Server struct {
	// Addr is "127.0.0.1:port"; UDP and TCP listen on the same port.
	Addr string

	udp, tcp *dns.Server

	mu       sync.Mutex
	rrs      map[key][]dns.RR
	names    map[string]bool // every owner name and each of its ancestors
	soas     map[string]*dns.SOA
	faults   map[string]Fault
	allFault Fault
	delay    time.Duration
	negTTL   uint32
	noChase  bool
	total    int
	udpCount int
	tcpCount int
	perKey   map[key]int
}

// Start parses zone (RFC 1035 master-file text; "$TTL" and absolute names
// recommended) and starts the server.
func Start(zone string) (*Server, error) {
	s := &Server{
		rrs:    map[key][]dns.RR{},
		names:  map[string]bool{},
		soas:   map[string]*dns.SOA{},
		faults: map[string]Fault{},
		perKey: map[key]int{},
		negTTL: 300,
	}
	if err := s.AddZone(zone); err != nil {
		return nil, err
	}
	pc, ln, err := listenPair()
	if err != nil {
		return nil, err
	}
	s.Addr = pc.LocalAddr().String()
	var wg sync.WaitGroup
	wg.Add(2)
	s.udp = &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: wg.Done}
	s.tcp = &dns.Server{Listener: ln, Handler: s, NotifyStartedFunc: wg.Done}
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	wg.Wait()
	return s, nil
}

// listenPair opens a UDP socket on a free loopback port and a TCP listener
// on the same port number. The TCP port can be taken by someone else between
// the two calls, so it tries again with another port a few times.
func listenPair() (net.PacketConn, net.Listener, error) {
	var last error
	for try := 0; try < 20; try++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		last = err
	}
	return nil, nil, fmt.Errorf("dnstest: no free UDP+TCP port pair: %w", last)
}

// TB is the part of testing.TB that New needs.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// New starts a server for a test and stops it when the test ends.
func New(t TB, zone string) *Server {
	t.Helper()
	s, err := Start(zone)
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Stop shuts both listeners down.
func (s *Server) Stop() {
	s.udp.Shutdown()
	s.tcp.Shutdown()
}

// AddZone adds the records of a zone-file text. Relative names are relative
// to the root.
func (s *Server) AddZone(zone string) error {
	zp := dns.NewZoneParser(strings.NewReader(zone), ".", "")
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		return fmt.Errorf("dnstest: zone: %w", err)
	}
	s.Add(rrs...)
	return nil
}

// MustAdd adds records written as zone-file lines and panics on a bad line.
func (s *Server) MustAdd(lines ...string) {
	if err := s.AddZone(strings.Join(lines, "\n")); err != nil {
		panic(err)
	}
}

// Add adds records.
func (s *Server) Add(rrs ...dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		h := rr.Header()
		name := canonName(h.Name)
		h.Name = name
		k := key{name, h.Rrtype}
		s.rrs[k] = append(s.rrs[k], rr)
		if soa, ok := rr.(*dns.SOA); ok {
			s.soas[name] = soa
		}
		for n := name; n != ""; n = parent(n) {
			s.names[n] = true
		}
	}
}

// Remove deletes every record of the name (all types). The name's ancestors
// remain known.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name = strings.ToLower(dns.Fqdn(name))
	for k := range s.rrs {
		if k.name == name {
			delete(s.rrs, k)
		}
	}
	hasChild := false
	for n := range s.names {
		if n != name && strings.HasSuffix(n, "."+name) {
			hasChild = true
			break
		}
	}
	if !hasChild {
		delete(s.names, name)
	}
}

// SetFault injects f for queries of name (any type); FaultNone clears it.
func (s *Server) SetFault(name string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name = strings.ToLower(dns.Fqdn(name))
	if f == FaultNone {
		delete(s.faults, name)
		return
	}
	s.faults[name] = f
}

// SetFaultAll injects f for every query (the server "goes down" with
// FaultDrop); FaultNone clears it.
func (s *Server) SetFaultAll(f Fault) {
	s.mu.Lock()
	s.allFault = f
	s.mu.Unlock()
}

// SetDelay makes every answer wait d before it is sent.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// SetNoChase makes the server answer a CNAME alone, without following it to
// the target's records (as a server that is not authoritative for the
// target does).
func (s *Server) SetNoChase(on bool) {
	s.mu.Lock()
	s.noChase = on
	s.mu.Unlock()
}

// SetNegativeTTL sets the SOA TTL and MINIMUM of the synthesized SOA added to
// negative answers when the data holds no SOA of its own (default 300).
func (s *Server) SetNegativeTTL(ttl uint32) {
	s.mu.Lock()
	s.negTTL = ttl
	s.mu.Unlock()
}

// Queries is the number of queries received, over both transports.
func (s *Server) Queries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// TransportQueries is the number of queries received over UDP and over TCP.
func (s *Server) TransportQueries() (udp, tcp int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.udpCount, s.tcpCount
}

// QueriesFor is the number of queries received for one name and type
// (dns.TypeTXT etc.).
func (s *Server) QueriesFor(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perKey[key{strings.ToLower(dns.Fqdn(name)), qtype}]
}

// ResetCounts sets every counter back to zero.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total, s.udpCount, s.tcpCount = 0, 0, 0
	s.perKey = map[key]int{}
}

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	_, isUDP := w.RemoteAddr().(*net.UDPAddr)
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)

	s.mu.Lock()
	s.total++
	if isUDP {
		s.udpCount++
	} else {
		s.tcpCount++
	}
	s.perKey[key{name, q.Qtype}]++
	fault := s.allFault
	if f, ok := s.faults[name]; ok && fault == FaultNone {
		fault = f
	}
	delay := s.delay
	s.mu.Unlock()

	if delay > 0 {
		time.Sleep(delay)
	}
	switch fault {
	case FaultDrop:
		return
	case FaultGarbage:
		w.Write([]byte{0xde, 0xad, 0xbe, 0xef, 0x00})
		return
	case FaultServFail, FaultRefused, FaultFormErr:
		rc := map[Fault]int{FaultServFail: dns.RcodeServerFailure, FaultRefused: dns.RcodeRefused, FaultFormErr: dns.RcodeFormatError}[fault]
		m := new(dns.Msg)
		m.SetRcode(req, rc)
		w.WriteMsg(m)
		return
	case FaultTruncate:
		if isUDP {
			m := new(dns.Msg)
			m.SetReply(req)
			m.Truncated = true
			w.WriteMsg(m)
			return
		}
	}

	m := s.answer(req, name, q.Qtype)
	switch fault {
	case FaultWrongID:
		m.Id = req.Id + 1
	case FaultWrongQuestion:
		m.Question[0].Name = "wrong." + m.Question[0].Name
	}
	if isUDP {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

func (s *Server) answer(req *dns.Msg, name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), opt.Do())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := name
	for hops := 0; hops < 10; hops++ {
		if rrs := s.rrs[key{cur, qtype}]; len(rrs) > 0 {
			m.Answer = append(m.Answer, copyRRs(rrs)...)
			return m
		}
		cn := s.rrs[key{cur, dns.TypeCNAME}]
		if len(cn) == 0 || qtype == dns.TypeCNAME {
			break
		}
		m.Answer = append(m.Answer, dns.Copy(cn[0]))
		if s.noChase {
			return m
		}
		cur = strings.ToLower(cn[0].(*dns.CNAME).Target)
	}
	if !s.names[cur] {
		if wild, ok := s.wildcardFor(cur); ok {
			// RFC 4592 §3.3.1: the name does not exist but the wildcard at
			// its closest encloser does: answer from it, owner name
			// replaced by the name asked; no records of the type is NODATA.
			for _, rr := range copyRRs(s.rrs[key{wild, qtype}]) {
				rr.Header().Name = cur
				m.Answer = append(m.Answer, rr)
			}
			if len(m.Answer) > 0 {
				return m
			}
		} else {
			m.Rcode = dns.RcodeNameError
		}
	}
	m.Ns = append(m.Ns, s.soaFor(cur))
	return m
}

// wildcardFor returns the source of synthesis for a name that does not
// exist: "*." plus its closest encloser (the longest ancestor that exists,
// RFC 4592 §3.3.1), when that wildcard name exists. Wildcards answer the
// types they hold; a wildcard CNAME is not followed.
func (s *Server) wildcardFor(name string) (string, bool) {
	for n := parent(name); n != ""; n = parent(n) {
		if !s.names[n] {
			continue
		}
		wild := "*." + n
		if n == "." {
			wild = "*."
		}
		return wild, s.names[wild]
	}
	return "", false
}

// soaFor returns the SOA of the closest enclosing zone, or a synthesized one.
func (s *Server) soaFor(name string) dns.RR {
	for n := name; n != ""; n = parent(n) {
		if soa, ok := s.soas[n]; ok {
			return dns.Copy(soa)
		}
	}
	return &dns.SOA{
		Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.negTTL},
		Ns:  "ns.dnstest.", Mbox: "hostmaster.dnstest.", Serial: 1,
		Refresh: 7200, Retry: 3600, Expire: 1209600, Minttl: s.negTTL,
	}
}

// parent returns the parent of an absolute name: "." for a top-level name,
// "" for the root.
func parent(n string) string {
	if n == "." {
		return ""
	}
	n = n[strings.IndexByte(n, '.')+1:]
	if n == "" {
		return "."
	}
	return n
}

// canonName returns a name in the presentation form the server sees in
// queries (lowercase, absolute, special bytes escaped), so that records added
// with raw names (an SPF test's "a  b.example") are found.
func canonName(name string) string {
	name = strings.ToLower(dns.Fqdn(name))
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(name, buf, 0, nil, false)
	if err != nil {
		return name
	}
	out, _, err := dns.UnpackDomainName(buf[:n], 0)
	if err != nil {
		return name
	}
	return out
}

func copyRRs(in []dns.RR) []dns.RR {
	out := make([]dns.RR, len(in))
	for i, rr := range in {
		out[i] = dns.Copy(rr)
	}
	return out
}
