package health

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// Effective holds the policy values a record gives, defaults applied.
type Effective struct {
	P       policy.Disposition `json:"p"`
	SP      policy.Disposition `json:"sp"`
	NP      policy.Disposition `json:"np"`
	ADKIM   policy.AlignMode   `json:"adkim"`
	ASPF    policy.AlignMode   `json:"aspf"`
	Pct     int                `json:"pct"`
	Testing bool               `json:"testing"`
}

// Authorization is the state of an external report destination (RFC 9990
// §4, https://datatracker.ietf.org/doc/html/rfc9990#section-4).
type Authorization string

// The authorization states.
const (
	// AuthNotNeeded: the destination is within the policy domain's
	// Organizational Domain.
	AuthNotNeeded Authorization = "not_needed"
	// AuthAuthorized: <domain>._report._dmarc.<host> holds a v=DMARC1
	// record.
	AuthAuthorized Authorization = "authorized"
	// AuthMissing: no such record: receivers ignore the destination.
	AuthMissing Authorization = "missing"
	// AuthTempError: the query failed.
	AuthTempError Authorization = "temperror"
	// AuthUnchecked: not a mailto: URI, or a name too long to query.
	AuthUnchecked Authorization = "unchecked"
)

// ReportURI is one rua or ruf destination.
type ReportURI struct {
	Tag    string `json:"tag"` // "rua" or "ruf"
	URI    string `json:"uri"`
	Scheme string `json:"scheme"`
	Host   string `json:"host,omitempty"`
	// External is true when Host's Organizational Domain differs from the
	// policy domain's.
	External      bool          `json:"external"`
	Authorization Authorization `json:"authorization"`
	// Query is the name queried for the authorization, when external.
	Query string `json:"query,omitempty"`
}

// DMARCResult is the DMARC check of the domain.
type DMARCResult struct {
	Verdict  Verdict       `json:"verdict"`
	Line     string        `json:"line"`
	Findings []Finding     `json:"findings"`
	Method   policy.Method `json:"discovery_method"`
	// Queries are the _dmarc names queried by policy discovery, in order;
	// OrgQueries those queried afterwards for the Organizational Domain.
	Queries    []string `json:"queries"`
	OrgQueries []string `json:"org_queries,omitempty"`
	// PolicyDomain is where the record was found ("" when none applies).
	PolicyDomain string `json:"policy_domain,omitempty"`
	OrgDomain    string `json:"org_domain,omitempty"`
	// Record is the record in canonical form.
	Record string `json:"record,omitempty"`
	// Applies is the tag that gives the domain's own policy: "p" when the
	// record is the domain's, else "sp" ("np" when the domain does not
	// exist).
	Applies   policy.Tag         `json:"applies,omitempty"`
	Policy    policy.Disposition `json:"policy,omitempty"`
	Effective *Effective         `json:"effective,omitempty"`
	// InvalidTags lists "tag=value" for each tag whose value is ignored.
	InvalidTags []string    `json:"invalid_tags,omitempty"`
	Reports     []ReportURI `json:"report_uris,omitempty"`
	// Error is set when discovery did not complete (verdict error);
	// OrgError when only the Organizational Domain is uncertain.
	Error    string `json:"error,omitempty"`
	OrgError string `json:"org_error,omitempty"`
}

