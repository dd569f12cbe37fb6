package policy

import (
	"strconv"
	"strings"

	"github.com/dmarc-milter/dmarc-milter/pkg/authres"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// IndirectHandling is what evidence of an indirect flow does to a message
// that fails DMARC under p=reject or p=quarantine. The evidence is a trusted
// forwarder (its client network or its DKIM d=), a valid ARC chain whose
// newest sealers are trusted (RFC 8617 §7.2.1), and, under
// RejectUnlessIndirect and for p=reject only, list headers. One setting
// covers all of them, so that an operator decides once what "this came
// through a forwarder" is worth.
type IndirectHandling string

// The indirect handlings.
const (
	// IndirectQuarantine (the default) quarantines instead of rejecting;
	// a p=quarantine message stays quarantined. RFC 9989 §7.4's advice for
	// mail that would be rejected, kept when the evidence is the weakest
	// kind (list headers, which the sender writes).
	IndirectQuarantine IndirectHandling = "quarantine"
	// IndirectDeliver delivers the message (disposition none) under
	// p=reject and p=quarantine alike. List headers are evidence too under
	// RejectUnlessIndirect: with this handling a forged List-Id delivers a
	// forged p=reject message (set OnReject to RejectReject or
	// RejectQuarantine to leave list headers out).
	IndirectDeliver IndirectHandling = "deliver"
)

// Valid reports whether h is a known indirect handling.
func (h IndirectHandling) Valid() error { return oneOf(h, IndirectQuarantine, IndirectDeliver) }

// UnmarshalText accepts the known indirect handlings only.
func (h *IndirectHandling) UnmarshalText(b []byte) error { return unmarshalEnum(h, b) }

// MarshalText writes the indirect handling.
func (h IndirectHandling) MarshalText() ([]byte, error) { return []byte(h), nil }

// indirectEvidence returns the override for the first evidence of an
// indirect flow the message shows for Author Domain disc.Domain, whose
// applicable disposition is disp: a trusted forwarder, a trusted ARC
// sealer, or list headers (only under RejectUnlessIndirect, only for
// p=reject).
func (l *LocalPolicy) indirectEvidence(in *Input, disc *Discovery, disp Disposition) (Override, bool) {
	if o, ok := l.trustedForwarder(in); ok {
		return o, true
	}
	if o, ok := l.trustedARC(in, disc); ok {
		return o, true
	}
	if disp == DispositionReject && l.OnReject == RejectUnlessIndirect && in.MailingList {
		// RFC 9989 §7.4: rejecting mail relayed by a mailing list harms the list
		return Override{Reason: ReasonListHeaders, Comment: "list headers present"}, true
	}
	return Override{}, false
}

// trustedARC is the ARC evidence for the Author Domain of disc (RFC 8617
// §7.2.1: "As a matter of local policy, a DMARC processor MAY choose to
// accept the authentication assessments provided by an Authenticated
// Received Chain"). It holds when the chain passed, its newest sealers form
// an unbroken run of trusted sealers, and the ARC-Authentication-Results of
// the oldest set of that run, written by a trusted authserv-id, shows
// dmarc=pass for this Author Domain or, when it states no DMARC result for
// it, an SPF or DKIM pass aligned with it. An assessment written by an
// untrusted sealer is never read (RFC 8617 §9.4: treat every sealer with
// suspicion).
// https://datatracker.ietf.org/doc/html/rfc8617#section-7.2.1
func (l *LocalPolicy) trustedARC(in *Input, disc *Discovery) (Override, bool) {
	set, run := l.believedARCSet(in.ARC)
	if set == nil {
		return Override{}, false
	}
	what, ok := aarVouches(set.Results, disc, in.OrgDomains)
	if !ok {
		return Override{}, false
	}
	return Override{Reason: ReasonTrustedARCSealer, Comment: arcComment(in.ARC, set, run, what)}, true
}

// believedARCSet returns the ARC set whose assessment may be believed and
// the number of sets in the trusted run it is the oldest of; nil when there
// is none (see TrustedARCSet).
func (l *LocalPolicy) believedARCSet(a *verify.ARCResult) (*verify.ARCSet, int) {
	set, run, _ := l.arcRun(a)
	return set, run
}

// TrustedARCSet returns the ARC set of a whose assessment the local policy
// reads (the oldest of the unbroken run of trusted sealers at the top of
// the chain), or nil and why there is none, for traces; a is nil for a
// message without ARC fields. l must have its defaults (WithDefaults).
func (l LocalPolicy) TrustedARCSet(a *verify.ARCResult) (*verify.ARCSet, string) {
	set, _, why := l.arcRun(a)
	return set, why
}

// arcRun finds the believed set: none when no trusted sealer is
// configured, the chain did not pass (RFC 8617 §5.2: a failed chain is
// treated as no chain), the newest sealer is not trusted, or the AAR does
// not parse or carries an authserv-id outside the trusted sealers'
// domains.
func (l *LocalPolicy) arcRun(a *verify.ARCResult) (*verify.ARCSet, int, string) {
	switch {
	case len(l.Forwarders.ARCSealers) == 0:
		return nil, 0, "no trusted ARC sealer configured"
	case a == nil:
		return nil, 0, "the message has no ARC chain"
	case a.CV != verify.ChainPass || len(a.Sets) == 0:
		return nil, 0, "the chain did not pass"
	}
	k := len(a.Sets)
	for k > 0 && l.trustedSealer(a.Sets[k-1].SealDomain) {
		k--
	}
	if k == len(a.Sets) {
		// Nothing below an untrusted sealer can be believed.
		return nil, 0, "the newest sealer, " + a.Sets[k-1].SealDomain + ", is not trusted"
	}
	set := &a.Sets[k] // the oldest set of the trusted run
	switch {
	case set.AARErr != nil:
		return nil, 0, "the assessment of i=" + strconv.Itoa(set.Instance) + " does not parse"
	case !l.trustedAuthserv(set.AuthservID):
		return nil, 0, "the assessment of i=" + strconv.Itoa(set.Instance) + " has the untrusted authserv-id " + set.AuthservID
	}
	return set, len(a.Sets) - k, ""
}

// trustedSealer reports whether d (an ARC-Seal d=) is exactly one of the
// trusted sealers.
func (l *LocalPolicy) trustedSealer(d string) bool {
	d = normalizeOrKeep(d)
	for _, s := range l.Forwarders.ARCSealers {
		if d == s {
			return true
		}
	}
	return false
}

// trustedAuthserv reports whether an AAR's authserv-id is a trusted
// sealer's domain or a name below one: the assessment must come from the
// sealer's own verifier, not from a field it passed on.
func (l *LocalPolicy) trustedAuthserv(id string) bool {
	if id == "" {
		return false
	}
	id = normalizeOrKeep(id)
	for _, s := range l.Forwarders.ARCSealers {
		if isSubdomainOrSelf(id, s) {
			return true
		}
	}
	return false
}

// aarVouches reads one ARC-Authentication-Results for the Author Domain of
// disc: a dmarc result whose header.from is that domain decides (pass or
// not); without one, an SPF pass (smtp.mailfrom) or a DKIM pass (header.d,
// else the domain of header.i) aligned with it under the record's
// alignment modes vouches. what names the result that vouched.
func aarVouches(results []authres.Result, disc *Discovery, orgs map[string]OrgResult) (what string, ok bool) {
	author := disc.Domain
	for _, r := range results {
		if r.Method != "dmarc" {
			continue
		}
		if hf := r.Props["header.from"]; hf != "" && normalizeOrKeep(hf) == author {
			// The sealer evaluated DMARC for this Author Domain: its
			// verdict stands, whatever SPF and DKIM said there.
			return "dmarc=" + r.Value + " header.from=" + author, r.Value == "pass"
		}
	}
	if disc.Record == nil {
		return "", false
	}
	for _, r := range results {
		if r.Value != "pass" {
			continue
		}
		switch r.Method {
		case "spf":
			dom := domainPart(r.Props["smtp.mailfrom"])
			if dom != "" && alignedQuiet(disc, dom, disc.Record.SPFAlignment(), orgs) {
				return "spf=pass smtp.mailfrom domain " + dom, true
			}
		case "dkim":
			dom := r.Props["header.d"]
			if dom == "" {
				dom = domainPart(r.Props["header.i"])
			}
			if dom != "" && alignedQuiet(disc, normalizeOrKeep(dom), disc.Record.DKIMAlignment(), orgs) {
				return "dkim=pass header.d=" + normalizeOrKeep(dom), true
			}
		}
	}
	return "", false
}

// alignedQuiet is aligned with an error counting as not aligned: an
// identifier of the ARC assessment whose Organizational Domain could not
// be found is no evidence (it never makes the DMARC result temperror).
func alignedQuiet(disc *Discovery, id string, mode AlignMode, orgs map[string]OrgResult) bool {
	a, err := aligned(disc, id, mode, orgs)
	return err == nil && a
}

// domainPart is the normalized domain of an address, or of a bare domain.
func domainPart(s string) string {
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return ""
	}
	return normalizeOrKeep(s)
}

