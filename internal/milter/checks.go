package milter

import (
	"context"
	"net"
	"time"

	"github.com/dmarc-milter/dmarc-milter/pkg/pending"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// checker is one kind of check; run runs it for t, through the cache-only
// view when inline. Checkers are values, not closures, so that a check
// answered inline allocates nothing for being started.
type checker[T any] interface {
	run(ctx context.Context, t *Transaction, inline bool) T
}

// startCheck starts one check of t's message. When the engine's resolver
// is pkg/cache, the check first runs here through a cache-only view of it
// (inline = true): if every DNS answer it needed was cached, that
// is its result, with no goroutine and no timer. Otherwise it runs in a
// goroutine with the real resolver, under timeout. A panic is the
// message's internal error. It reports whether the result was found here.
func startCheck[T any, C checker[T]](t *Transaction, c *pending.Check[T], what string, timeout time.Duration, chk C) bool {
	if t.e.cache != nil {
		if t.probe == nil {
			t.probe = t.e.cache.CacheOnly()
		} else {
			t.probe.Reset()
		}
		v, ok := runInline[T](t, what, chk)
		if !ok {
			return false // a panic: End gives the on_error decision
		}
		if !t.probe.Missed() {
			c.Set(v)
			return true
		}
	}
	ctx, cancel := context.WithTimeout(t.ctx, timeout)
	go runBackground[T](t, ctx, cancel, what, chk, c.Start())
	return false
}

// runInline runs chk through the cache-only view; ok is false after a
// panic.
func runInline[T any, C checker[T]](t *Transaction, what string, chk C) (v T, ok bool) {
	defer t.recoverCheck(what)
	return chk.run(t.ctx, t, true), true
}

// runBackground runs chk with the real resolver and sends its result on ch.
func runBackground[T any, C checker[T]](t *Transaction, ctx context.Context, cancel context.CancelFunc, what string, chk C, ch chan<- T) {
	defer cancel()
	defer t.recoverCheck(what)
	ch <- chk.run(ctx, t, false)
}

// resolver is the DNS a check runs through: the cache-only view inline,
// else the engine's resolver.
func (t *Transaction) resolver(inline bool) Resolver {
	if inline {
		return t.probe
	}
	return t.e.res
}

// spfChecker is the SPF checker over resolver(inline); the inline one
// shares the engine's record syntax memory.
func (t *Transaction) spfChecker(inline bool) *verify.SPFChecker {
	if !inline {
		return t.e.spf
	}
	if t.probeSPF == nil {
		t.probeSPF = t.e.spf.WithResolver(t.probe)
	}
	return t.probeSPF
}

// startSPF checks the MAIL FROM identity and, if configured, the HELO
// identity (RFC 7208 §2.3), whose result the connection's memo may
// already hold.
func (t *Transaction) startSPF() {
	ip := net.IP(t.env.ClientIP.AsSlice())
	timeout := t.e.cfg.Timeouts.SPF
	startCheck(t, &t.spfMail, "spf mfrom", timeout, spfMailCheck{ip: ip})
	if !t.e.cfg.SPF.CheckHelo {
		return
	}
	if r, ok := t.heloMemo.get(t.e, t.env.ClientIP, t.env.Helo); ok {
		t.spfHelo.Set(r)
		return
	}
	if startCheck(t, &t.spfHelo, "spf helo", timeout, spfHeloCheck{ip: ip}) {
		r, _ := t.spfHelo.Wait()
		t.heloMemo.put(t.e, t.env.ClientIP, t.env.Helo, r)
	}
}

// spfMailCheck is the SPF check of the MAIL FROM identity.
type spfMailCheck struct{ ip net.IP }

func (c spfMailCheck) run(ctx context.Context, t *Transaction, inline bool) verify.SPFResult {
	t.e.at("spf")
	return t.spfChecker(inline).CheckMailFrom(ctx, c.ip, t.env.Helo, t.env.MailFrom)
}

// spfHeloCheck is the SPF check of the HELO identity.
type spfHeloCheck struct{ ip net.IP }

func (c spfHeloCheck) run(ctx context.Context, t *Transaction, inline bool) verify.SPFResult {
	t.e.at("spf helo")
	return t.spfChecker(inline).CheckHelo(ctx, c.ip, t.env.Helo)
}

// startDiscovery starts the policy discovery of one Author Domain, once,
// and for at most dmarc.from.max_domains of them (Evaluate handles a
// message with more as too_many_domains).
func (t *Transaction) startDiscovery(domain string) {
	if t.discoveryOf(domain) != nil || len(t.discoveries) >= t.e.local.From.MaxDomains {
		return
	}
	t.discoveries = append(t.discoveries, discovery{domain: domain})
	d := &t.discoveries[len(t.discoveries)-1]
	startCheck(t, &d.check, "dmarc discovery", t.e.cfg.Timeouts.DMARC, discoveryCheck{domain: domain})
}

// discoveryCheck is the DMARC policy discovery of one Author Domain.
type discoveryCheck struct{ domain string }

func (c discoveryCheck) run(ctx context.Context, t *Transaction, inline bool) *policy.Discovery {
	t.e.at("dmarc")
	return policy.Discover(ctx, t.resolver(inline), c.domain, t.e.discovery)
}

// discoveryOf returns the discovery started for domain, or nil.
func (t *Transaction) discoveryOf(domain string) *discovery {
	for i := range t.discoveries {
		if t.discoveries[i].domain == domain {
			return &t.discoveries[i]
		}
	}
	return nil
}
