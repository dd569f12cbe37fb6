package policy

import (
	"net/netip"

	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// PolicyPublished is RFC 9990's policy_published (RFC 9990 §3.1.1.5): the
// record as applied, with the defaults of unspecified tags filled in.
type PolicyPublished struct {
	Domain          string
	P               Disposition
	SP              Disposition // DispositionUnset when the record has no sp
	NP              Disposition // DispositionUnset when the record has no np
	ADKIM, ASPF     AlignMode
	DiscoveryMethod Method
	FO              string
	Testing         bool // t=y
}

// ReportDisposition is RFC 9990's ActionDispositionType: the disposition
// applied to the message, in the report's vocabulary.
type ReportDisposition string

// The report dispositions (RFC 9990 §3.1.1.9).
const (
	ReportNone       ReportDisposition = "none"
	ReportPass       ReportDisposition = "pass" // no action: DMARC passed under an enforcing policy
	ReportQuarantine ReportDisposition = "quarantine"
	ReportReject     ReportDisposition = "reject"
)

// AlignedResult is RFC 9990's DMARCResultType: whether an authentication
// mechanism produced an aligned pass.
type AlignedResult string

// The aligned results.
const (
	AlignedPass AlignedResult = "pass"
	AlignedFail AlignedResult = "fail"
)

// DKIMAuth is RFC 9990's DKIMAuthResultType: one DKIM signature tried.
type DKIMAuth struct {
	Domain, Selector string
	Result           verify.Result
	HumanResult      string
}

// SPFAuth is RFC 9990's SPFAuthResultType (the scope is always mfrom: for
// the null reverse-path the domain is the HELO name, RFC 9989 §3.2.4).
type SPFAuth struct {
	Domain      string
	Scope       verify.Scope
	Result      verify.Result
	HumanResult string
}

// ReportRow is one message's record in an RFC 9990 aggregate report for one
// policy domain: row, identifiers and auth_results (RFC 9990 §3.1.1.7). An
// aggregate store groups equal rows and counts them.
type ReportRow struct {
	PolicyPublished PolicyPublished
	SourceIP        netip.Addr
	// Disposition is the disposition actually applied (policy_evaluated).
	Disposition ReportDisposition
	// DKIM and SPF are the DMARC-aligned results.
	DKIM, SPF AlignedResult
	// Reasons say why Disposition differs from the policy requested; the
	// RFC type of each is Override.Type().
	Reasons []Override
	// Identifiers: EnvelopeFrom is "" for the null reverse-path and
	// EnvelopeTo "" when there is no recipient.
	HeaderFrom, EnvelopeFrom, EnvelopeTo string
	// DKIMResults are every signature tried; SPFResult is nil when SPF was
	// not checked for the MAIL FROM identity.
	DKIMResults []DKIMAuth
	SPFResult   *SPFAuth
}

// ReportRows returns the aggregate-report rows of the message: one per
// Author Domain for which a DMARC Policy Record applied, and per distinct
// recipient domain (one row with an empty EnvelopeTo when there is none).
// A message answered with a tempfail gives no row (it will come back), nor
// does an Author Domain whose failed np= existence test left the
// applicable policy open (temperror, PolicyTag unset): its
// policy_evaluated cannot be stated.
func (v Verdict) ReportRows() []ReportRow {
	if v.Action == ActionTempFail {
		return nil
	}
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
		Disposition:  reportDisposition(d),
		DKIM:         alignedResult(len(d.DKIMAligned) > 0),
		SPF:          alignedResult(d.SPFAligned),
		Reasons:      d.Overrides,
		HeaderFrom:   d.HeaderFrom,
		EnvelopeFrom: v.EnvelopeFrom,
	}
	for _, s := range v.DKIM {
		r.DKIMResults = append(r.DKIMResults, DKIMAuth{Domain: s.Domain, Selector: s.Selector, Result: s.Result, HumanResult: s.Reason})
	}
	if v.SPF.Result != "" && (v.SPF.Scope == verify.ScopeMailFrom || v.SPF.Scope == "" || v.EnvelopeFrom == "") {
		r.SPFResult = &SPFAuth{Domain: v.SPF.Domain, Scope: verify.ScopeMailFrom, Result: v.SPF.Result, HumanResult: v.SPF.Reason}
	}
	return r
}

// reportDisposition is the applied disposition in RFC 9990's terms: pass
// for a message that passed under an enforcing policy and was not acted on.
func reportDisposition(d DomainVerdict) ReportDisposition {
	switch d.Disposition {
	case DispositionReject:
		return ReportReject
	case DispositionQuarantine:
		return ReportQuarantine
	}
	if d.Result == ResultPass && d.Requested != DispositionNone {
		return ReportPass // RFC 9990 §3.1.1.9: no action, passing DMARC with an enforcing policy
	}
	return ReportNone
}

func alignedResult(ok bool) AlignedResult {
	if ok {
		return AlignedPass
	}
	return AlignedFail
}
