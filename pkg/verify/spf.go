package verify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"blitiri.com.ar/go/spf"
)

// Resolver is the DNS that an SPF check needs. It has the method set of
// *net.Resolver and of the project's caching resolver (pkg/cache), and it is
// the interface of blitiri.com.ar/go/spf (spf.DNSResolver).
//
// Errors must follow the *net.Resolver contract and must not be wrapped: a
// name that does not exist is a bare *net.DNSError with IsNotFound; a
// temporary failure is a bare *net.DNSError with IsTemporary (or IsTimeout);
// a name without records of the type is an empty answer and a nil error.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

var _ spf.DNSResolver = Resolver(nil)

// The SPF processing limits of RFC 7208 §4.6.4.
const (
	// DefaultSPFLookupLimit is the number of DNS-querying terms (include, a,
	// mx, ptr, exists, redirect) one check may evaluate.
	DefaultSPFLookupLimit = 10 // RFC 7208 §4.6.4: MUST limit to 10
	// DefaultSPFVoidLookupLimit is the number of lookups that may return no
	// answer (NXDOMAIN or NODATA) before the check ends in permerror.
	DefaultSPFVoidLookupLimit = 2 // RFC 7208 §4.6.4: SHOULD limit to a configurable default of 2
)

// SPFConfig holds the SPF limits. The zero value gives the RFC defaults.
type SPFConfig struct {
	// LookupLimit is the maximum number of DNS-querying terms per check.
	// Default (0): DefaultSPFLookupLimit. RFC 7208 §4.6.4 fixes it at 10;
	// raising it breaks the standard.
	LookupLimit uint
	// VoidLookupLimit is the maximum number of void lookups per check.
	// Default (0): DefaultSPFVoidLookupLimit.
	VoidLookupLimit uint
}

// SPFChecker runs SPF checks (RFC 7208) through a Resolver. It holds no
// per-message state and is safe for concurrent use.
type SPFChecker struct {
	res         Resolver
	lookupLimit uint
	voidLimit   uint
	// syntax remembers the verdict of the record syntax check per record
	// text; it is shared by the checkers made with WithResolver.
	syntax *spfSyntaxCache
}

// NewSPFChecker returns a checker that resolves through r with the limits of
// cfg.
func NewSPFChecker(r Resolver, cfg SPFConfig) *SPFChecker {
	c := &SPFChecker{res: r, lookupLimit: cfg.LookupLimit, voidLimit: cfg.VoidLookupLimit, syntax: newSPFSyntaxCache()}
	if c.lookupLimit == 0 {
		c.lookupLimit = DefaultSPFLookupLimit
	}
	if c.voidLimit == 0 {
		c.voidLimit = DefaultSPFVoidLookupLimit
	}
	return c
}

// WithResolver returns a checker with c's limits that resolves through r.
// It shares c's memory of which record texts are well-formed, so that a
// checker made per message (over a per-message view of a cache) does not
// check the syntax of the same records again.
func (c *SPFChecker) WithResolver(r Resolver) *SPFChecker {
	return &SPFChecker{res: r, lookupLimit: c.lookupLimit, voidLimit: c.voidLimit, syntax: c.syntax}
}

// CheckMailFrom checks the "MAIL FROM" identity (RFC 7208 §2.4) of a message
// sent by ip. mailFrom is the reverse-path without angle brackets; "" or "<>"
// is the null reverse-path, for which the identity is postmaster@helo. helo
// is the HELO/EHLO argument; it is also the %{h} macro. The result has scope
// mfrom. Every DNS query runs under ctx.
func (c *SPFChecker) CheckMailFrom(ctx context.Context, ip net.IP, helo, mailFrom string) SPFResult {
	mailFrom = strings.TrimSpace(mailFrom)
	if mailFrom == "<>" {
		mailFrom = ""
	}
	if mailFrom == "" {
		// RFC 7208 §2.4: with a null reverse-path, the "MAIL FROM" identity is
		// postmaster@<HELO identity>.
		r := SPFResult{Scope: ScopeMailFrom, Domain: heloDomain(helo)}
		if !validSPFDomain(r.Domain) {
			r.Result = ResultNone
			r.Reason = fmt.Sprintf("null reverse-path and HELO %q is not a domain name", helo)
			return r
		}
		r.Sender = "postmaster@" + r.Domain
		return c.check(ctx, ip, helo, r)
	}
	local, domain := splitAddress(mailFrom)
	if local == "" {
		local = "postmaster" // RFC 7208 §4.3: no local-part → "postmaster"
	}
	r := SPFResult{Scope: ScopeMailFrom, Domain: strings.TrimSuffix(domain, "."), Sender: local + "@" + domain}
	if !validSPFDomain(r.Domain) {
		// RFC 7208 §4.3: a malformed or single-label domain gives "none"
		// before any DNS query.
		r.Result = ResultNone
		r.Reason = fmt.Sprintf("MAIL FROM domain %q is not a valid multi-label domain name", domain)
		return r
	}
	return c.check(ctx, ip, helo, r)
}

