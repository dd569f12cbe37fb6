package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// Version is the version of the Report JSON shape (docs/health.md). It
// changes only when a field changes meaning or is removed; new fields may be
// added within a version.
const Version = 1

// Resolver is the DNS the checks need: the method set of policy.Resolver,
// which *cache.Resolver satisfies, with its error contract (a name that does
// not exist is a *net.DNSError with IsNotFound; no records of the type is an
// empty answer and a nil error; anything else is a failure).
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Verdict is the outcome of a check, and the severity of a finding.
type Verdict string

// The verdicts, from best to worst.
const (
	// OK: nothing to change (for a finding: a statement of what is fine).
	OK Verdict = "ok"
	// Warn: mail flows, but protection or reporting is weaker than it could
	// be, or a limit is close.
	Warn Verdict = "warn"
	// Error: DNS did not answer (a temporary failure): the check is
	// incomplete and says nothing about the domain.
	Error Verdict = "error"
	// Fail: receivers will get permerror, ignore a record, or reject mail
	// the owner sends.
	Fail Verdict = "fail"
)

func (v Verdict) rank() int {
	switch v {
	case Warn:
		return 1
	case Error:
		return 2
	case Fail:
		return 3
	}
	return 0
}

// worst returns the worse of two verdicts.
func worst(a, b Verdict) Verdict {
	if b.rank() > a.rank() {
		return b
	}
	return a
}

// Finding is one observation of a check.
type Finding struct {
	// Code identifies the kind of finding; the codes are listed in
	// docs/health.md and stay stable within a Version.
	Code Code `json:"code"`
	// Severity is how much it matters: ok (informational), warn, fail, error.
	Severity Verdict `json:"severity"`
	// Rule is the standard and section it rests on ("RFC 7208 §4.6.4"),
	// empty for advice that no standard states.
	Rule string `json:"rule,omitempty"`
	// Name is the DNS name the finding is about.
	Name string `json:"name,omitempty"`
	// Message says what was found and what to do, in one or two sentences.
	Message string `json:"message"`
}

// findings collects findings and the verdict they add up to.
type findings struct {
	list    []Finding
	verdict Verdict
}

// newFindings returns an empty list (never nil, so that JSON shows []).
func newFindings() *findings { return &findings{list: []Finding{}, verdict: OK} }

// maxFindings bounds the findings of one check (a hostile record could
// otherwise produce one per term); the verdict still counts them all.
const maxFindings = 100

func (f *findings) add(code Code, sev Verdict, rule, name, format string, args ...any) {
	f.verdict = worst(f.verdict, sev)
	switch {
	case len(f.list) < maxFindings:
		f.list = append(f.list, Finding{Code: code, Severity: sev, Rule: rule, Name: name, Message: fmt.Sprintf(format, args...)})
	case len(f.list) == maxFindings:
		f.list = append(f.list, Finding{Code: CodeTruncated, Severity: OK, Message: fmt.Sprintf("more than %d findings: the rest are not listed", maxFindings)})
	}
}

// Request says what to check.
type Request struct {
	// Domain is the domain to check (an Author Domain, usually an
	// Organizational Domain).
	Domain string
	// Selectors are DKIM selectors whose keys are checked at
	// <selector>._domainkey.<Domain>: those given by the operator and
	// those seen in reports. At most MaxSelectors are checked.
	Selectors []string
	// Subdomains are names under Domain (seen in mail or reports) whose own
	// SPF record and DMARC coverage are checked. A name that is not Domain
	// or below it is taken as relative to Domain ("mail" →
	// "mail.<Domain>"). At most MaxSubdomains are checked.
	Subdomains []string
	// Method is the DMARC discovery method (policy.MethodTreeWalk when
	// empty).
	Method policy.Method
}

// Bounds on one Check.
const (
	MaxSelectors  = 32
	MaxSubdomains = 64
)

// Counts are the number of checks with each verdict.
type Counts struct {
	OK    int `json:"ok"`
	Warn  int `json:"warn"`
	Fail  int `json:"fail"`
	Error int `json:"error"`
}

func (c *Counts) add(v Verdict) {
	switch v {
	case OK:
		c.OK++
	case Warn:
		c.Warn++
	case Fail:
		c.Fail++
	case Error:
		c.Error++
	}
}

// Report is the outcome of Check. Its JSON form is the documented shape.
type Report struct {
	Version   int       `json:"version"`
	Domain    string    `json:"domain"`
	CheckedAt time.Time `json:"checked_at"`
	// Verdict is the worst verdict of the checks; Summary says it in one
	// line, Counts counts the checks by verdict.
	Verdict Verdict `json:"verdict"`
	Summary string  `json:"summary"`
	Counts  Counts  `json:"counts"`
	// Error is set (and nothing else) when the request itself was invalid.
	Error      string            `json:"error,omitempty"`
	DMARC      *DMARCResult      `json:"dmarc,omitempty"`
	SPF        *SPFResult        `json:"spf,omitempty"`
	Subdomains []SubdomainResult `json:"subdomains"`
	DKIM       []DKIMResult      `json:"dkim"`
}

