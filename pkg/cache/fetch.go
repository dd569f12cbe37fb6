package cache

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// maxCNAMEHops bounds how many CNAMEs one lookup follows, across the chain
// the upstream returned and the queries we add for an incomplete chain.
const maxCNAMEHops = 8

// fetch resolves k upstream, collapsing concurrent identical misses into one
// query. old is the expired entry, if any, kept for serve-stale. The upstream
// query runs under its own deadline, so that one caller giving up does not
// fail the others; each caller waits only as long as its own ctx allows.
func (r *Resolver) fetch(ctx context.Context, k key, old *entry) *entry {
	r.flightMu.Lock()
	c, ok := r.flights[k]
	if ok {
		r.flightMu.Unlock()
		r.collapsed.Add(1)
	} else {
		c = &call{done: make(chan struct{})}
		r.flights[k] = c
		r.flightMu.Unlock()
		go r.runFlight(k, c, old)
	}
	select {
	case <-c.done:
		return c.e
	case <-ctx.Done():
		r.failures.Add(1)
		return &entry{err: &net.DNSError{Err: "lookup cancelled: " + ctx.Err().Error(), Name: k.name,
			IsTimeout: errors.Is(ctx.Err(), context.DeadlineExceeded), IsTemporary: true}, temp: true}
	}
}

func (r *Resolver) runFlight(k key, c *call, old *entry) {
	defer func() {
		// A panic here would leave every waiter hanging: turn it into a
		// temporary failure.
		if p := recover(); p != nil {
			c.e = &entry{err: &net.DNSError{Err: "internal error", Name: k.name, IsTemporary: true}, temp: true}
		}
		r.flightMu.Lock()
		delete(r.flights, k)
		r.flightMu.Unlock()
		close(c.done)
	}()
	budget := r.cfg.Timeout * time.Duration(r.cfg.Attempts) * 2
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	e := r.resolve(ctx, k)
	now := r.cfg.Now()
	if e.temp {
		r.failures.Add(1)
		if old != nil && r.cfg.StaleTTL > 0 && now.Before(old.stale) {
			// RFC 8767 §4: answer with the stale data, and do not ask the
			// upstream again for this name until the failure timer runs out.
			r.stale.Add(1)
			e.prev = old
			if r.cfg.ErrTTL > 0 {
				e.expires = now.Add(r.cfg.ErrTTL)
				r.store(k, e)
			}
			c.e = old
			return
		}
		if r.cfg.ErrTTL > 0 {
			// RFC 2308 §7.1: a server failure may be cached, for at most
			// five minutes; we keep it for ErrTTL only.
			e.expires = now.Add(r.cfg.ErrTTL)
			r.store(k, e)
		}
		c.e = e
		return
	}
	if e.expires.After(now) {
		r.store(k, e)
	}
	c.e = e
}

// resolve asks the upstream for k and builds the entry, following CNAMEs.
func (r *Resolver) resolve(ctx context.Context, k key) *entry {
	name := k.name
	var ttl uint32 = 1<<31 - 1
	ad := true
	for hop := 0; hop <= maxCNAMEHops; hop++ {
		in, err := r.exchange(ctx, name, k.qtype)
		if err != nil {
			return &entry{err: err, temp: true}
		}
		ad = ad && in.AuthenticatedData
		rrs, target, minTTL := chase(in, name, k.qtype)
		ttl = min(ttl, minTTL)
		if len(rrs) > 0 {
			return r.positive(k, rrs, ttl, ad)
		}
		if target != "" && !hasSOA(in) {
			// The server gave the CNAME but said nothing about its target:
			// ask for the target ourselves.
			name = target
			continue
		}
		return r.negative(k, in, ttl, ad)
	}
	return &entry{err: &net.DNSError{Err: "CNAME chain too long", Name: k.name, IsTemporary: true}, temp: true}
}

// chase follows the CNAME chain from name inside the answer section and
// returns the records of qtype at its end, the name the chain ends at when it
// moved (else ""), and the smallest TTL along the way.
func chase(in *dns.Msg, name string, qtype uint16) (rrs []dns.RR, target string, ttl uint32) {
	ttl = 1<<31 - 1
	cur := name
	for hop := 0; hop <= maxCNAMEHops; hop++ {
		var next string
		for _, rr := range in.Answer {
			h := rr.Header()
			if !sameName(h.Name, cur) {
				continue
			}
			switch {
			case h.Rrtype == qtype:
				rrs = append(rrs, rr)
				ttl = min(ttl, h.Ttl)
			case h.Rrtype == dns.TypeCNAME && next == "":
				next = normalize(rr.(*dns.CNAME).Target)
				ttl = min(ttl, h.Ttl)
			}
		}
		if len(rrs) > 0 || next == "" {
			break
		}
		cur = next
	}
	if cur != name {
		target = cur
	}
	return rrs, target, ttl
}