// checkDMARC discovers the policy of domain and judges it.
func checkDMARC(ctx context.Context, r Resolver, domain string, method policy.Method) DMARCResult {
	f := newFindings()
	d := policy.Discover(ctx, r, domain, policy.Options{Method: method})
	res := DMARCResult{Method: d.Method, Queries: d.Queries, OrgQueries: d.OrgQueries,
		PolicyDomain: d.PolicyDomain, OrgDomain: d.OrgDomain}
	if d.OrgErr != nil {
		res.OrgError = d.OrgErr.Error()
	}
	if d.Err != nil {
		res.Error = d.Err.Error()
		f.add(CodeDMARCTempError, Error, "", domain, "policy discovery did not complete: %v", d.Err)
		res.Verdict, res.Findings, res.Line = f.verdict, f.list, "DNS failure: "+d.Err.Error()
		return res
	}
	nearMisses(ctx, r, d.Queries, f)
	if d.Record == nil {
		// RFC 9989 §4.10.1: with no DMARC Policy Record, receivers MUST NOT apply the DMARC mechanism
		f.add(CodeDMARCMissing, Fail, "RFC 9989 §4.10.1", domain,
			"no DMARC policy record applies (queried %s): receivers do not apply DMARC to mail from this domain; publish one at _dmarc.%s, starting with \"v=DMARC1; p=none; rua=mailto:...\" (RFC 9989 §5.1.4)",
			strings.Join(d.Queries, ", "), domain)
		res.Verdict, res.Findings, res.Line = f.verdict, f.list, "no DMARC policy"
		return res
	}
	rec := d.Record
	res.Record, res.InvalidTags = rec.String(), rec.Invalid
	res.Effective = &Effective{P: rec.Policy(), SP: rec.SubdomainPolicy(), NP: rec.NonExistentPolicy(),
		ADKIM: rec.DKIMAlignment(), ASPF: rec.SPFAlignment(), Pct: rec.Percent(), Testing: rec.Testing}
	f.add(CodeDMARCFound, OK, "RFC 9989 §4.10.1", d.PolicyDomain, "record found at _dmarc.%s by %s discovery (queried %s); Organizational Domain %s",
		d.PolicyDomain, d.Method, strings.Join(d.Queries, ", "), d.OrgDomain)
	res.Applies, res.Policy = applies(d)
	judgeRecord(&res, d, f)
	res.Reports = checkReportURIs(ctx, r, d, method, f)
	res.Verdict, res.Findings = f.verdict, f.list
	res.Line = fmt.Sprintf("%s=%s from %s; subdomains sp=%s, np=%s; %s", res.Applies, res.Policy, d.PolicyDomain,
		res.Effective.SP, res.Effective.NP, countSummary(f.list))
	if ok, _ := rec.Applicable(); !ok {
		res.Applies, res.Policy, res.Effective = "", "", nil
		res.Line = "invalid record at " + d.PolicyDomain + ": no DMARC processing; " + countSummary(f.list)
	}
	return res
}

// applies returns the tag and policy that apply to mail from the domain
// itself (RFC 9989 §4.10.1).
func applies(d *policy.Discovery) (policy.Tag, policy.Disposition) {
	switch {
	case d.PolicyDomain == d.Domain:
		return policy.TagP, d.Record.Policy()
	case d.Existence == policy.NonExistent:
		return policy.TagNP, d.Record.NonExistentPolicy()
	}
	return policy.TagSP, d.Record.SubdomainPolicy()
}

// nearMisses looks again at the names discovery queried (the answers are
// cached) for what discovery silently discards: several DMARC records at
// one name, and TXT records meant as DMARC records that are not.
func nearMisses(ctx context.Context, r Resolver, names []string, f *findings) {
	for _, name := range names {
		txts, err := r.LookupTXT(ctx, fqdn(name))
		if err != nil {
			continue
		}
		valid := 0
		for _, t := range txts {
			if _, err := policy.Parse(t); err == nil {
				valid++
			} else if looksLikeDMARC(t) {
				// RFC 9989 §4.7 v: v=DMARC1 must be the first tag, case-sensitive; else the whole record MUST be ignored
				f.add(CodeDMARCIgnoredRecord, Fail, "RFC 9989 §4.7", name, "%q is not a valid DMARC record and is ignored: it must start with exactly \"v=DMARC1;\"", truncate(t, 120))
			}
		}
		if valid > 1 {
			// RFC 9989 §4.10 step 2: multiple DMARC Policy Records at one name are all discarded
			f.add(CodeDMARCMultiple, Fail, "RFC 9989 §4.10", name, "%d DMARC records at one name: receivers discard them all; keep one", valid)
		}
	}
}

