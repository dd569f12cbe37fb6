package intake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// Resolver is the DNS an Enricher needs; pkg/cache's Resolver (and
// *net.Resolver) satisfy it.
type Resolver interface {
	LookupAddr(ctx context.Context, addr string) ([]string, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// EnrichConfig tunes an Enricher. Zero fields take the defaults.
type EnrichConfig struct {
	// Workers is the number of lookups at once. Default 8.
	Workers int
	// LookupTimeout bounds one source's lookups (PTR, then A/AAAA).
	// Default 5 s.
	LookupTimeout time.Duration
	// RetryAfter is how long a source whose lookup failed temporarily
	// waits before the next try. Default 1 h.
	RetryAfter time.Duration
	// Batch is the number of pending sources read from the store at once.
	// Default 256.
	Batch int
	// Geo, when set, adds the country and autonomous system of each
	// source (from local MMDB files: no DNS).
	Geo    *Geo
	Now    func() time.Time
	Logger *slog.Logger
}

// Enricher looks up the reverse DNS names of new sources in the background:
// PTR, confirmed by a forward lookup that gives the address back (a PTR
// record alone is chosen by whoever holds the address's reverse zone, so
// an unconfirmed name is kept but never used to group senders), then the
// organizational domain of the name (Public Suffix List). Sources whose
// lookup fails temporarily stay pending and are tried again after
// RetryAfter; the store is the queue, so nothing is lost when the process
// ends.
type Enricher struct {
	st  *store.Store
	r   Resolver
	cfg EnrichConfig

	kick     chan struct{}
	draining atomic.Bool
	done     chan struct{}
	resolved atomic.Int64
}

// NewEnricher returns an Enricher; Run starts it.
func NewEnricher(st *store.Store, r Resolver, cfg EnrichConfig) *Enricher {
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.LookupTimeout <= 0 {
		cfg.LookupTimeout = 5 * time.Second
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = time.Hour
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 256
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Enricher{st: st, r: r, cfg: cfg, kick: make(chan struct{}, 1), done: make(chan struct{})}
}

// Kick tells the Enricher that new sources are pending. It never blocks.
func (e *Enricher) Kick() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// Resolved counts the sources looked up so far (found, none or
// unconfirmed; not the temporary failures).
func (e *Enricher) Resolved() int64 { return e.resolved.Load() }

// Run looks up pending sources until ctx ends, or, after Drain, until none
// is left. It recovers its own panics (logged; the sources stay pending).
func (e *Enricher) Run(ctx context.Context) {
	defer close(e.done)
	defer func() {
		if p := recover(); p != nil {
			e.cfg.Logger.Error("intake: enricher panic", "panic", p)
		}
	}()
	for {
		n, err := e.round(ctx)
		if err != nil && ctx.Err() == nil {
			e.cfg.Logger.Warn("intake: enrichment", "err", err)
		}
		if ctx.Err() != nil {
			return
		}
		if n > 0 && err == nil {
			continue
		}
		if e.draining.Load() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-e.kick:
		case <-time.After(time.Minute):
		}
	}
}

// Drain asks Run to return once no pending source is left, and waits for
// it at most budget; then cancel (Run's context) stops what is left, which
// stays pending for later. It reports whether Run finished in time.
func (e *Enricher) Drain(budget time.Duration, cancel context.CancelFunc) bool {
	e.draining.Store(true)
	e.Kick()
	t := time.NewTimer(budget)
	defer t.Stop()
	select {
	case <-e.done:
		return true
	case <-t.C:
		cancel()
		<-e.done
		return false
	}
}

// round looks up one batch of pending sources; n is how many were tried.
func (e *Enricher) round(ctx context.Context) (int, error) {
	now := e.cfg.Now()
	ips, err := e.st.PendingSources(ctx, now.Add(-e.cfg.RetryAfter), e.cfg.Batch)
	if err != nil || len(ips) == 0 {
		return 0, err
	}
	work := make(chan netip.Addr)
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range min(e.cfg.Workers, len(ips)) {
		wg.Go(func() {
			defer func() {
				if p := recover(); p != nil {
					e.cfg.Logger.Error("intake: enricher worker panic", "panic", p)
				}
			}()
			for ip := range work {
				if e.one(ctx, ip, now) != nil {
					failed.Add(1)
				}
			}
		})
	}
	for _, ip := range ips {
		select {
		case work <- ip:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		// The store did not take the outcomes: wait before trying again
		// (the same sources would be read again at once).
		return len(ips), fmt.Errorf("intake: %d sources not updated", n)
	}
	return len(ips), nil
}

// PTRInfo is what a reverse lookup found.
type PTRInfo struct {
	State store.PTRState
	Name  string // the PTR name, without the final dot
	Org   string // its organizational domain, when confirmed
}

// one looks ip up and records the outcome. A temporary failure (or ctx
// ending) leaves the source pending, tried again after RetryAfter. The
// error is the store's.
func (e *Enricher) one(ctx context.Context, ip netip.Addr, now time.Time) error {
	if g := e.cfg.Geo.Lookup(ip); g != (GeoInfo{}) {
		if err := e.st.SetSourceGeo(ctx, ip, g.Country, g.ASN, g.ASOrg); err != nil && ctx.Err() == nil {
			return err
		}
	}
	lctx, cancel := context.WithTimeout(ctx, e.cfg.LookupTimeout)
	defer cancel()
	info, err := LookupPTR(lctx, e.r, ip)
	if ctx.Err() != nil {
		return nil // stopped: the source stays pending, untouched
	}
	if err != nil {
		info = PTRInfo{State: store.PTRPending}
	} else {
		e.resolved.Add(1)
	}
	if err := e.st.SetSourcePTR(ctx, ip, info.State, info.Name, info.Org, now); err != nil && ctx.Err() == nil {
		e.cfg.Logger.Warn("intake: source not updated", "ip", ip, "err", err)
		return err
	}
	return nil
}

// LookupPTR finds the confirmed reverse DNS name of ip: its first PTR name
// whose forward lookup gives ip back, with that name's organizational
// domain. No PTR record gives PTRNone; names that do not confirm give
// PTRUnconfirmed with the first name. A temporary DNS failure is an error.
func LookupPTR(ctx context.Context, r Resolver, ip netip.Addr) (PTRInfo, error) {
	names, err := r.LookupAddr(ctx, ip.String())
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound || err == nil && len(names) == 0 {
		return PTRInfo{State: store.PTRNone}, nil
	}
	if err != nil {
		return PTRInfo{}, err
	}
	if len(names) > 4 {
		names = names[:4] // a bound: a reverse zone may list many names
	}
	for _, n := range names {
		name := strings.ToLower(strings.TrimSuffix(n, "."))
		addrs, err := r.LookupIPAddr(ctx, name)
		if err != nil {
			if errors.As(err, &de) && de.IsNotFound {
				continue
			}
			return PTRInfo{}, err
		}
		for _, a := range addrs {
			if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip {
				org, err := policy.OrgDomain(ctx, nil, name, policy.MethodPSL, nil)
				if err != nil {
					org = ""
				}
				return PTRInfo{State: store.PTRFound, Name: name, Org: org}, nil
			}
		}
	}
	return PTRInfo{State: store.PTRUnconfirmed, Name: strings.ToLower(strings.TrimSuffix(names[0], "."))}, nil
}
