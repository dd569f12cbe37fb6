package milter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/authres"
	"github.com/dmarc-milter/dmarc-milter/internal/config"
	"github.com/dmarc-milter/dmarc-milter/pkg/pending"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// End returns what to do with the message: the on_error decision after a
// failure, the bypass decision, or the DMARC verdict turned into actions.
// It waits at most timeouts.end_of_message for the checks; what is
// unfinished then counts as temperror. A second call returns the first
// decision again.
func (t *Transaction) End() *Decision {
	if t.decided != nil {
		return t.finish(t.decided)
	}
	if t.stopped {
		return t.finish(t.errorDecision(t.internalErr()))
	}
	t.e.at("eom")
	switch t.bypass {
	case BypassTrusted:
		return t.finish(t.bypassDecision())
	case BypassAuthenticated:
		d := t.bypassDecision()
		d.Delete = t.hyg.forged() // RFC 8601 §5: forged fields go even here
		return t.finish(d)
	}
	dl := &eomDeadline{parent: t.ctx, at: time.Now().Add(t.e.cfg.Timeouts.EndOfMessage)}
	defer dl.stop()
	in, heloSPF := t.gather(dl)
	if err := t.internalErr(); err != nil {
		return t.finish(t.errorDecision(err))
	}
	return t.finish(t.decide(policy.Evaluate(in), heloSPF))
}

// finish stamps d with what the session logs and keeps it as the
// message's decision.
func (t *Transaction) finish(d *Decision) *Decision {
	d.QueueID, d.Duration = t.queueID, time.Since(t.started)
	d.Trace = t.traceCopy()
	t.decided = d
	return d
}

// gather waits for SPF, DKIM and discovery and builds the policy input and
// the HELO result (nil when not checked).
func (t *Transaction) gather(dl *eomDeadline) (policy.Input, *verify.SPFResult) {
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
		MailingList: t.listHeader,
		Local:       t.e.local,
	}
	in.SPF = t.waitSPF(dl, &t.spfMail, verify.ScopeMailFrom)
	if t.tracing {
		t.tracef("spf %s: %s (%s) %s", in.SPF.Scope, in.SPF.Result, in.SPF.Sender, in.SPF.Reason)
	}
	var heloSPF *verify.SPFResult
	if t.spfHelo.Started() {
		h := t.waitSPF(dl, &t.spfHelo, verify.ScopeHelo)
		heloSPF = &h
		if t.tracing {
			t.tracef("spf helo: %s (%s) %s", h.Result, h.Domain, h.Reason)
		}
	}
	in.DKIM = t.finishDKIM(dl)
	in.ARC = t.finishARC(dl)
	for _, d := range in.From.Domains {
		t.startDiscovery(d)
	}
	in.Discoveries = t.waitDiscoveries(dl, in.From.Domains)
	// Relaxed alignment may need the Organizational Domains of the SPF and
	// DKIM identifiers; most messages need none, and then set no timer.
	if !policy.Prepared(&in) {
		lctx, cancel := context.WithTimeout(dl.context(), t.e.cfg.Timeouts.DMARC)
		defer cancel()
		policy.Prepare(lctx, t.e.res, &in, t.e.discovery)
	}
	return in, heloSPF
}

// waitSPF returns an SPF result, or temperror when the deadline passes (or
// an internal error makes waiting pointless) first.
func (t *Transaction) waitSPF(dl *eomDeadline, c *pending.Check[verify.SPFResult], scope verify.Scope) verify.SPFResult {
	if r, ok := c.Wait(dl.done, t.failedChan); ok {
		return r
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
		t.setErr(err)
	}
	if t.tracing {
		for _, r := range res {
			t.tracef("dkim d=%s s=%s a=%s: %s %s", r.Domain, r.Selector, r.Algorithm, r.Result, r.Reason)
		}
	}
	return res
}

// errTimeout is the discovery error of an Author Domain whose discovery did
// not finish by the end of the message.
var errTimeout = fmt.Errorf("milter: not finished at end of message: %w: %w", policy.ErrTimeout, policy.ErrTempFail)

// waitDiscoveries collects the policy discovery of each Author Domain; one
// not finished in time is a temporary failure.
func (t *Transaction) waitDiscoveries(dl *eomDeadline, domains []string) map[string]*policy.Discovery {
	out := make(map[string]*policy.Discovery, len(domains))
	for _, d := range domains {
		disc := t.discoveryOf(d)
		if disc == nil {
			continue // over dmarc.from.max_domains: Evaluate reports too_many_domains
		}
		res, ok := disc.check.Wait(dl.done, t.failedChan)
		if !ok {
			res = &policy.Discovery{Domain: d, Method: t.e.discovery.DiscoveryMethod(), Err: errTimeout}
		}
		out[d] = res
		if t.tracing {
			t.traceDiscovery(res)
		}
	}
	return out
}

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