// arcComment is the override's comment: the sealer whose assessment was
// believed and what it said, then the chain data of RFC 8617 §7.2.2 (the
// chain status, and the domain and selector of each seal of the trusted
// run, newest first).
func arcComment(a *verify.ARCResult, set *verify.ARCSet, run int, what string) string {
	var b strings.Builder
	b.WriteString("trusted ARC sealer ")
	b.WriteString(set.SealDomain)
	b.WriteString(" (i=")
	b.WriteString(strconv.Itoa(set.Instance))
	b.WriteString(") saw ")
	b.WriteString(what)
	b.WriteString("; arc=")
	b.WriteString(string(a.CV))
	for i := len(a.Sets) - 1; i >= len(a.Sets)-run; i-- {
		s := &a.Sets[i]
		n := strconv.Itoa(s.Instance)
		b.WriteString(" as[" + n + "].d=" + s.SealDomain + " as[" + n + "].s=" + s.SealSelector)
	}
	return b.String()
}

// arcLookupsNeeded lists the SPF and DKIM identifiers of the believed ARC
// assessment whose Organizational Domains relaxed alignment with disc's
// Author Domain needs (see orgLookupsNeeded): only when trusted sealers are
// configured and the chain passed.
func arcLookupsNeeded(in *Input, l *LocalPolicy, disc *Discovery, need func(id string, mode AlignMode)) {
	set, _ := l.believedARCSet(in.ARC)
	if set == nil {
		return
	}
	for _, r := range set.Results {
		if r.Value != "pass" {
			continue
		}
		switch r.Method {
		case "spf":
			if dom := domainPart(r.Props["smtp.mailfrom"]); dom != "" {
				need(dom, disc.Record.SPFAlignment())
			}
		case "dkim":
			dom := r.Props["header.d"]
			if dom == "" {
				dom = r.Props["header.i"]
			}
			if dom = domainPart(dom); dom != "" {
				need(dom, disc.Record.DKIMAlignment())
			}
		}
	}
}