// looksLikeDMARC: a TXT string that mentions v=DMARC1 anywhere, in any case.
func looksLikeDMARC(t string) bool {
	return strings.Contains(strings.ToLower(strings.ReplaceAll(t, " ", "")), "v=dmarc1")
}

// judgeRecord adds the findings about the record's tags.
func judgeRecord(res *DMARCResult, d *policy.Discovery, f *findings) {
	rec, pd := d.Record, d.PolicyDomain
	ok, asNone := rec.Applicable()
	if !ok {
		// RFC 9989 §4.10.1: an invalid p, sp or np without a valid rua: no DMARC processing
		f.add(CodeDMARCNotApplicable, Fail, "RFC 9989 §4.10.1", pd, "invalid policy tag (%s) and no valid rua: receivers apply no DMARC processing", strings.Join(rec.Invalid, ", "))
	} else if asNone {
		// RFC 9989 §4.10.1: an invalid p, sp or np with a valid rua acts as p=none
		f.add(CodeDMARCAsNone, Warn, "RFC 9989 §4.10.1", pd, "invalid policy tag (%s): receivers act as if the record said p=none", strings.Join(rec.Invalid, ", "))
	}
	for _, inv := range rec.Invalid {
		// RFC 9989 §4.8: a tag with an invalid value is ignored, its default applies
		f.add(CodeDMARCInvalidTag, Warn, "RFC 9989 §4.8", pd, "%q has an invalid value and is ignored", inv)
	}
	if rec.P == policy.DispositionUnset && !hasInvalid(rec, "p") {
		// RFC 9989 §4.7 p: a record without p is treated as p=none
		f.add(CodeDMARCNoP, Warn, "RFC 9989 §4.7", pd, "no p tag: treated as p=none")
	}
	if ok {
		judgePolicy(res, d, f)
		judgeSubdomains(d, f)
	}
	if rec.Testing {
		// RFC 9989 §4.7 t: t=y asks receivers to apply one level below the stated policy
		f.add(CodeDMARCTesting, Warn, "RFC 9989 §4.7", pd, "t=y (testing): receivers apply one level below the stated policy (reject → quarantine, quarantine → none)")
	}
	if rec.HasPct && rec.Pct < 100 {
		// RFC 7489 §6.3 pct: the policy applies to that share of failing mail only; RFC 9989 removed pct (Appendix A.6)
		f.add(CodeDMARCPct, Warn, "RFC 7489 §6.3", pd, "pct=%d: RFC 7489 receivers apply the policy to %d%% of failing mail; RFC 9989 receivers ignore pct (use t=y for testing instead)", rec.Pct, rec.Pct)
	}
	if len(rec.RUA) == 0 {
		// RFC 9989 §4.7 rua: without rua, receivers MUST NOT send aggregate reports
		f.add(CodeDMARCNoRUA, Warn, "RFC 9989 §4.7", pd, "no rua: no receiver sends aggregate reports, so nobody sees who sends mail as this domain")
	}
	if len(rec.FO) > 0 && len(rec.RUF) == 0 {
		// RFC 9989 §4.7 fo: the tag's content MUST be ignored without ruf
		f.add(CodeDMARCFOWithoutRUF, Warn, "RFC 9989 §4.7", pd, "fo=%s is ignored without ruf", rec.FailureOptions())
	}
	if rec.PSD == policy.PSDYes && pd == d.Domain {
		// RFC 9989 §4.7 psd: psd=y declares a Public Suffix Domain
		f.add(CodeDMARCPSD, Warn, "RFC 9989 §4.7", pd, "psd=y declares this domain a Public Suffix Domain; remove it unless the domain is one")
	}
}

func hasInvalid(rec *policy.Record, tag string) bool {
	for _, inv := range rec.Invalid {
		if strings.HasPrefix(inv, tag+"=") {
			return true
		}
	}
	return false
}

