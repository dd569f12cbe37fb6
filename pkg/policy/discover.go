package policy

import (
	"context"
	"errors"
	"fmt"
	"net"

	"golang.org/x/net/publicsuffix"
)

// Resolver is the DNS this package needs. *cache.Resolver (our caching
// client) and *net.Resolver both satisfy it. The error contract is the one
// of pkg/cache: a name that does not exist gives a *net.DNSError with
// IsNotFound; no records of the type gives an empty answer and a nil error;
// anything else is a failure. (A plain *net.Resolver reports NODATA as
// IsNotFound, which makes the np= existence test below unreliable; use
// pkg/cache.)
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Method is how the DMARC Policy Record and Organizational Domains are
// found; its values are RFC 9990's discovery_method.
type Method string

// The discovery methods.
const (
	// MethodTreeWalk is the DNS Tree Walk of RFC 9989 §4.10, the default.
	MethodTreeWalk Method = "treewalk"
	// MethodPSL is RFC 7489 §3.2 and §6.6.3: the Public Suffix List
	// (golang.org/x/net/publicsuffix, compiled in).
	MethodPSL Method = "psl"
)

// Valid reports whether m is a known discovery method.
func (m Method) Valid() error { return oneOf(m, MethodTreeWalk, MethodPSL) }

// UnmarshalText accepts the known discovery methods only (configuration
// files).
func (m *Method) UnmarshalText(b []byte) error { return unmarshalEnum(m, b) }

// MarshalText writes the method.
func (m Method) MarshalText() ([]byte, error) { return []byte(m), nil }

// maxNameLen is the longest domain name in text form without the final
// dot (255 octets on the wire, RFC 1035 §2.3.4).
const maxNameLen = 253

// MaxWalkQueries is the most DNS queries one tree walk makes (RFC 9989
// §4.10: "Author Domains with more than eight labels do not result in more
// than eight DNS queries").
const MaxWalkQueries = 8

// Errors of discovery. A Discovery's Err wraps ErrTempFail for any failure
// that is not a definite answer, so that errors.Is classifies it.
var (
	// ErrTempFail: a DNS query did not complete (SERVFAIL, timeout, ...).
	ErrTempFail = errors.New("policy: temporary DNS failure")
)

// Existence is what the np= test found out about an Author Domain.
type Existence string

// The existence states.
const (
	ExistenceUnknown Existence = ""         // not tested (not needed)
	Exists           Existence = "exists"   // some record type answered NOERROR
	NonExistent      Existence = "nxdomain" // NXDOMAIN (RFC 9989 §3.2.13)
)

// Discovery is the outcome of policy discovery for one Author Domain. It is
// computed once per message and domain (early, at the From: header) and
// handed to Evaluate through Input.Discoveries.
type Discovery struct {
	// Domain is the Author Domain (normalized).
	Domain string
	Method Method
	// PolicyDomain is where Record was found; "" when no record applies.
	PolicyDomain string
	// Record is the applicable DMARC Policy Record, nil when none.
	Record *Record
	// OrgDomain is the Organizational Domain of Domain (RFC 9989 §4.10.2,
	// RFC 7489 §3.2); without any record on the walk it is Domain itself.
	OrgDomain string
	// OrgErr is set when OrgDomain could not be determined (temporary DNS
	// failure); Evaluate uses it only when relaxed alignment needs it.
	OrgErr error
	// Existence is the np= existence test's result, when it was needed.
	Existence Existence
	// ExistErr is set when the np= existence test did not complete (it
	// wraps ErrTempFail; Existence is then ExistenceUnknown). It is kept
	// apart from Err because it matters only when DMARC fails and np=
	// names a different policy than sp/p would (see Evaluate).
	ExistErr error
	// Queries are the _dmarc names queried for policy discovery, in order;
	// OrgQueries those queried afterwards to finish the Organizational
	// Domain; ExistQueries the names and types of the existence test.
	Queries, OrgQueries, ExistQueries []string
	// Err is non-nil when discovery did not complete; it wraps ErrTempFail.
	Err error
}

