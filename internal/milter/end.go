package milter

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// End joins the checks started earlier, evaluates DMARC and the local
// policy, and returns what to do with the message. It waits at most
// timeouts.end_of_message; what is unfinished then counts as temperror.
func (t *Transaction) End() *Decision {
	t.e.at("eom")
	switch t.bypass {
	case BypassTrusted:
		return t.bypassDecision()
	case BypassAuthenticated:
		d := t.bypassDecision()
		d.Delete = t.forged() // RFC 8601 §5: delete forged fields even here (https://datatracker.ietf.org/doc/html/rfc8601#section-5)
		return d
	}
	dl := &eomDeadline{parent: t.ctx, at: time.Now().Add(t.e.cfg.Timeouts.EndOfMessage)}
	defer dl.stop()
	in := t.gather(dl)
	t.mu.Lock()
	internalErr := t.internalErr
	t.mu.Unlock()
	if internalErr != nil {
		return t.errorDecision(internalErr)
	}
	v := policy.Evaluate(in)
	return t.decide(in, v)
}

// eomDeadline is the end-of-message deadline. It becomes a context (and a
// timer) only when something has to be waited for: with the answers in the
// cache, SPF and discovery are finished before the end of the message, and
// a message without DKIM signatures has nothing left to verify.
type eomDeadline struct {
	parent context.Context
	at     time.Time
	ctx    context.Context
	cancel context.CancelFunc
}

// context returns the deadline as a context.
func (d *eomDeadline) context() context.Context {
	if d.ctx == nil {
		d.ctx, d.cancel = context.WithDeadline(d.parent, d.at)
	}
	return d.ctx
}

func (d *eomDeadline) stop() {
	if d.cancel != nil {
		d.cancel()
	}
}

// gather waits for SPF, DKIM and discovery and builds the policy input.
func (t *Transaction) gather(dl *eomDeadline) policy.Input {
	from := t.from // parsed at the header when it was the only From field
	if len(t.fromFields) != 1 {
		from = policy.ParseFrom(t.fromFields)
	}
	in := policy.Input{
		SourceIP:    t.env.ClientIP,
		HELO:        t.env.Helo,
		MailFrom:    t.env.MailFrom,
		RcptTo:      t.env.Rcpts,
		From:        from,
		MailingList: t.hasListHeaders(),
		Local:       t.e.local,
	}
	in.SPF = t.waitSPF(dl, &t.spfMail, verify.ScopeMailFrom)
	if t.tracing {
		t.tracef("spf %s: %s (%s) %s", in.SPF.Scope, in.SPF.Result, in.SPF.Sender, in.SPF.Reason)
	}
	if t.spfHelo.made {
		h := t.waitSPF(dl, &t.spfHelo, verify.ScopeHelo)
		t.heloSPF = &h
		if t.tracing {
			t.tracef("spf helo: %s (%s) %s", h.Result, h.Domain, h.Reason)
		}
	}
	in.DKIM = t.finishDKIM(dl)
	for _, d := range in.From.Domains {
		t.startDiscovery(d)
	}
	in.Discoveries = t.waitDiscoveries(dl, in.From.Domains)
	// The Organizational Domains relaxed alignment needs for the SPF and
	// DKIM identifiers (discoveries are in place, so only those are looked
	// up, mostly from the cache discovery warmed). Most messages need none:
	// then there is no timer to set.
	if !policy.Prepared(&in) {
		lctx, cancel := context.WithTimeout(dl.context(), t.e.cfg.Timeouts.DMARC)
		defer cancel()
		policy.Prepare(lctx, t.e.res, &in, policy.Options{Method: t.e.discoveryMethod()})
	}
	return in
}

// waitSPF returns the SPF result, or temperror when the deadline passes
// first (or an internal error makes waiting pointless).
func (t *Transaction) waitSPF(dl *eomDeadline, c *spfCheck, scope verify.Scope) verify.SPFResult {
	switch {
	case !c.made:
		return verify.SPFResult{Result: verify.ResultNone, Scope: scope, Reason: "not checked"}
	case c.done:
		return c.res
	}
	select {
	case r := <-c.ch: // a nil channel (the inline check panicked) is never ready
		return r
	default:
	}
	select {
	case r := <-c.ch:
		return r
	case <-dl.context().Done():
	case <-t.failedChan():
	}
	return verify.SPFResult{Result: verify.ResultTempError, Scope: scope, Reason: "not finished at end of message"}
}

