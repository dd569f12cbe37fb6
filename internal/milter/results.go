package milter

import (
	"strings"

	"github.com/dmarc-milter/dmarc-milter/internal/authres"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// authResults lists the resinfos of our Authentication-Results field (RFC
// 8601 §2.7): spf for MAIL FROM and for HELO, each dkim signature, arc,
// and dmarc per Author Domain.
func authResults(d *Decision) []authres.Result {
	v := d.Verdict
	out := make([]authres.Result, 0, 4+len(v.DKIM)+len(v.Domains))
	out = append(out, spfResult(v.SPF))
	if d.HeloSPF != nil {
		out = append(out, spfResult(*d.HeloSPF))
	}
	if len(v.DKIM) == 0 {
		out = append(out, authres.Result{Method: "dkim", Value: "none"})
	}
	for _, s := range v.DKIM {
		out = append(out, dkimResult(s))
	}
	out = append(out, arcResult(d))
	return appendDMARCResults(out, d)
}

// spfResult is RFC 8601 §2.7.2: smtp.mailfrom or smtp.helo. The identity
// is the one checked (postmaster@HELO for a null reverse-path).
func spfResult(s verify.SPFResult) authres.Result {
	r := authres.Result{Method: "spf", Value: string(s.Result)}
	if r.Value == "" {
		r.Value = string(verify.ResultNone)
	}
	if s.Scope == verify.ScopeHelo {
		r.Params = []authres.Param{{Name: "smtp.helo", Value: s.Domain}}
		return r
	}
	r.Params = []authres.Param{{Name: "smtp.mailfrom", Value: mailfromIdentity(s)}}
	return r
}

// mailfromIdentity is the checked address when its local part is a plain
// dot-atom, else just the domain (RFC 8601 §2.7.2 allows either): a hostile
// local part must not need quoting in our header.
func mailfromIdentity(s verify.SPFResult) string {
	local, dom, ok := strings.Cut(s.Sender, "@")
	if !ok || dom == "" {
		return s.Domain
	}
	for _, r := range local {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", r)) {
			return dom
		}
	}
	return s.Sender
}

// dkimResult is RFC 8601 §2.7.1 with header.a, header.s and the header.b
// prefix of RFC 6008 §4.
func dkimResult(s verify.DKIMResult) authres.Result {
	r := authres.Result{Method: "dkim", Value: string(s.Result), Params: []authres.Param{
		{Name: "header.d", Value: s.Domain},
		{Name: "header.s", Value: s.Selector},
		{Name: "header.a", Value: s.Algorithm},
		{Name: "header.b", Value: s.BPrefix},
		{Name: "header.i", Value: s.Identifier}, // left out when empty
	}}
	if s.Result != verify.ResultPass {
		r.Reason = s.Reason
	}
	return r
}

// appendDMARCResults appends one dmarc resinfo per Author Domain
// (header.from, RFC 7489 §11.2; policy.dmarc, the disposition applied, from
// RFC 9989's registry update), with the published and applied policy in a
// comment.
func appendDMARCResults(out []authres.Result, d *Decision) []authres.Result {
	v := d.Verdict
	if len(v.Domains) == 0 {
		r := authres.Result{Method: "dmarc", Value: string(v.Result)}
		if v.FromProblem != policy.FromOK {
			r.Reason = "From: " + string(v.FromProblem)
		}
		return append(out, r)
	}
	for _, dv := range v.Domains {
		r := authres.Result{Method: "dmarc", Value: string(dv.Result), Params: []authres.Param{{Name: "header.from", Value: dv.HeaderFrom}}}
		if dv.Requested != "" {
			applied := appliedDisposition(dv)
			r.Params = append(r.Params, authres.Param{Name: "policy.dmarc", Value: string(applied)})
			r.Comment = "p=" + string(dv.Requested) + " dis=" + string(applied)
		}
		r.Reason = domainReason(d, dv)
		out = append(out, r)
	}
	return out
}

// appliedDisposition is the disposition actually applied to the message
// (the verdict's: none when nothing was enforced).
func appliedDisposition(dv policy.DomainVerdict) policy.Disposition {
	if dv.Disposition == policy.DispositionUnset {
		return policy.DispositionNone
	}
	return dv.Disposition
}

func domainReason(d *Decision, dv policy.DomainVerdict) string {
	var parts []string
	for _, o := range dv.Overrides {
		parts = append(parts, string(o.Type()))
	}
	if d.Would != "" {
		parts = append(parts, "would "+string(d.Would))
	}
	return strings.Join(parts, ", ")
}
