package policy

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/miekg/dns"
)

// recorder is a Resolver that records the names asked, in order, and
// passes every lookup to the real one.
type recorder struct {
	Resolver
	mu    sync.Mutex
	names []string
}

func (r *recorder) log(kind, name string) {
	r.mu.Lock()
	r.names = append(r.names, kind+" "+strings.TrimSuffix(name, "."))
	r.mu.Unlock()
}

func (r *recorder) LookupTXT(ctx context.Context, name string) ([]string, error) {
	r.log("TXT", name)
	return r.Resolver.LookupTXT(ctx, name)
}

func (r *recorder) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	r.log("MX", name)
	return r.Resolver.LookupMX(ctx, name)
}

func (r *recorder) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	r.log("IP", host)
	return r.Resolver.LookupIPAddr(ctx, host)
}

// txtQueries returns the TXT names recorded.
func (r *recorder) txtQueries() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, n := range r.names {
		if after, ok := strings.CutPrefix(n, "TXT "); ok {
			out = append(out, after)
		}
	}
	return out
}

// newDNS starts the test authoritative server with zone and returns it and
// a pkg/cache resolver that asks it (temporary failures not remembered, so
// that fault tests see each query).
func newDNS(t testing.TB, zone string) (*dnstest.Server, *cache.Resolver) {
	t.Helper()
	srv := startDNS(t, zone)
	r, err := cache.New(cache.Config{Nameservers: []string{srv.Addr}, Timeout: 300 * time.Millisecond, Attempts: 1, ErrTTL: -1, StaleTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	return srv, r
}

// startDNS starts a dnstest server, retrying: dnstest.Start takes a random
// UDP port and then binds TCP on the same number, which fails now and then
// when another process on this shared machine holds that TCP port.
func startDNS(t testing.TB, zone string) *dnstest.Server {
	t.Helper()
	var err error
	for range 20 {
		var srv *dnstest.Server
		if srv, err = dnstest.Start(zone); err == nil {
			t.Cleanup(srv.Stop)
			return srv
		}
	}
	t.Fatalf("dnstest: %v", err)
	return nil
}

// txtRR builds a TXT record at owner with one string (no zone-file quoting
// issues with ';').
func txtRR(owner, s string) dns.RR {
	var parts []string
	for len(s) > 255 {
		parts, s = append(parts, s[:255]), s[255:]
	}
	parts = append(parts, s)
	return &dns.TXT{Hdr: dns.RR_Header{Name: dns.Fqdn(owner), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300}, Txt: parts}
}

func aRR(owner string) dns.RR {
	return &dns.A{Hdr: dns.RR_Header{Name: dns.Fqdn(owner), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 1)}
}

func mxRR(owner string) dns.RR {
	return &dns.MX{Hdr: dns.RR_Header{Name: dns.Fqdn(owner), Rrtype: dns.TypeMX, Class: dns.ClassINET, Ttl: 300}, Preference: 10, Mx: "mx.example."}
}

// dmarcRRs turns name → records into TXT records at _dmarc.name.
func dmarcRRs(recs map[string][]string) []dns.RR {
	var out []dns.RR
	for name, txts := range recs {
		for _, s := range txts {
			out = append(out, txtRR("_dmarc."+name, s))
		}
	}
	return out
}

// fixedRand returns the same number on every draw and counts the draws.
type fixedRand struct {
	n     int
	draws int
}

func (f *fixedRand) IntN(int) int { f.draws++; return f.n }