// Options tune discovery.
type Options struct {
	// Method: MethodTreeWalk (default when empty) or MethodPSL.
	Method Method
}

// DiscoveryMethod is the method discovery uses: Method, else the default
// (MethodTreeWalk).
func (o Options) DiscoveryMethod() Method {
	if o.Method == MethodPSL {
		return MethodPSL
	}
	return MethodTreeWalk
}

// Discover finds the DMARC Policy Record that applies to the Author Domain
// domain, its Organizational Domain and, when the record has np=, whether
// the domain exists. Every query goes through r under ctx. The result
// always names the method; a DNS failure of policy discovery is reported in
// Err, never as "no policy" (RFC 9989 §4.10.1: no record means "any
// indication that there is no such record as opposed to a transient DNS
// error"); a failure of the existence test only in ExistErr.
func Discover(ctx context.Context, r Resolver, domain string, opts Options) *Discovery {
	d := &Discovery{Method: opts.DiscoveryMethod()}
	norm, err := NormalizeDomain(domain)
	if err != nil {
		d.Domain = domain
		d.Err = fmt.Errorf("policy: author domain %q: %w", domain, err)
		return d
	}
	d.Domain = norm
	if d.Method == MethodPSL {
		discoverPSL(ctx, r, d)
	} else {
		discoverTreeWalk(ctx, r, d)
	}
	if d.Err == nil && d.Record != nil && d.PolicyDomain != d.Domain && d.Record.NP != DispositionUnset {
		// RFC 9989 §5.3.6: a DNS error here is neither pass nor fail, but
		// only when np= would change the policy; Evaluate decides.
		d.Existence, d.ExistErr = exists(ctx, r, d.Domain, &d.ExistQueries)
	}
	return d
}

// queryDMARC fetches the TXT records at _dmarc.name and keeps the DMARC
// ones (RFC 9989 §4.10 steps 1-2 and 5-6). It returns the single remaining
// record, or nil when there are none or several ("If multiple DMARC Policy
// Records are returned for a single target, they are all discarded").
func queryDMARC(ctx context.Context, r Resolver, name string, log *[]string) (*Record, error) {
	recs, err := queryAll(ctx, r, name, log)
	if err != nil || len(recs) != 1 {
		return nil, err // RFC 9989 §4.10 step 2: multiple DMARC Policy Records ... are all discarded
	}
	return recs[0], nil
}

// walkTargets lists the names a DNS Tree Walk from domain queries: the
// domain itself, then (RFC 9989 §4.10 step 4) its parent when it has fewer
// than 8 labels, or its right-most 7 labels when it has 8 or more, then
// each parent in turn (step 7) down to the top-level domain.
func walkTargets(domain string) []string {
	out := []string{domain}
	x := countLabels(domain)
	next := parentDomain(domain) // RFC 9989 §4.10 step 4: if x < 8, remove the left-most label
	if x >= 8 {
		next = lastLabels(domain, 7) // RFC 9989 §4.10 step 4: if x >= 8, remove labels until 7 remain
	}
	for ; next != ""; next = parentDomain(next) {
		out = append(out, next) // RFC 9989 §4.10 step 7
	}
	return out
}

// found is one DMARC Policy Record met during a walk.
type found struct {
	name string
	rec  *Record
}

// walk queries the targets of walkTargets(domain) in order, starting at
// index from, and stops after a record with psd=y or psd=n (RFC 9989 §4.10
// steps 2 and 6) or when stop says so.
func walk(ctx context.Context, r Resolver, targets []string, from int, recs []found, log *[]string, stop func([]found) bool) ([]found, error) {
	for _, t := range targets[from:] {
		rec, err := queryDMARC(ctx, r, t, log)
		if err != nil {
			return recs, err
		}
		if rec == nil {
			continue
		}
		recs = append(recs, found{t, rec})
		if rec.PSD == PSDYes || rec.PSD == PSDNo {
			break // RFC 9989 §4.10 step 6: a record with psd=n or psd=y stops the walk
		}
		if stop != nil && stop(recs) {
			break
		}
	}
	return recs, nil
}

