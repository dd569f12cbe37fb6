// Package cache is dmarc-milter's one DNS client: a stub resolver over
// github.com/miekg/dns with a TTL cache in front of it.
//
// Every SPF, DKIM and DMARC check is a handful of DNS queries, and the same
// few domains send most of the mail, so the answers are cached by (type, name)
// for as long as their TTL allows (clamped to [MinTTL, MaxTTL]). Negative
// answers — the name does not exist (NXDOMAIN) or has no records of that type
// (NODATA) — are cached too, for the time the zone's SOA allows (RFC 2308 §5).
// Temporary failures are remembered only for ErrTTL (a second by default) so
// that a burst of mail for a broken domain does not hammer the upstream.
// Concurrent lookups of the same missing key wait for one upstream query
// (single flight). When the upstream fails, an expired answer is served for up
// to StaleTTL more (serve-stale, RFC 8767).
//
// The lookup methods have the signatures of *net.Resolver and its error
// contract, which blitiri.com.ar/go/spf and go-msgauth rely on: a name that
// does not exist gives a bare *net.DNSError with IsNotFound; a server
// failure, refusal, timeout or garbage answer gives a bare *net.DNSError with
// IsTemporary; a name without records of the type gives an empty answer and a
// nil error. Errors are never wrapped, because both libraries use type
// assertions.
//
// Limits: the cache holds at most MaxEntries answers; when a shard is full
// the entry that is closest to the end of its usefulness among a small random
// sample is evicted (see evict). There is no prefetching of entries about to
// expire, and no DNSSEC validation: the AD bit of the upstream answer is
// recorded for reports, not acted upon.
package cache

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Config configures a Resolver. The zero value of each field means its
// default.
type Config struct {
	// Nameservers are the upstream recursive resolvers as "host:port" or
	// "host" (port 53). Default: the nameserver lines of /etc/resolv.conf.
	Nameservers []string
	// Timeout bounds one query attempt to one server. Default: 2s.
	Timeout time.Duration
	// Attempts is the number of attempts of one query, rotating across the
	// nameservers. Default: 2.
	Attempts int
	// MinTTL is the shortest time an answer is cached. Default: 30s.
	MinTTL time.Duration
	// MaxTTL is the longest time a positive answer is cached. Default: 1h.
	MaxTTL time.Duration
	// MaxNegTTL is the longest time a negative answer is cached. Default: 15m.
	MaxNegTTL time.Duration
	// ErrTTL is how long a temporary failure is remembered; negative
	// disables. Default: 1s.
	ErrTTL time.Duration
	// StaleTTL is how long past its expiry an answer may be served while the
	// upstream fails (RFC 8767); negative disables. Default: 1h.
	StaleTTL time.Duration
	// MaxEntries bounds the number of cached answers. Default: 50000.
	MaxEntries int
	// UDPSize is the EDNS0 buffer size advertised. Default: 1232.
	UDPSize uint16
	// Now is the clock; tests inject one. Default: time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() error {
	if len(c.Nameservers) == 0 {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return fmt.Errorf("cache: reading /etc/resolv.conf: %w", err)
		}
		for _, s := range cc.Servers {
			c.Nameservers = append(c.Nameservers, net.JoinHostPort(s, cc.Port))
		}
		if len(c.Nameservers) == 0 {
			return errors.New("cache: no nameserver in /etc/resolv.conf")
		}
	}
	for i, s := range c.Nameservers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			if net.ParseIP(s) == nil {
				return fmt.Errorf("cache: nameserver %q is neither host:port nor an IP address", s)
			}
			c.Nameservers[i] = net.JoinHostPort(s, "53")
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Timeout, 2*time.Second)
	def(&c.MinTTL, 30*time.Second)
	def(&c.MaxTTL, time.Hour)
	def(&c.MaxNegTTL, 15*time.Minute)
	def(&c.ErrTTL, time.Second)
	def(&c.StaleTTL, time.Hour)
	if c.Attempts <= 0 {
		c.Attempts = 2
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = 50000
	}
	if c.UDPSize == 0 {
		c.UDPSize = 1232
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.MinTTL > c.MaxTTL {
		return fmt.Errorf("cache: min TTL %v is above max TTL %v", c.MinTTL, c.MaxTTL)
	}
	return nil
}

// Stats are the resolver's counters since it was created.
type Stats struct {
	Hits             uint64 // answered from the cache (positive answers)
	NegativeHits     uint64 // answered from the cache with NXDOMAIN or NODATA
	Misses           uint64 // not in the cache, or expired
	StaleServes      uint64 // expired answers served because the upstream failed
	Evictions        uint64 // entries dropped to stay within MaxEntries
	UpstreamQueries  uint64 // queries sent upstream (each attempt, each transport)
	UpstreamFailures uint64 // lookups that ended in a temporary failure
	Collapsed        uint64 // lookups that waited for another's identical query
	Entries          uint64 // entries cached now
}

// Answer is the cached outcome of one (name, type) lookup.
type Answer struct {
	// RRs are the records of the asked type at the end of any CNAME chain.
	RRs []dns.RR
	// Rcode is the upstream's response code (NOERROR or NXDOMAIN; failures
	// are errors).
	Rcode int
	// AD is the upstream's Authenticated Data bit (RFC 4035 §3.2.3).
	AD bool
}

