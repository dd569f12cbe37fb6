package mailout

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// Resolver is the DNS Destinations needs: the one of pkg/policy, which
// pkg/cache's Resolver satisfies (bare *net.DNSError values, NXDOMAIN as
// IsNotFound, no records as an empty answer).
type Resolver = policy.Resolver

// State is what to do with a destination.
type State string

// The destination states.
const (
	// StateSend: send the report to Address.
	StateSend State = "send"
	// StateSkip: do not send; Reason says why.
	StateSkip State = "skip"
	// StateTryLater: a DNS lookup failed temporarily; decide again later
	// (RFC 9990 §4 step 5 allows delaying the delivery).
	StateTryLater State = "try-later"
)

// Destination is one place a report may go, from the rua tag or from an
// external destination's override.
type Destination struct {
	// URI is the rua element (or the overriding URI).
	URI string
	// Address and Host are those of the URI when it parsed.
	Address, Host string
	State         State
	// Reason is ReasonNone when State is StateSend.
	Reason Reason
	// External is set when the Organizational Domains of the policy domain
	// and of Host differ, so that Host had to authorize the reports.
	External bool
	// Override is set on a destination that came from an authorization
	// record's rua: the rua element it replaced.
	Override string
	// Err details Reason (it wraps ErrURI); nil for StateSend.
	Err error
}

// Destinations decides where the report about policyDomain goes: the mailto
// URIs of rua (the tag's value in the policy record as it stands at send
// time), in order (RFC 9990 §3.5: "in the order given"), each with its
// State. External destinations are verified as RFC 9990 §4 requires, with
// the Organizational Domains found by method (pkg/policy's tree walk or
// PSL). Every query goes through r under ctx.
func Destinations(ctx context.Context, r Resolver, policyDomain, rua string, method policy.Method) []Destination {
	v := &verifier{r: r, method: method, orgs: map[string]orgAnswer{}, auths: map[string]authAnswer{}, seen: map[string]bool{}}
	var out []Destination
	pd, pdErr := policy.NormalizeDomain(policyDomain)
	for _, u := range ParseRUA(rua) {
		if u.Reason != ReasonNone {
			out = append(out, Destination{URI: u.Raw, State: StateSkip, Reason: u.Reason, Err: u.Err})
			continue
		}
		d := Destination{URI: u.Raw, Address: u.Address, Host: u.Host}
		if v.seen[u.Address] {
			out = append(out, d.skip(ReasonDuplicate, "address %s listed before", u.Address))
			continue
		}
		if pdErr != nil {
			out = append(out, d.skip(ReasonPolicyDomain, "policy domain %q: %v", policyDomain, pdErr))
			continue
		}
		orgP := v.org(ctx, pd) // looked up once, when a URI needs it
		if orgP.err != nil {
			out = append(out, d.later("Organizational Domain of %s: %v", pd, orgP.err))
			continue
		}
		for _, r := range v.check(ctx, d, pd, orgP.org) {
			if r.State == StateSend {
				v.seen[r.Address] = true
			}
			out = append(out, r)
		}
	}
	return out
}

func (d Destination) skip(r Reason, format string, args ...any) Destination {
	d.State, d.Reason = StateSkip, r
	d.Err = fmt.Errorf("%w: %s: %s", ErrURI, r, fmt.Sprintf(format, args...))
	return d
}

func (d Destination) later(format string, args ...any) Destination {
	d.State, d.Reason = StateTryLater, ReasonTryLater
	d.Err = fmt.Errorf("%w: %s: %s", ErrURI, ReasonTryLater, fmt.Sprintf(format, args...))
	return d
}

// verifier holds the answers of one Destinations call, so that several URIs
// at one host cost one lookup.
type verifier struct {
	r      Resolver
	method policy.Method
	orgs   map[string]orgAnswer
	auths  map[string]authAnswer
	seen   map[string]bool // addresses already to be sent to
}

type orgAnswer struct {
	org string
	err error
}

// authAnswer is the outcome of one authorization lookup.
type authAnswer struct {
	state  State
	reason Reason
	detail string
	rua    []string // the rua URIs of the authorizing records, in order
}