// selectOrg applies RFC 9989 §4.10.2 to the records a walk from start met
// (ordered from the longest name to the shortest).
func selectOrg(start string, recs []found) string {
	if len(recs) == 0 {
		return start // RFC 9989 §4.10.2: if this process does not determine it, the initial target is the Organizational Domain
	}
	last := recs[len(recs)-1] // a psd=y/n record ends the walk, so it can only be the last
	switch {
	case last.rec.PSD == PSDNo:
		return last.name // RFC 9989 §4.10.2 rule 1: psd=n is the Organizational Domain
	case last.rec.PSD == PSDYes && last.name != start:
		return lastLabels(start, countLabels(last.name)+1) // RFC 9989 §4.10.2 rule 2: one label below the psd=y domain
	}
	return last.name // RFC 9989 §4.10.2 rule 3: the record at the name with the fewest labels
}

// discoverTreeWalk is RFC 9989 §4.10.1.
func discoverTreeWalk(ctx context.Context, r Resolver, d *Discovery) {
	targets := walkTargets(d.Domain)
	// RFC 9989 §4.10.1: policy discovery starts with a query at the Author Domain; a record there applies.
	recs, err := walk(ctx, r, targets, 0, nil, &d.Queries, func(recs []found) bool { return recs[0].name == d.Domain })
	if err != nil {
		d.Err = err
		return
	}
	if len(recs) > 0 && recs[0].name == d.Domain {
		d.PolicyDomain, d.Record = d.Domain, recs[0].rec
		finishOrg(ctx, r, d, targets, recs)
		return
	}
	d.OrgDomain = selectOrg(d.Domain, recs)
	d.PolicyDomain, d.Record = policyFromWalk(d.OrgDomain, recs)
}

// finishOrg completes the walk that stopped at the Author Domain's own
// record, to learn its Organizational Domain (needed for relaxed
// alignment).
func finishOrg(ctx context.Context, r Resolver, d *Discovery, targets []string, recs []found) {
	if p := recs[0].rec.PSD; p == PSDYes || p == PSDNo {
		d.OrgDomain = selectOrg(d.Domain, recs)
		return
	}
	recs, err := walk(ctx, r, targets, 1, recs, &d.OrgQueries, nil)
	if err != nil {
		d.OrgErr = err
		return
	}
	d.OrgDomain = selectOrg(d.Domain, recs)
}

// policyFromWalk picks the record to apply when the Author Domain has none
// (RFC 9989 §4.10.1): the Organizational Domain's, else the Public Suffix
// Domain's (the psd=y record that ended the walk). When the shortcut of
// §4.10 step 4 skipped the Organizational Domain's name, only the PSD
// record can apply.
func policyFromWalk(org string, recs []found) (string, *Record) {
	for _, f := range recs {
		if f.name == org {
			return f.name, f.rec // RFC 9989 §4.10.1: the Organizational Domain of the Author Domain
		}
	}
	if n := len(recs); n > 0 && recs[n-1].rec.PSD == PSDYes {
		return recs[n-1].name, recs[n-1].rec // RFC 9989 §4.10.1: the Public Suffix Domain of the Author Domain
	}
	return "", nil // RFC 9989 §4.10.1: no DMARC Policy Record → MUST NOT apply the DMARC mechanism
}

// discoverPSL is RFC 7489 §6.6.3.
func discoverPSL(ctx context.Context, r Resolver, d *Discovery) {
	d.OrgDomain = pslOrgDomain(d.Domain)
	txts, err := queryAll(ctx, r, d.Domain, &d.Queries)
	if err != nil {
		d.Err = err
		return
	}
	if len(txts) == 0 && d.OrgDomain != d.Domain {
		// RFC 7489 §6.6.3 step 3: if the set is now empty, the Mail Receiver MUST query the Organizational Domain
		if txts, err = queryAll(ctx, r, d.OrgDomain, &d.Queries); err != nil {
			d.Err = err
			return
		}
		if len(txts) == 1 {
			d.PolicyDomain, d.Record = d.OrgDomain, txts[0]
		}
		return
	}
	if len(txts) == 1 {
		d.PolicyDomain, d.Record = d.Domain, txts[0]
	}
	// RFC 7489 §6.6.3 step 5: multiple records (or none) → policy discovery terminates, no DMARC processing
}

