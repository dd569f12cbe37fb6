package health

import (
	"context"
	"fmt"

	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// SuggestNoMail is the SPF record for a name that sends no mail.
const SuggestNoMail = "v=spf1 -all"

// SubdomainResult is the check of one name under the domain: its own SPF
// record (SPF is not inherited: RFC 7208 §4.4,
// https://datatracker.ietf.org/doc/html/rfc7208#section-4.4) and the DMARC policy that covers it.
type SubdomainResult struct {
	Verdict  Verdict   `json:"verdict"`
	Line     string    `json:"line"`
	Findings []Finding `json:"findings"`
	Name     string    `json:"name"`
	// Exists is false when the name does not exist (NXDOMAIN).
	Exists bool `json:"exists"`
	// SPF is the name's own SPF record; SPFRecords counts them.
	SPF        string `json:"spf,omitempty"`
	SPFRecords int    `json:"spf_records"`
	// SPFLookups is the number of DNS-querying terms of the name's own SPF
	// tree (when it has one well-formed record); its SPF findings are
	// among Findings.
	SPFLookups int `json:"spf_lookups"`
	// Suggest is the SPF record to publish if the name sends no mail.
	Suggest string `json:"suggest,omitempty"`
	// DMARCTag and DMARCPolicy say which tag of which record covers mail
	// from the name ("p" of its own record, "sp", or "np" when it does
	// not exist); empty when no DMARC record applies.
	DMARCPolicyDomain string             `json:"dmarc_policy_domain,omitempty"`
	DMARCTag          policy.Tag         `json:"dmarc_tag,omitempty"`
	DMARCPolicy       policy.Disposition `json:"dmarc_policy,omitempty"`
}

// checkSubdomain checks one name.
func checkSubdomain(ctx context.Context, r Resolver, name string, method policy.Method) SubdomainResult {
	f := newFindings()
	res := SubdomainResult{Name: name, Exists: true}
	if !queryable(name) {
		f.add(CodeSubdomainTempError, Error, "", name, "not a valid domain name")
		res.Verdict, res.Findings, res.Line = f.verdict, f.list, "invalid name"
		return res
	}
	txts, err := r.LookupTXT(ctx, fqdn(name))
	switch classify(err) {
	case dnsFailed:
		f.add(CodeSubdomainTempError, Error, "", name, "the TXT lookup failed: %v", err)
		res.Verdict, res.Findings, res.Line = f.verdict, f.list, "DNS failure"
		return res
	case dnsNotFound:
		res.Exists = false
	}
	for _, t := range txts {
		if verify.IsSPFRecord(t) {
			res.SPFRecords++
			res.SPF = t
		}
	}
	subdomainDMARC(ctx, r, &res, method, f)
	if judgeSubdomainSPF(&res, f) {
		tree := checkSPF(ctx, r, name)
		res.SPFLookups = tree.Lookups
		for _, x := range tree.Findings {
			f.add(x.Code, x.Severity, x.Rule, x.Name, "%s", x.Message)
		}
	}
	res.Verdict, res.Findings = f.verdict, f.list
	res.Line = subdomainLine(res)
	return res
}

// subdomainDMARC finds the DMARC policy that covers the name.
func subdomainDMARC(ctx context.Context, r Resolver, res *SubdomainResult, method policy.Method, f *findings) {
	d := policy.Discover(ctx, r, res.Name, policy.Options{Method: method})
	if d.Err != nil {
		f.add(CodeSubdomainTempError, Error, "", res.Name, "DMARC policy discovery did not complete: %v", d.Err)
		return
	}
	if d.Record == nil {
		return
	}
	res.DMARCPolicyDomain = d.PolicyDomain
	switch {
	case d.PolicyDomain == res.Name:
		res.DMARCTag, res.DMARCPolicy = policy.TagP, d.Record.Policy()
	case !res.Exists:
		// RFC 9989 §4.10.1: np (if any) applies when the Author Domain does not exist
		res.DMARCTag, res.DMARCPolicy = policy.TagNP, d.Record.NonExistentPolicy()
	default:
		// RFC 9989 §4.10.1: sp (if any) applies when the Author Domain exists
		res.DMARCTag, res.DMARCPolicy = policy.TagSP, d.Record.SubdomainPolicy()
	}
	f.add(CodeSubdomainDMARC, OK, "RFC 9989 §4.10.1", res.Name, "covered by %s=%s of the record at _dmarc.%s", res.DMARCTag, res.DMARCPolicy, d.PolicyDomain)
}

// judgeSubdomainSPF judges the name's own SPF record; it reports whether
// the name has one well-formed record, whose tree is then checked.
func judgeSubdomainSPF(res *SubdomainResult, f *findings) bool {
	switch {
	case !res.Exists:
		// RFC 9989 §3.2.13: a name that gets NXDOMAIN does not exist; np covers it
		f.add(CodeSubdomainNonExistent, OK, "RFC 9989 §3.2.13", res.Name, "the name does not exist; mail using it is covered by DMARC %s", coverage(res))
	case res.SPFRecords == 0:
		res.Suggest = SuggestNoMail
		// RFC 7208 §4.5: check_host() looks up the exact name (RFC 7208 §4.4) and gives none when it holds no SPF record: the parent's record is not inherited
		f.add(CodeSubdomainNoSPF, Warn, "RFC 7208 §4.5", res.Name,
			"no SPF record of its own: SPF does not fall back to the parent domain, so mail from this name gets SPF none; publish its senders, or %q if it sends no mail (DMARC %s)", SuggestNoMail, coverage(res))
		if res.DMARCPolicy == "" || res.DMARCPolicy == policy.DispositionNone {
			f.add(CodeSubdomainUnprotected, Warn, "RFC 9989 §4.7", res.Name, "no SPF record and DMARC %s: mail forged from this name is delivered as usual", coverage(res))
		}
	case res.SPFRecords > 1:
		// RFC 7208 §4.5: several SPF records give permerror
		f.add(CodeSubdomainSPFBroken, Fail, "RFC 7208 §4.5", res.Name, "%d SPF records: every evaluation gives permerror", res.SPFRecords)
	default:
		if err := verify.CheckSPFSyntax(res.SPF); err != nil {
			// RFC 7208 §4.6: a syntax error anywhere gives permerror
			f.add(CodeSubdomainSPFBroken, Fail, "RFC 7208 §4.6", res.Name, "%v: every evaluation gives permerror", err)
			return false
		}
		f.add(CodeSubdomainSPF, OK, "RFC 7208 §4.5", res.Name, "has its own SPF record: %s", res.SPF)
		return true
	}
	return false
}

// coverage says which DMARC tag covers the name, for messages.
func coverage(res *SubdomainResult) string {
	if res.DMARCPolicy == "" {
		return "policy: none published"
	}
	return fmt.Sprintf("%s=%s from %s", res.DMARCTag, res.DMARCPolicy, res.DMARCPolicyDomain)
}

// subdomainLine is the one-line verdict.
func subdomainLine(res SubdomainResult) string {
	spf := fmt.Sprintf("own SPF record (%d of %d DNS lookups)", res.SPFLookups, LookupLimit)
	switch {
	case !res.Exists:
		spf = "does not exist"
	case res.SPFRecords == 0:
		spf = "no SPF record (suggest " + SuggestNoMail + " if it sends no mail)"
	case res.SPFRecords > 1:
		spf = fmt.Sprintf("%d SPF records", res.SPFRecords)
	}
	return fmt.Sprintf("%s; DMARC %s", spf, coverage(&res))
}