func (v *verifier) org(ctx context.Context, domain string) orgAnswer {
	if a, ok := v.orgs[domain]; ok {
		return a
	}
	org, err := policy.OrgDomain(ctx, v.r, domain, v.method, nil)
	a := orgAnswer{org: org, err: err}
	v.orgs[domain] = a
	return a
}

// check decides one parsed destination: an internal one is sent to, an
// external one must be authorized and may be replaced by its override.
func (v *verifier) check(ctx context.Context, d Destination, pd, orgP string) []Destination {
	orgH := v.org(ctx, d.Host)
	if orgH.err != nil {
		return []Destination{d.later("Organizational Domain of %s: %v", d.Host, orgH.err)}
	}
	if orgH.org == orgP {
		d.State = StateSend
		return []Destination{d}
	}
	d.External = true // RFC 9990 §4: the Organizational Domains differ, the verification steps MUST be taken
	a := v.authorize(ctx, pd, d.Host)
	switch {
	case a.state == StateTryLater:
		return []Destination{d.later("%s", a.detail)}
	case a.state == StateSkip:
		return []Destination{d.skip(a.reason, "%s", a.detail)} // RFC 9990 §4: an unconfirmed URI MUST be ignored
	case len(a.rua) == 0:
		d.State = StateSend
		return []Destination{d}
	}
	return v.override(d, pd, a.rua)
}

// authorize looks up <pd>._report._dmarc.<host> (RFC 9990 §4 steps 1-8).
func (v *verifier) authorize(ctx context.Context, pd, host string) authAnswer {
	name := pd + "._report._dmarc." + host // RFC 9990 §4 steps 1-3; both are A-labels already
	if a, ok := v.auths[name]; ok {
		return a
	}
	a := v.lookupAuth(ctx, name)
	v.auths[name] = a
	return a
}

func (v *verifier) lookupAuth(ctx context.Context, name string) authAnswer {
	if len(name) > 253 {
		// RFC 9990 §4 step 4: longer than DNS allows, no positive determination can be made
		return authAnswer{state: StateSkip, reason: ReasonNameTooLong, detail: fmt.Sprintf("%d octets", len(name))}
	}
	txts, err := v.r.LookupTXT(ctx, name+".")
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return authAnswer{state: StateSkip, reason: ReasonNotAuthorized, detail: "no record at " + name}
		}
		// RFC 9990 §4 step 5: a temporary DNS error MAY delay the delivery, so the test can be repeated
		return authAnswer{state: StateTryLater, detail: fmt.Sprintf("TXT %s: %v", name, err)}
	}
	a := authAnswer{state: StateSkip, reason: ReasonNotAuthorized, detail: "no v=DMARC1 record at " + name}
	for _, t := range txts {
		rec, err := policy.Parse(t) // RFC 9990 §4 step 6: tag=value pairs, v=DMARC1 first; others are discarded
		if err != nil {
			continue
		}
		a.state, a.reason, a.detail = StateSend, ReasonNone, "" // RFC 9990 §4 step 8: one record remains, the arrangement is authorized
		a.rua = append(a.rua, rec.RUA...)
	}
	return a
}

// override applies RFC 9990 §4 step 9: the authorization record's rua
// replaces the URI, but only if every overriding URI names the same host;
// otherwise neither is used.
func (v *verifier) override(d Destination, pd string, rua []string) []Destination {
	uris := ParseRUA(strings.Join(rua, ","))
	for _, u := range uris {
		if u.Reason == ReasonNone && u.Host != d.Host {
			// RFC 9990 §4 step 9: the overriding URI MUST use the same destination host; else report to neither
			return []Destination{d.skip(ReasonOverrideHost, "override %s names host %s", u.Raw, u.Host)}
		}
	}
	out := []Destination{d.skip(ReasonOverridden, "replaced by the rua of %s._report._dmarc.%s", pd, d.Host)}
	for _, u := range uris {
		o := Destination{URI: u.Raw, Address: u.Address, Host: u.Host, External: true, Override: d.URI}
		switch {
		case u.Reason != ReasonNone:
			o.State, o.Reason, o.Err = StateSkip, u.Reason, u.Err
		case v.seen[u.Address]:
			o = o.skip(ReasonDuplicate, "address %s listed before", u.Address)
		default:
			o.State = StateSend
		}
		out = append(out, o)
	}
	return out
}