// finishDKIM ends the body and collects one result per signature.
func (t *Transaction) finishDKIM(dl *eomDeadline) []verify.DKIMResult {
	if t.dkim == nil {
		return nil
	}
	if !t.eoh {
		t.EndOfHeaders()
	}
	ctx := t.ctx // without signatures Finish has nothing to wait for
	if t.dkim.Signatures() > 0 {
		ctx = dl.context()
	}
	res, err := t.dkim.Finish(ctx)
	if t.dkimCancel != nil {
		t.dkimCancel()
	}
	if errors.Is(err, verify.ErrInternal) {
		t.setInternalErr(err)
	}
	for _, r := range res {
		if !t.tracing {
			break
		}
		t.tracef("dkim d=%s s=%s a=%s: %s %s", r.Domain, r.Selector, r.Algorithm, r.Result, r.Reason)
	}
	return res
}

// waitDiscoveries collects the policy discovery of each Author Domain; a
// discovery not finished in time is reported as a temporary failure.
func (t *Transaction) waitDiscoveries(dl *eomDeadline, domains []string) map[string]*policy.Discovery {
	out := make(map[string]*policy.Discovery, len(domains))
	for _, d := range domains {
		t.mu.Lock()
		disc := t.discoveryOf(d)
		var res *policy.Discovery
		var ch chan *policy.Discovery
		if disc != nil {
			res, ch = disc.res, disc.ch
		}
		t.mu.Unlock()
		if disc == nil {
			continue // over dmarc.from.max_domains: Evaluate reports too_many_domains
		}
		if res == nil {
			select {
			case res = <-ch: // a nil channel (the inline discovery panicked) is never ready
			default:
			}
		}
		if res == nil {
			select {
			case res = <-ch:
			case <-t.failedChan():
				out[d] = &policy.Discovery{Domain: d, Method: t.e.discoveryMethod(), Err: errTimeout}
				continue
			case <-dl.context().Done():
				out[d] = &policy.Discovery{Domain: d, Method: t.e.discoveryMethod(), Err: errTimeout}
				t.tracef("dmarc discovery for %s: not finished at end of message", d)
				continue
			}
		}
		t.mu.Lock()
		disc.res = res // kept for a second reader
		t.mu.Unlock()
		out[d] = res
		if t.tracing {
			t.traceDiscovery(res)
		}
	}
	return out
}

var errTimeout = fmt.Errorf("milter: not finished at end of message: %w: %w", policy.ErrTimeout, policy.ErrTempFail)

func (t *Transaction) traceDiscovery(d *policy.Discovery) {
	t.tracef("dmarc discovery for %s (%s): queried %s", d.Domain, d.Method, strings.Join(d.Queries, ", "))
	switch {
	case d.Err != nil:
		t.tracef("  failed: %v", d.Err)
	case d.Record == nil:
		t.tracef("  no DMARC record")
	default:
		t.tracef("  record at %s: %s", d.PolicyDomain, d.Record)
		t.tracef("  organizational domain %s", d.OrgDomain)
		if d.ExistErr != nil {
			t.tracef("  existence check (np=) failed: %v", d.ExistErr)
		}
	}
}

// localPolicy turns the configuration into pkg/policy's local policy
// (built once per engine: the configuration does not change under it).
func (e *Engine) localPolicy() policy.LocalPolicy {
	c := e.cfg
	lp := policy.LocalPolicy{
		Mode:          policy.Mode(c.Mode),
		OnReject:      policy.RejectHandling(c.Actions.RejectPolicy),
		OnTempError:   policy.TempErrorHandling(c.Actions.TempError),
		AllowFrom:     c.Allowlist.FromDomains,
		AllowNetworks: prefixes(c.Allowlist.Networks),
		IgnorePct:     c.DMARC.IgnorePct,
		Forwarders: policy.TrustedForwarders{
			Networks:    prefixes(c.DMARC.TrustedForwarders),
			DKIMDomains: c.DMARC.TrustedForwarderDKIMDomains,
		},
		From: policy.FromPolicy{
			MultipleFields:  policy.FromOutcome(c.DMARC.From.MultipleFields),
			MultipleDomains: policy.FromOutcome(c.DMARC.From.MultipleDomains),
			TooManyDomains:  policy.FromOutcome(c.DMARC.From.TooManyDomains),
			NoMailbox:       policy.FromOutcome(c.DMARC.From.NoMailbox),
			Missing:         policy.FromOutcome(c.DMARC.From.Missing),
			Unparseable:     policy.FromOutcome(c.DMARC.From.Unparseable),
			MaxDomains:      c.DMARC.From.MaxDomains,
		},
	}
	return lp
}

func prefixes(ns []config.Network) []netip.Prefix {
	out := make([]netip.Prefix, len(ns))
	for i, n := range ns {
		out[i] = n.Prefix
	}
	return out
}