// queryAll returns every DMARC record at _dmarc.name (several when the
// domain published several).
func queryAll(ctx context.Context, r Resolver, name string, log *[]string) ([]*Record, error) {
	fqdn := "_dmarc." + name + "." // one string for the query and the log
	q := fqdn[:len(fqdn)-1]
	*log = append(*log, q)
	if len(q) > maxNameLen {
		return nil, nil // RFC 1035 §2.3.4: a name this long cannot exist, so it holds no record
	}
	txts, err := r.LookupTXT(ctx, fqdn)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: TXT %s: %v", ErrTempFail, q, err)
	}
	var out []*Record
	for _, t := range txts {
		if rec, err := Parse(t); err == nil {
			// RFC 9989 §4.10 step 2 and RFC 7489 §6.6.3 step 2: records that do not start with "v=" are discarded
			out = append(out, rec)
		}
	}
	return out, nil
}

// pslOrgDomain is RFC 7489 §3.2: the public suffix plus one label. A name
// that is itself a public suffix is its own Organizational Domain.
func pslOrgDomain(d string) string {
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return org
}

// OrgDomain returns the Organizational Domain of domain by method: the tree
// walk of RFC 9989 §4.10.2 through r, or the Public Suffix List (RFC 7489
// §3.2, no I/O). The names queried are appended to queries when it is not
// nil. The milter can call it early to warm the cache for the SPF and DKIM
// domains; Prepare calls it for Evaluate.
func OrgDomain(ctx context.Context, r Resolver, domain string, method Method, queries *[]string) (string, error) {
	norm, err := NormalizeDomain(domain)
	if err != nil {
		return "", fmt.Errorf("policy: %q: %w", domain, err)
	}
	if method == MethodPSL {
		return pslOrgDomain(norm), nil
	}
	var log []string
	if queries == nil {
		queries = &log
	}
	recs, err := walk(ctx, r, walkTargets(norm), 0, nil, queries, nil)
	if err != nil {
		return "", err
	}
	return selectOrg(norm, recs), nil
}

// exists is the np= existence test. RFC 9989 §3.2.13 and Appendix A.4: a
// domain does not exist when a query for it gets NXDOMAIN (RFC 8020: then
// nothing below it exists either); NODATA means it exists. We ask MX first
// and, only when that says NXDOMAIN, confirm with A/AAAA: a domain is
// non-existent only when all say NXDOMAIN, so a server that wrongly answers
// NXDOMAIN for one type cannot make np= (often the strictest tag) apply.
// Both answers are cached by the resolver. A failure is returned (it wraps
// ErrTempFail) and becomes temperror where it matters.
func exists(ctx context.Context, r Resolver, domain string, log *[]string) (Existence, error) {
	*log = append(*log, "MX "+domain)
	_, err := r.LookupMX(ctx, domain+".")
	if nx, err := classify(err, "MX", domain); err != nil {
		return ExistenceUnknown, err
	} else if !nx {
		return Exists, nil
	}
	*log = append(*log, "A/AAAA "+domain)
	_, err = r.LookupIPAddr(ctx, domain+".")
	if nx, err := classify(err, "A/AAAA", domain); err != nil {
		return ExistenceUnknown, err
	} else if !nx {
		return Exists, nil
	}
	return NonExistent, nil
}

// classify maps a lookup error to (NXDOMAIN?, failure).
func classify(err error, qtype, name string) (bool, error) {
	if err == nil {
		return false, nil
	}
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return true, nil
	}
	return false, fmt.Errorf("%w: %s %s: %v", ErrTempFail, qtype, name, err)
}