// judgePolicy says whether the domain's own mail is protected.
func judgePolicy(res *DMARCResult, d *policy.Discovery, f *findings) {
	if res.Policy == policy.DispositionNone {
		// RFC 9989 §3.2.12: p=none is Monitoring Mode: no handling preference for failing mail
		f.add(CodeDMARCMonitoring, Warn, "RFC 9989 §3.2.12", d.Domain,
			"%s=none: monitoring only; mail failing DMARC is delivered as usual. Move to quarantine, then reject, once the reports show every sender passing (RFC 9989 §5.1.7)", res.Applies)
		return
	}
	f.add(CodeDMARCEnforced, OK, "RFC 9989 §4.7", d.Domain, "%s=%s applies to mail from %s", res.Applies, res.Policy, d.Domain)
}

// judgeSubdomains states how sp and np cover the subdomains.
func judgeSubdomains(d *policy.Discovery, f *findings) {
	rec, pd := d.Record, d.PolicyDomain
	p, sp, np := rec.Policy(), rec.SubdomainPolicy(), rec.NonExistentPolicy()
	if pd != d.OrgDomain && rec.SP != policy.DispositionUnset {
		// RFC 9989 §4.7 sp: sp is ignored for records published on subdomains of Organizational Domains
		f.add(CodeDMARCSPIgnored, Warn, "RFC 9989 §4.7", pd, "sp=%s is ignored: the record is not at the Organizational Domain (%s)", rec.SP, d.OrgDomain)
	}
	switch {
	case rec.SP == policy.DispositionUnset && rec.NP == policy.DispositionUnset:
		// RFC 9989 §4.7 sp: if both sp and np are absent, the p policy MUST be applied to subdomains
		f.add(CodeDMARCSubdomains, OK, "RFC 9989 §4.7", pd, "no sp and no np: subdomains of %s, existing or not, inherit p=%s", pd, p)
	default:
		// RFC 9989 §4.7 np: without np, sp (or p) applies to non-existent subdomains
		f.add(CodeDMARCSubdomains, OK, "RFC 9989 §4.7", pd, "existing subdomains get sp=%s, non-existent ones np=%s", sp, np)
	}
	if p != policy.DispositionNone && (sp == policy.DispositionNone || np == policy.DispositionNone) {
		weak := "existing subdomains (sp=none)"
		if sp != policy.DispositionNone {
			weak = "non-existent subdomains (np=none)"
		}
		f.add(CodeDMARCWeakSubdomains, Warn, "RFC 9989 §4.7", pd, "p=%s, but %s are only monitored: spoofed mail from them is delivered", p, weak)
	}
}

// maxReportURIs bounds the rua (and the ruf) URIs checked: each external
// one costs an Organizational Domain walk and a TXT query.
const maxReportURIs = 8

// checkReportURIs lists the rua and ruf destinations and checks that
// external ones are authorized (RFC 9990 §4).
func checkReportURIs(ctx context.Context, r Resolver, d *policy.Discovery, method policy.Method, f *findings) []ReportURI {
	var out []ReportURI
	pdOrg, err := policy.OrgDomain(ctx, r, d.PolicyDomain, method, nil)
	if err != nil {
		pdOrg = d.OrgDomain
	}
	for _, tag := range []string{"rua", "ruf"} {
		uris := d.Record.RUA
		if tag == "ruf" {
			uris = d.Record.RUF
		}
		for i, u := range uris {
			if i == maxReportURIs {
				f.add(CodeDMARCReportURI, Warn, "", d.PolicyDomain, "%s lists %d URIs: only the first %d are checked", tag, len(uris), maxReportURIs)
				break
			}
			out = append(out, checkReportURI(ctx, r, d.PolicyDomain, pdOrg, tag, u, method, f))
		}
	}
	return out
}

