package cache

import (
	"context"
	"net"
	"slices"
	"sync/atomic"

	"github.com/miekg/dns"
)

// CacheOnly is a view of a Resolver that answers from the cache alone and
// never waits: a lookup the cache cannot answer now returns at once a
// temporary *net.DNSError and marks the view as having missed. It has the
// lookup methods of Resolver, so a check written against the resolver
// interface runs through it unchanged.
//
// It lets a caller run a check inline when all of its answers are cached
// (no goroutine, no timer), and fall back to the real Resolver, in the
// background, when Missed reports that one was not: an answer the view gives
// is exactly the one the Resolver would give at that moment (fresh,
// negative, remembered failure or stale), so a check that did not miss has
// the outcome it would have had through the Resolver. A probe that misses
// costs the work done up to the first missing answer. Hits are counted in
// the Resolver's statistics; misses are not (the lookup that follows counts
// them). It is safe for concurrent use; Reset readies it for another check.
type CacheOnly struct {
	r      *Resolver
	missed atomic.Bool
}

// CacheOnly returns a new cache-only view of r.
func (r *Resolver) CacheOnly() *CacheOnly { return &CacheOnly{r: r} }

// Missed reports whether a lookup through the view was not in the cache.
func (c *CacheOnly) Missed() bool { return c.missed.Load() }

// Reset clears the miss, so that the view serves the next check.
func (c *CacheOnly) Reset() { c.missed.Store(false) }

// entry returns the cached answer for (name, qtype), or nil after marking
// the miss. With invalidNotFound, a name that cannot exist is answered
// not-found, as Resolver.lookup does.
func (c *CacheOnly) entry(name string, qtype uint16, invalidNotFound bool) *entry {
	if e, _ := c.r.cachedCount(key{name, qtype}, false); e != nil {
		return e
	}
	if invalidNotFound && !validName(name) {
		return &entry{err: &net.DNSError{Err: "invalid domain name", Name: name, IsNotFound: true}}
	}
	c.missed.Store(true)
	return nil
}

func (c *CacheOnly) missErr(name string) error {
	return &net.DNSError{Err: "not in the cache", Name: name, IsTemporary: true}
}

// LookupTXT is Resolver.LookupTXT from the cache.
func (c *CacheOnly) LookupTXT(_ context.Context, name string) ([]string, error) {
	n := normalize(name)
	e := c.entry(n, dns.TypeTXT, true)
	if e == nil {
		return nil, c.missErr(n)
	}
	return slices.Clone(e.txt), errOf(e)
}

// LookupMX is Resolver.LookupMX from the cache.
func (c *CacheOnly) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	n := normalize(name)
	e := c.entry(n, dns.TypeMX, true)
	if e == nil {
		return nil, c.missErr(n)
	}
	return slices.Clone(e.mx), errOf(e)
}

// LookupAddr is Resolver.LookupAddr from the cache.
func (c *CacheOnly) LookupAddr(_ context.Context, addr string) ([]string, error) {
	arpa, err := dns.ReverseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr}
	}
	n := normalize(arpa)
	e := c.entry(n, dns.TypePTR, true)
	if e == nil {
		return nil, c.missErr(n)
	}
	return slices.Clone(e.names), errOf(e)
}

// LookupIPAddr is Resolver.LookupIPAddr from the cache: both the A and the
// AAAA answer must be there (Resolver.LookupIPAddr has no shortcut for
// invalid names, so neither has this).
func (c *CacheOnly) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	n := normalize(host)
	e4 := c.entry(n, dns.TypeA, false)
	if e4 == nil {
		return nil, c.missErr(n)
	}
	e6 := c.entry(n, dns.TypeAAAA, false)
	if e6 == nil {
		return nil, c.missErr(n)
	}
	return ipAddrs(e4, e6)
}
