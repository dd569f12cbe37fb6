package milter

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

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
	ctx, cancel := context.WithTimeout(t.ctx, t.e.cfg.Timeouts.EndOfMessage)
	defer cancel()
	in := t.gather(ctx)
	t.mu.Lock()
	internalErr := t.internalErr
	t.mu.Unlock()
	if internalErr != nil {
		return t.errorDecision(internalErr)
	}
	v := policy.Evaluate(in)
	return t.decide(in, v)
}

// gather waits for SPF, DKIM and discovery and builds the policy input.
func (t *Transaction) gather(ctx context.Context) policy.Input {
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
	in.SPF = t.waitSPF(ctx, t.spfMail, verify.ScopeMailFrom)
	if t.tracing {
		t.tracef("spf %s: %s (%s) %s", in.SPF.Scope, in.SPF.Result, in.SPF.Sender, in.SPF.Reason)
	}
	if t.spfHelo != nil {
		h := t.waitSPF(ctx, t.spfHelo, verify.ScopeHelo)
		t.heloSPF = &h
		if t.tracing {
			t.tracef("spf helo: %s (%s) %s", h.Result, h.Domain, h.Reason)
		}
	}
	in.DKIM = t.finishDKIM(ctx)
	for _, d := range in.From.Domains {
		t.startDiscovery(d)
	}
	in.Discoveries = t.waitDiscoveries(ctx, in.From.Domains)
	// The Organizational Domains relaxed alignment needs for the SPF and
	// DKIM identifiers (discoveries are in place, so only those are looked
	// up, mostly from the cache discovery warmed). Most messages need none:
	// then there is no timer to set.
	if !policy.Prepared(&in) {
		lctx, cancel := context.WithTimeout(ctx, t.e.cfg.Timeouts.DMARC)
		defer cancel()
		policy.Prepare(lctx, t.e.res, &in, policy.Options{Method: t.e.discoveryMethod()})
	}
	return in
}

// waitSPF returns the SPF result, or temperror when ctx ends first (or an
// internal error makes waiting pointless).
func (t *Transaction) waitSPF(ctx context.Context, ch chan verify.SPFResult, scope verify.Scope) verify.SPFResult {
	if ch == nil {
		return verify.SPFResult{Result: verify.ResultNone, Scope: scope, Reason: "not checked"}
	}
	select {
	case r := <-ch:
		return r
	case <-ctx.Done():
	case <-t.failed:
	}
	return verify.SPFResult{Result: verify.ResultTempError, Scope: scope, Reason: "not finished at end of message"}
}

// finishDKIM ends the body and collects one result per signature.
func (t *Transaction) finishDKIM(ctx context.Context) []verify.DKIMResult {
	if t.dkim == nil {
		return nil
	}
	if !t.eoh {
		t.EndOfHeaders()
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
func (t *Transaction) waitDiscoveries(ctx context.Context, domains []string) map[string]*policy.Discovery {
	out := map[string]*policy.Discovery{}
	for _, d := range domains {
		t.mu.Lock()
		ch := t.discoveries[d]
		t.mu.Unlock()
		if ch == nil {
			continue // over dmarc.from.max_domains: Evaluate reports too_many_domains
		}
		select {
		case disc := <-ch:
			ch <- disc // keep it for a second reader
			out[d] = disc
			if t.tracing {
				t.traceDiscovery(disc)
			}
		case <-t.failed:
			out[d] = &policy.Discovery{Domain: d, Method: t.e.discoveryMethod(), Err: errTimeout}
		case <-ctx.Done():
			out[d] = &policy.Discovery{Domain: d, Method: t.e.discoveryMethod(), Err: errTimeout}
			t.tracef("dmarc discovery for %s: not finished at end of message", d)
		}
	}
	return out
}

var errTimeout = fmt.Errorf("milter: not finished at end of message: %w", policy.ErrTempFail)

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
		Mode:        policy.Mode(c.Mode),
		OnReject:    policy.RejectHandling(c.Actions.RejectPolicy),
		OnTempError: policy.TempErrorHandling(c.Actions.TempError),
		AllowFrom:   c.Allowlist.FromDomains,
		IgnorePct:   c.DMARC.IgnorePct,
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