func hasSOA(in *dns.Msg) bool {
	for _, rr := range in.Ns {
		if _, ok := rr.(*dns.SOA); ok {
			return true
		}
	}
	return false
}

func (r *Resolver) positive(k key, rrs []dns.RR, ttl uint32, ad bool) *entry {
	d := time.Duration(ttl) * time.Second
	d = min(max(d, r.cfg.MinTTL), r.cfg.MaxTTL)
	now := r.cfg.Now()
	e := &entry{ans: Answer{RRs: rrs, Rcode: dns.RcodeSuccess, AD: ad}, expires: now.Add(d)}
	e.stale = e.expires.Add(max(r.cfg.StaleTTL, 0))
	e.precompute()
	return e
}

// negative builds an NXDOMAIN or NODATA entry. RFC 2308 §5: the negative TTL
// is the smaller of the SOA record's TTL and its MINIMUM field; a negative
// answer without an SOA SHOULD NOT be cached, so it gets no lifetime.
func (r *Resolver) negative(k key, in *dns.Msg, chainTTL uint32, ad bool) *entry {
	e := &entry{ans: Answer{Rcode: in.Rcode, AD: ad}}
	if in.Rcode == dns.RcodeNameError {
		e.err = &net.DNSError{Err: "no such host", Name: k.name, IsNotFound: true}
	}
	now := r.cfg.Now()
	for _, rr := range in.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			d := time.Duration(min(soa.Hdr.Ttl, soa.Minttl, chainTTL)) * time.Second
			d = min(max(d, r.cfg.MinTTL), r.cfg.MaxNegTTL)
			e.expires = now.Add(d)
			e.stale = e.expires.Add(max(r.cfg.StaleTTL, 0))
			break
		}
	}
	return e
}

// precompute fills the typed views of a positive answer.
func (e *entry) precompute() {
	for _, rr := range e.ans.RRs {
		switch v := rr.(type) {
		case *dns.TXT:
			// RFC 7208 §3.3 and RFC 6376 §3.6.2.2: the character-strings of
			// one TXT record are concatenated without a separator.
			var b strings.Builder
			for _, s := range v.Txt {
				b.WriteString(txtString(s))
			}
			e.txt = append(e.txt, b.String())
		case *dns.MX:
			e.mx = append(e.mx, &net.MX{Host: v.Mx, Pref: v.Preference})
		case *dns.A:
			e.ips = append(e.ips, net.IPAddr{IP: v.A})
		case *dns.AAAA:
			e.ips = append(e.ips, net.IPAddr{IP: v.AAAA})
		case *dns.PTR:
			e.names = append(e.names, v.Ptr)
		}
	}
}

// store puts e into its shard, evicting when the shard is full.
func (r *Resolver) store(k key, e *entry) {
	sh := r.shardFor(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, exists := sh.m[k]; !exists {
		if len(sh.m) >= r.perShard {
			r.evict(sh)
		}
		r.entries.Add(1)
	}
	sh.m[k] = e
}

// evictSample is how many entries evict looks at.
const evictSample = 8

// evict drops one entry from a full shard: among a few entries taken in Go's
// randomized map order, the one whose usefulness ends first (its stale
// deadline, or its expiry when it cannot be served stale). This keeps the
// hit path free of writes (an LRU list would need a write lock on every hit)
// and prefers to keep long-lived answers, which are the popular sending
// domains' records, over short-lived ones. The caller holds sh.mu.
func (r *Resolver) evict(sh *shard) {
	var victim key
	var end time.Time
	n := 0
	for k, e := range sh.m {
		t := e.stale
		if t.Before(e.expires) {
			t = e.expires
		}
		if n == 0 || t.Before(end) {
			victim, end = k, t
		}
		n++
		if n == evictSample {
			break
		}
	}
	if n > 0 {
		delete(sh.m, victim)
		r.entries.Add(^uint64(0))
		r.evictions.Add(1)
	}
}
