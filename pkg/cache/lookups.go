package cache

import (
	"context"
	"net"
	"slices"

	"github.com/miekg/dns"
)

// LookupTXT returns the TXT records of name, each record's strings joined
// without a separator.
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	e := r.lookup(ctx, normalize(name), dns.TypeTXT)
	return slices.Clone(e.txt), errOf(e)
}

// LookupMX returns the MX records of name. The returned records are shared
// with the cache and must not be modified.
func (r *Resolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	e := r.lookup(ctx, normalize(name), dns.TypeMX)
	return slices.Clone(e.mx), errOf(e)
}

// LookupAddr returns the PTR names of an IP address (absolute, with the
// trailing dot, as *net.Resolver does).
func (r *Resolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	arpa, err := dns.ReverseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr}
	}
	e := r.lookup(ctx, normalize(arpa), dns.TypePTR)
	return slices.Clone(e.names), errOf(e)
}

// LookupIPAddr returns the A and AAAA addresses of host. The two queries run
// concurrently when neither is cached. Any address makes a success; else a
// temporary failure of either is reported; else NXDOMAIN; else NODATA.
func (r *Resolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	name := normalize(host)
	k4, k6 := key{name, dns.TypeA}, key{name, dns.TypeAAAA}
	e4, old4 := r.cached(k4)
	e6, old6 := r.cached(k6)
	switch {
	case e4 == nil && e6 == nil:
		done := make(chan struct{})
		go func() {
			defer close(done)
			e6 = r.fetch(ctx, k6, old6)
		}()
		e4 = r.fetch(ctx, k4, old4)
		<-done
	case e4 == nil:
		e4 = r.fetch(ctx, k4, old4)
	case e6 == nil:
		e6 = r.fetch(ctx, k6, old6)
	}
	return ipAddrs(e4, e6)
}

// ipAddrs joins the A and AAAA answers of one name.
func ipAddrs(e4, e6 *entry) ([]net.IPAddr, error) {
	ips := make([]net.IPAddr, 0, len(e4.ips)+len(e6.ips))
	ips = append(append(ips, e4.ips...), e6.ips...)
	if len(ips) > 0 {
		return ips, nil
	}
	for _, e := range []*entry{e4, e6} {
		if e.err != nil && e.err.IsTemporary {
			return nil, e.err
		}
	}
	if e4.err != nil {
		return nil, e4.err
	}
	return nil, errOf(e6)
}
