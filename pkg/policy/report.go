package policy

import (
	"net/netip"

	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// PolicyPublished is RFC 9990 (https://datatracker.ietf.org/doc/html/rfc9990)'s policy_published: the record as applied,
// with the defaults of unspecified tags filled in.
type PolicyPublished struct {
	Domain          string
	P               Disposition
	SP              Disposition // "" when the record has no sp
	NP              Disposition // "" when the record has no np
	ADKIM, ASPF     AlignMode
	DiscoveryMethod Method
	FO              string
	Testing         bool // t=y
}

// DKIMAuth is RFC 9990's DKIMAuthResultType.
type DKIMAuth struct {
	Domain, Selector string
	Result           verify.Result
	HumanResult      string
}

// SPFAuth is RFC 9990's SPFAuthResultType (the scope is always mfrom).
type SPFAuth struct {
	Domain      string
	Scope       verify.Scope
	Result      verify.Result
	HumanResult string
}

// ReportRow is one message's record in an RFC 9990 aggregate report for one
// policy domain: row, identifiers and auth_results. An aggregate store
// groups equal rows and counts them.
type ReportRow struct {
	PolicyPublished PolicyPublished
	SourceIP        netip.Addr
	// Disposition is ActionDispositionType: none, pass (passed with an
	// enforcing policy), quarantine or reject.
	Disposition string
	// DKIM and SPF are the DMARC-aligned results, "pass" or "fail".
	DKIM, SPF string
	Reasons   []Override
	// Identifiers.
	HeaderFrom, EnvelopeFrom, EnvelopeTo string
	// AuthResults.
	DKIMResults []DKIMAuth
	SPFResult   *SPFAuth
}

// ReportRows returns the aggregate-report rows of the message: one per
// Author Domain for which a DMARC Policy Record applied, and per distinct
// recipient domain (one row with an empty EnvelopeTo when there is none).
// An Author Domain whose failed np= existence test left the applicable
// policy open (temperror, PolicyTag unset) gives no row: its
// policy_evaluated cannot be stated.
func (v Verdict) ReportRows() []ReportRow {
	var rows []ReportRow
	tos := v.EnvelopeTo
	if len(tos) == 0 {
		tos = []string{""}
	}
	for _, d := range v.Domains {
		if d.Record == nil || d.PolicyTag == "" {
			continue
		}
		base := v.reportRow(d)
		for _, to := range tos {
			r := base
			r.EnvelopeTo = to
			rows = append(rows, r)
		}
	}
	return rows
}

func (v Verdict) reportRow(d DomainVerdict) ReportRow {
	rec := d.Record
	r := ReportRow{
		PolicyPublished: PolicyPublished{
			Domain: d.PolicyDomain, P: rec.Policy(), SP: rec.SP, NP: rec.NP,
			ADKIM: rec.DKIMAlignment(), ASPF: rec.SPFAlignment(),
			DiscoveryMethod: d.Method, FO: rec.FailureOptions(), Testing: rec.Testing,
		},
		SourceIP:     v.SourceIP,
		Disposition:  string(d.Disposition),
		DKIM:         passFail(len(d.DKIMAligned) > 0),
		SPF:          passFail(d.SPFAligned),
		Reasons:      d.Overrides,
		HeaderFrom:   d.HeaderFrom,
		EnvelopeFrom: v.EnvelopeFrom,
	}
	if d.Result == ResultPass && d.Requested != DispositionNone {
		r.Disposition = "pass" // RFC 9990 ActionDispositionType: no action, passing DMARC with an enforcing policy
	}
	for _, s := range v.DKIM {
		r.DKIMResults = append(r.DKIMResults, DKIMAuth{Domain: s.Domain, Selector: s.Selector, Result: s.Result, HumanResult: s.Reason})
	}
	if v.SPF.Result != "" && (v.SPF.Scope == verify.ScopeMailFrom || v.SPF.Scope == "" || v.EnvelopeFrom == "") {
		r.SPFResult = &SPFAuth{Domain: v.SPF.Domain, Scope: verify.ScopeMailFrom, Result: v.SPF.Result, HumanResult: v.SPF.Reason}
	}
	return r
}

func passFail(ok bool) string {
	if ok {
		return "pass"
	}
	return "fail"
}