// ErrBadDomain is reported (in Report.Error) for a domain that cannot be
// checked.
var ErrBadDomain = errors.New("health: invalid domain")

// Check runs every check of req against r under ctx and returns the report.
// It never fails as a whole: a DNS failure makes the affected check's
// verdict Error. The number of queries is bounded by MaxSelectors,
// MaxSubdomains and the bounds of the SPF walk (maxSPFNodes).
func Check(ctx context.Context, r Resolver, req Request) Report {
	rep := Report{Version: Version, CheckedAt: time.Now().UTC(), Subdomains: []SubdomainResult{}, DKIM: []DKIMResult{}}
	domain, err := policy.NormalizeDomain(req.Domain)
	if err != nil {
		rep.Domain, rep.Verdict = req.Domain, Error
		rep.Error = fmt.Sprintf("%v: %q: %v", ErrBadDomain, req.Domain, err)
		rep.Summary = rep.Error
		return rep
	}
	rep.Domain = domain
	dm := checkDMARC(ctx, r, domain, req.Method)
	rep.DMARC = &dm
	spf := checkSPF(ctx, r, domain)
	rep.SPF = &spf
	for _, name := range limit(subdomainNames(domain, req.Subdomains), MaxSubdomains) {
		rep.Subdomains = append(rep.Subdomains, checkSubdomain(ctx, r, name, req.Method))
	}
	for _, sel := range limit(dedupe(req.Selectors), MaxSelectors) {
		rep.DKIM = append(rep.DKIM, checkDKIM(ctx, r, domain, sel))
	}
	rep.finish(len(req.Subdomains) > MaxSubdomains || len(req.Selectors) > MaxSelectors)
	return rep
}

// finish sets the overall verdict, the counts and the summary line.
func (rep *Report) finish(truncated bool) {
	rep.Verdict = OK
	add := func(v Verdict) {
		rep.Counts.add(v)
		rep.Verdict = worst(rep.Verdict, v)
	}
	add(rep.DMARC.Verdict)
	add(rep.SPF.Verdict)
	for _, s := range rep.Subdomains {
		add(s.Verdict)
	}
	for _, k := range rep.DKIM {
		add(k.Verdict)
	}
	n := rep.Counts.OK + rep.Counts.Warn + rep.Counts.Fail + rep.Counts.Error
	rep.Summary = fmt.Sprintf("%s: %s (%d checks: %d ok, %d warn, %d fail, %d error)",
		rep.Domain, rep.Verdict, n, rep.Counts.OK, rep.Counts.Warn, rep.Counts.Fail, rep.Counts.Error)
	if truncated {
		rep.Summary += fmt.Sprintf("; only the first %d subdomains and %d selectors were checked", MaxSubdomains, MaxSelectors)
	}
}

func limit(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// dedupe drops empty and repeated strings (compared without case), keeping
// the first spelling.
func dedupe(in []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range in {
		k := strings.ToLower(strings.TrimSpace(s))
		if k == "" || seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, strings.TrimSpace(s))
	}
	return out
}

// subdomainNames makes each name absolute under domain: a name that is
// domain or ends in "."+domain is kept, anything else is taken as relative.
func subdomainNames(domain string, names []string) []string {
	var out []string
	for _, n := range dedupe(names) {
		n = strings.TrimSuffix(strings.ToLower(n), ".")
		if n != domain && !strings.HasSuffix(n, "."+domain) {
			n += "." + domain
		}
		out = append(out, n)
	}
	return dedupe(out)
}

// dnsOutcome classifies a lookup error: nil, not found (NXDOMAIN), or a
// failure.
type dnsOutcome int

const (
	dnsOK dnsOutcome = iota
	dnsNotFound
	dnsFailed
)

func classify(err error) dnsOutcome {
	if err == nil {
		return dnsOK
	}
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return dnsNotFound
	}
	return dnsFailed
}

// fqdn adds the final dot (style: always query absolute names).
func fqdn(name string) string { return strings.TrimSuffix(name, ".") + "." }

// queryable reports whether name can be sent as a DNS query (RFC 1035
// §2.3.4, https://datatracker.ietf.org/doc/html/rfc1035#section-2.3.4: labels of 1 to 63 octets, at most 253 octets in text form).
func queryable(name string) bool {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	for l := range strings.SplitSeq(name, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
	}
	return true
}