// entry is one cached answer, with the views the typed lookups return
// precomputed so that a hit does not convert records again.
type entry struct {
	ans     Answer
	err     *net.DNSError // nil, IsNotFound or IsTemporary
	txt     []string
	mx      []*net.MX
	ips     []net.IPAddr
	names   []string
	expires time.Time // fresh until then
	stale   time.Time // may be served on upstream failure until then
	temp    bool      // a remembered temporary failure
	prev    *entry    // with temp: the expired answer that may be served stale
}

type key struct {
	name  string // lowercase, no trailing dot
	qtype uint16
}

const shardCount = 16

type shard struct {
	mu sync.RWMutex
	m  map[key]*entry
}

type call struct {
	done chan struct{}
	e    *entry
}

// Resolver is a caching DNS stub resolver. Create it with New; it is safe for
// concurrent use.
type Resolver struct {
	cfg      Config
	shards   [shardCount]shard
	perShard int

	flightMu sync.Mutex
	flights  map[key]*call

	hits, negHits, misses, stale, evictions atomic.Uint64
	upstream, failures, collapsed, entries  atomic.Uint64
}

// New returns a Resolver for cfg.
func New(cfg Config) (*Resolver, error) {
	cfg.Nameservers = append([]string(nil), cfg.Nameservers...)
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	r := &Resolver{cfg: cfg, flights: map[key]*call{}}
	r.perShard = max(1, (cfg.MaxEntries+shardCount-1)/shardCount)
	for i := range r.shards {
		r.shards[i].m = make(map[key]*entry)
	}
	return r, nil
}

// Nameservers returns the upstream servers in use.
func (r *Resolver) Nameservers() []string { return append([]string(nil), r.cfg.Nameservers...) }

// Stats returns a snapshot of the counters.
func (r *Resolver) Stats() Stats {
	return Stats{
		Hits: r.hits.Load(), NegativeHits: r.negHits.Load(), Misses: r.misses.Load(),
		StaleServes: r.stale.Load(), Evictions: r.evictions.Load(),
		UpstreamQueries: r.upstream.Load(), UpstreamFailures: r.failures.Load(),
		Collapsed: r.collapsed.Load(), Entries: r.entries.Load(),
	}
}

// normalize returns the cache form of a name: lowercase, without the
// trailing dot. It does not allocate for a name already in that form.
func normalize(name string) string {
	name = strings.TrimSuffix(name, ".")
	return strings.ToLower(name)
}

func (r *Resolver) shardFor(k key) *shard {
	// FNV-1a over the name, mixed with the type.
	h := uint32(2166136261)
	for i := 0; i < len(k.name); i++ {
		h ^= uint32(k.name[i])
		h *= 16777619
	}
	h ^= uint32(k.qtype)
	return &r.shards[h%shardCount]
}

// Lookup returns the answer for (name, qtype), from the cache when it is
// fresh. The error follows the package's contract.
func (r *Resolver) Lookup(ctx context.Context, name string, qtype uint16) (Answer, error) {
	e := r.lookup(ctx, normalize(name), qtype)
	return e.ans, errOf(e)
}

// errOf returns the entry's error as the error interface, keeping a nil
// *net.DNSError from becoming a non-nil interface.
func errOf(e *entry) error {
	if e.err == nil {
		return nil
	}
	return e.err
}

func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) *entry {
	k := key{name, qtype}
	e, old := r.cached(k)
	if e != nil {
		return e
	}
	if !validName(name) {
		// A name that cannot exist: no query, and a not-found answer, so
		// that it is not mistaken for a temporary failure.
		return &entry{err: &net.DNSError{Err: "invalid domain name", Name: name, IsNotFound: true}}
	}
	return r.fetch(ctx, k, old)
}

// cached returns the answer for k when the cache can give it now, counting
// the hit or the miss; on a miss it returns instead the expired answer that
// may be served stale if the upstream fails.
func (r *Resolver) cached(k key) (e, old *entry) {
	return r.cachedCount(k, true)
}

// cachedCount is cached; a miss is counted only when countMiss is set (a
// CacheOnly probe leaves it to the lookup that follows).
func (r *Resolver) cachedCount(k key, countMiss bool) (e, old *entry) {
	now := r.cfg.Now()
	sh := r.shardFor(k)
	sh.mu.RLock()
	e = sh.m[k]
	sh.mu.RUnlock()
	if e != nil && now.Before(e.expires) {
		if e.temp {
			// A remembered failure: serve a stale answer if one is kept.
			if old := e.staleFallback(now); old != nil {
				r.stale.Add(1)
				return old, nil
			}
			r.failures.Add(1)
			return e, nil
		}
		if e.err != nil || len(e.ans.RRs) == 0 {
			r.negHits.Add(1)
		} else {
			r.hits.Add(1)
		}
		return e, nil
	}
	if countMiss {
		r.misses.Add(1)
	}
	if e != nil && e.temp {
		return nil, e.prev // the answer a remembered failure kept for serve-stale
	}
	return nil, e
}

// staleFallback returns, for a remembered temporary failure, the expired
// answer it replaced when that one may still be served.
func (e *entry) staleFallback(now time.Time) *entry {
	if e.temp && e.prev != nil && now.Before(e.prev.stale) {
		return e.prev
	}
	return nil
}