// decide turns the verdict into actions, replies and header changes.
func (t *Transaction) decide(v policy.Verdict, heloSPF *verify.SPFResult) *Decision {
	c := t.e.cfg
	d := &Decision{
		Action:       v.Action,
		AuthservID:   t.e.AuthservID(t.env.MTAHost),
		Env:          t.env,
		Verdict:      &v,
		HeloSPF:      heloSPF,
		Reason:       verdictReason(&v),
		TempErrCause: v.TempErrorCause(),
	}
	if v.Action != v.EnforceAction {
		d.Would = v.EnforceAction
	}
	switch {
	case v.AllowNetwork.IsValid():
		d.Bypass = BypassAllowNetwork
	case v.HasReason(policy.ReasonAllowFrom):
		d.Bypass = BypassAllowFrom
	}
	domain := decisiveDomain(&v)
	switch d.Action {
	case policy.ActionReject:
		d.Reply = expandReply(c.Actions.RejectReply, domain)
	case policy.ActionTempFail:
		d.Reply = expandReply(c.Actions.TempFailReply, domain)
	case policy.ActionQuarantine:
		t.quarantine(d, domain)
	}
	d.AuthResults = authres.Format(d.AuthservID, authResults(d))
	if d.Action != policy.ActionReject && d.Action != policy.ActionTempFail {
		// Header changes only matter for mail that is delivered.
		d.Delete = t.hyg.forged()
		d.Insert = []Field{{Name: authres.FieldName, Value: d.AuthResults}}
	}
	if t.tracing {
		t.traceVerdict(&v, d.Action)
	}
	return d
}

func (t *Transaction) traceVerdict(v *policy.Verdict, a policy.Action) {
	t.tracef("result: dmarc=%s action=%s", v.Result, a)
	for _, dv := range v.Domains {
		t.tracef("  %s: %s, policy %s=%s, disposition %s; aligned spf=%v (%s) dkim=%v",
			dv.HeaderFrom, dv.Result, dv.PolicyTag, dv.Requested, dv.Disposition, dv.SPFAligned, dv.SPFDomain, dv.DKIMAligned)
	}
}

// quarantine applies the configured quarantine method.
func (t *Transaction) quarantine(d *Decision, domain string) {
	a := t.e.cfg.Actions
	if a.QuarantineMethod == config.QuarantineHold || a.QuarantineMethod == config.QuarantineBoth {
		d.Hold = true
		d.HoldReason = "DMARC quarantine for " + sanitizeText(domain)
	}
	if a.QuarantineMethod != config.QuarantineHold && a.QuarantineHeader != "" {
		d.Add = append(d.Add, Field{Name: a.QuarantineHeader, Value: " yes"})
	}
}

// bypassDecision is the decision for a message that was not evaluated.
func (t *Transaction) bypassDecision() *Decision {
	t.tracef("bypass: %s", t.bypass)
	return &Decision{
		Action:     policy.ActionAccept,
		Bypass:     t.bypass,
		AuthservID: t.e.AuthservID(t.env.MTAHost),
		Env:        t.env,
		Reason:     "bypass: " + string(t.bypass),
	}
}

// errorDecision applies on_error after an internal error. An accepted
// message still loses its forged Authentication-Results.
func (t *Transaction) errorDecision(err error) *Decision {
	d := &Decision{
		Action:     policy.ActionTempFail,
		AuthservID: t.e.AuthservID(t.env.MTAHost),
		Env:        t.env,
		Err:        err,
		Reason:     "internal error",
	}
	if t.e.cfg.OnError == config.ErrorAccept {
		d.Action = policy.ActionAccept
		d.Delete = t.hyg.forged()
	} else {
		d.Reply = escapeReply(t.e.cfg.Actions.ErrorReply)
	}
	t.tracef("internal error: %v", err)
	return d
}

// EndAfterPanic is the on_error decision for a message whose End panicked
// with v.
func (t *Transaction) EndAfterPanic(v any) *Decision {
	err := fmt.Errorf("panic at eom: %v", v)
	t.setErr(err)
	return t.finish(t.errorDecision(err))
}