// checkReportURI checks one destination.
func checkReportURI(ctx context.Context, r Resolver, pd, pdOrg, tag, uri string, method policy.Method, f *findings) ReportURI {
	ru := ReportURI{Tag: tag, URI: uri, Authorization: AuthUnchecked}
	ru.Scheme, ru.Host = uriHost(uri)
	if ru.Scheme != "mailto" {
		// RFC 9989 §4.7 rua: receivers MUST support mailto:; URIs of schemes they do not support MUST be ignored
		f.add(CodeDMARCReportURI, Warn, "RFC 9989 §4.7", pd, "%s %s: receivers are only required to support mailto:, others may ignore it", tag, uri)
		return ru
	}
	if ru.Host == "" {
		f.add(CodeDMARCReportURI, Warn, "RFC 9989 §4.8", pd, "%s %s: no host after the @", tag, uri)
		return ru
	}
	hostOrg, err := policy.OrgDomain(ctx, r, ru.Host, method, nil)
	if err != nil {
		ru.Authorization = AuthTempError
		f.add(CodeDMARCReportURI, Error, "", pd, "%s %s: the Organizational Domain of %s is unknown: %v", tag, uri, ru.Host, err)
		return ru
	}
	if strings.EqualFold(hostOrg, pdOrg) {
		ru.Authorization = AuthNotNeeded
		return ru
	}
	ru.External = true
	ru.Query = pd + "._report._dmarc." + ru.Host
	ru.Authorization = authorize(ctx, r, ru.Query, ru.Host, f, tag, uri, pd)
	return ru
}

// authorize queries the external destination record (RFC 9990 §4).
func authorize(ctx context.Context, r Resolver, name, host string, f *findings, tag, uri, pd string) Authorization {
	if !queryable(name) {
		// RFC 9990 §4 step 4: a name over the DNS limits cannot give a positive determination
		f.add(CodeDMARCReportURI, Warn, "RFC 9990 §4", pd, "%s %s: %s is too long to query, so receivers cannot confirm the external destination and ignore it", tag, uri, name)
		return AuthUnchecked
	}
	txts, err := r.LookupTXT(ctx, fqdn(name))
	if classify(err) == dnsFailed {
		f.add(CodeDMARCReportURI, Error, "", pd, "%s %s: the authorization record %s could not be fetched: %v", tag, uri, name, err)
		return AuthTempError
	}
	for _, t := range txts {
		rec, err := policy.Parse(t)
		if err != nil {
			continue // RFC 9990 §4 step 6: records that do not start with v=DMARC1 are discarded
		}
		for _, o := range rec.RUA {
			if _, h := uriHost(o); h != "" && !strings.EqualFold(h, host) {
				// RFC 9990 §4 step 9: an overriding rua MUST use the same destination host
				f.add(CodeDMARCReportURI, Warn, "RFC 9990 §4", pd, "%s %s: the authorization record at %s overrides rua with %s on another host: receivers send to neither", tag, uri, name, o)
			}
		}
		f.add(CodeDMARCReportURI, OK, "RFC 9990 §4", pd, "%s %s is external and authorized by %s", tag, uri, name)
		return AuthAuthorized
	}
	// RFC 9990 §4: without a confirming record, the URI MUST be ignored by the report generator
	f.add(CodeDMARCReportURI, Warn, "RFC 9990 §4", pd, "%s %s is outside %s and %s has no v=DMARC1 record: receivers ignore this destination; ask %s to publish one", tag, uri, pd, name, host)
	return AuthMissing
}

// uriHost returns the scheme of a report URI and its destination host (the
// domain of a mailto: address), lower-cased, "" when there is none.
func uriHost(uri string) (scheme, host string) {
	s, rest, ok := strings.Cut(uri, ":")
	if !ok {
		return "", ""
	}
	scheme = strings.ToLower(s)
	if scheme == "mailto" {
		addr, _, _ := strings.Cut(rest, "?")
		if a, err := url.PathUnescape(addr); err == nil {
			addr = a
		}
		if i := strings.LastIndexByte(addr, '@'); i >= 0 {
			host = addr[i+1:]
		}
	} else if u, err := url.Parse(uri); err == nil {
		host = u.Hostname()
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host != "" {
		if n, err := policy.NormalizeDomain(host); err == nil {
			host = n
		} else {
			host = "" // not a domain name: no destination host
		}
	}
	return scheme, host
}

// truncate shortens s to n bytes for a message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