// CheckHelo checks the "HELO" identity (RFC 7208 §2.3) of a client at ip. The
// check is only made when helo is a multi-label domain name: for an address
// literal or a bare word the result is none, without DNS queries. The
// result has scope helo.
func (c *SPFChecker) CheckHelo(ctx context.Context, ip net.IP, helo string) SPFResult {
	r := SPFResult{Scope: ScopeHelo, Domain: heloDomain(helo)}
	if !validSPFDomain(r.Domain) {
		// RFC 7208 §2.3: the check "can only be performed when the HELO string
		// is a valid, multi-label domain name".
		r.Result = ResultNone
		r.Reason = fmt.Sprintf("HELO %q is not a multi-label domain name; not checked", helo)
		return r
	}
	r.Sender = "postmaster@" + r.Domain // RFC 7208 §2.3: <sender> is postmaster@<HELO>
	return c.check(ctx, ip, helo, r)
}

// check runs check_host() for r.Sender and fills r.Result and r.Reason.
func (c *SPFChecker) check(ctx context.Context, ip net.IP, helo string, r SPFResult) SPFResult {
	if ip.To16() == nil {
		r.Result = ResultPermError
		r.Reason = "no valid client IP address"
		return r
	}
	if ip4 := ip.To4(); ip4 != nil {
		ip = ip4 // RFC 7208 §5: an IPv4-mapped IPv6 client is matched as IPv4
	}
	// The library takes the domain after the first "@"; a quoted local-part
	// may hold "@" itself, so it is given without them (only the %{l} and
	// %{s} macros see the difference).
	local, domain := splitAddress(r.Sender)
	sender := strings.ReplaceAll(local, "@", "") + "@" + domain
	res, err := spf.CheckHostWithSender(ip, helo, sender,
		spf.WithResolver(&spfResolver{r: c.res, syntax: c.syntax}),
		spf.WithContext(ctx),
		spf.OverrideLookupLimit(c.lookupLimit),
		spf.OverrideVoidLookupLimit(c.voidLimit),
	)
	r.Result = Result(res)
	switch r.Result {
	case ResultNone, ResultNeutral, ResultPass, ResultFail, ResultSoftFail, ResultTempError, ResultPermError:
	default:
		r.Result = ResultPermError // unknown library value: never a pass
	}
	r.Reason = spfReason(r.Result, r.Domain, ip, err)
	return r
}

// spfReason turns a result and the library's informational error into one
// line for logs and A-R comments. It runs for every check, so the line is
// built in one concatenation (one allocation, plus the address's) instead
// of through fmt.
func spfReason(res Result, domain string, ip net.IP, err error) string {
	detail := ""
	if err != nil {
		detail = strings.TrimPrefix(err.Error(), "spf: ")
	}
	var head, mid, tail string // the line is head + mid + tail [+ ": " + detail]
	switch res {
	case ResultPass:
		head, mid, tail = ip.String(), " is authorized by ", domain
	case ResultFail:
		head, mid, tail = ip.String(), " is not authorized by ", domain
	case ResultSoftFail:
		head, mid, tail = ip.String(), " is probably not authorized by ", domain
	case ResultNeutral:
		head, mid, tail = domain, " makes no assertion about ", ip.String()
	case ResultNone:
		head, mid = domain, " has no SPF record"
		if errors.Is(err, spf.ErrNoResult) {
			detail = ""
		}
	case ResultTempError:
		head, mid = "temporary DNS error checking ", domain
	default:
		head, mid, tail = "SPF record of ", domain, " cannot be evaluated"
	}
	if detail == "" {
		return head + mid + tail
	}
	return head + mid + tail + ": " + detail
}

// heloDomain is the domain of a HELO argument: without a trailing dot.
func heloDomain(helo string) string {
	return strings.TrimSuffix(strings.TrimSpace(helo), ".")
}

// splitAddress splits a reverse-path at its last "@". The local-part may
// itself hold "@" inside quotes. Without an "@" the whole string is taken as
// the domain.
func splitAddress(addr string) (local, domain string) {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return "", addr
	}
	return addr[:i], addr[i+1:]
}

// validSPFDomain reports whether d may be checked: a multi-label domain name
// (RFC 7208 §4.3) whose labels are 1 to 63 octets, at most 253 octets in all,
// and that is not an address. d has no trailing dot.
func validSPFDomain(d string) bool {
	if d == "" || len(d) > 253 || strings.HasPrefix(d, "[") {
		return false
	}
	if _, err := netip.ParseAddr(d); err == nil {
		return false
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return false
		}
	}
	return true
}
