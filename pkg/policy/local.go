package policy

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// Mode is the enforcement mode of the local policy.
type Mode string

// The modes.
const (
	// ModeEnforce applies the decided action (the default).
	ModeEnforce Mode = "enforce"
	// ModeMonitor evaluates and records everything but always accepts; the
	// action enforce mode would have taken stays in Verdict.EnforceAction.
	ModeMonitor Mode = "monitor"
)

// RejectHandling is what a failing message under an effective p=reject gets.
type RejectHandling string

// The reject handlings. RFC 9989 §7.4: receivers "MUST NOT reject incoming messages solely on the basis of a p=reject
// policy" and, "in the absence of other knowledge and analysis", MUST treat
// such mail as p=quarantine.
const (
	// RejectReject rejects: the operator takes responsibility for the other
	// knowledge §7.4 asks for.
	RejectReject RejectHandling = "reject"
	// RejectQuarantine always quarantines instead (§7.4 without other
	// knowledge).
	RejectQuarantine RejectHandling = "quarantine"
	// RejectUnlessIndirect (the default) rejects unless the message shows
	// signs of an indirect flow: list headers count as evidence
	// (mailing_list), beside the trusted forwarders and ARC sealers that
	// count under every handling (trusted_forwarder); what the evidence
	// does is LocalPolicy.Indirect.
	RejectUnlessIndirect RejectHandling = "reject-unless-indirect"
)

// TempErrorHandling is what a message gets when DMARC ends in temperror and
// the policy could matter.
type TempErrorHandling string

// The temperror handlings.
const (
	TempErrorTempFail TempErrorHandling = "tempfail" // 4yz reply, the default (RFC 9989 §7.2: defer with a 4xy code)
	TempErrorAccept   TempErrorHandling = "accept"   // deliver with dmarc=temperror
)

// FromOutcome is the configured handling of an irregular From.
type FromOutcome string

// The From outcomes.
const (
	// FromEvaluate applies DMARC to every distinct Author Domain and the
	// strictest result (RFC 7489 §6.6.1, RFC 9989 §11.5). Only for several
	// fields or domains.
	FromEvaluate FromOutcome = "evaluate"
	// FromReject rejects with dmarc=permerror.
	FromReject FromOutcome = "reject"
	// FromQuarantine quarantines (and still evaluates the domains there
	// are, at most MaxDomains of them, the stricter action winning).
	FromQuarantine FromOutcome = "quarantine"
	// FromAccept delivers with dmarc=permerror: an explicit opt-out.
	FromAccept FromOutcome = "accept"
)

// FromPolicy maps each irregular From to an outcome. The defaults never let
// such a message skip DMARC: several fields or domains are evaluated, a
// missing, empty or unparseable From is rejected.
type FromPolicy struct {
	// MultipleFields: more than one From field (RFC 5322 §3.6 allows one).
	// Default FromEvaluate.
	MultipleFields FromOutcome
	// MultipleDomains: mailboxes from more than one Author Domain (RFC 9989
	// §5.3.1: the receiver MAY go forward with DMARC anyway). Default
	// FromEvaluate.
	MultipleDomains FromOutcome
	// TooManyDomains: more than MaxDomains Author Domains (RFC 9989 §11.5:
	// limit them). FromReject rejects and FromAccept delivers, both with
	// permerror and without evaluation; FromQuarantine evaluates the first
	// MaxDomains only and quarantines unless they give a stricter action.
	// Default FromReject.
	TooManyDomains FromOutcome
	// NoMailbox: From fields holding only empty groups. Default FromReject.
	NoMailbox FromOutcome
	// Missing: no From field. Default FromReject.
	Missing FromOutcome
	// Unparseable: a From field that does not parse. Default FromReject.
	Unparseable FromOutcome
	// MaxDomains bounds the Author Domains looked up and evaluated: the
	// first MaxDomains in From order. Default 5.
	MaxDomains int
}

// TrustedForwarders are the forwarders whose mail, when it fails DMARC, is
// handled as LocalPolicy.Indirect says (RFC 9990 override reason
// trusted_forwarder).
type TrustedForwarders struct {
	// Networks are the forwarders' client addresses.
	Networks []netip.Prefix
	// DKIMDomains are signing domains (d=) of forwarders; a passing
	// signature with exactly this d= marks the message.
	DKIMDomains []string
	// ARCSealers are ARC sealing domains (ARC-Seal d=, exactly): a chain
	// that passed, whose newest sealers are all trusted and whose oldest
	// trusted set's assessment shows the message passed DMARC for the
	// Author Domain there, marks the message (ReasonTrustedARCSealer).
	ARCSealers []string
}

// LocalPolicy is the receiver's own policy on top of DMARC, as data: the
// milter fills it from its configuration. The zero value means the
// defaults.
type LocalPolicy struct {
	// Mode: ModeEnforce (default) or ModeMonitor.
	Mode Mode
	// OnReject: default RejectUnlessIndirect.
	OnReject RejectHandling
	// OnTempError: default TempErrorTempFail.
	OnTempError TempErrorHandling
	// AllowFrom lists Author Domains (and their subdomains) whose failing
	// mail is delivered (ReasonAllowFrom).
	AllowFrom []string
	// AllowNetworks are client networks whose mail is evaluated but never
	// enforced (ReasonAllowNetwork), like monitor mode for those clients.
	AllowNetworks []netip.Prefix
	// Forwarders are trusted forwarders.
	Forwarders TrustedForwarders
	// Indirect is what evidence of an indirect flow does: default
	// IndirectQuarantine.
	Indirect IndirectHandling
	// IgnorePct disables pct= sampling. RFC 9989 made pct historic (its
	// Appendix A.6 and C.5.2); by default it is still honoured, as RFC 7489
	// §6.6.4 requires and as domain owners publishing it expect.
	IgnorePct bool
	// From maps irregular From fields to outcomes.
	From FromPolicy
}

// WithDefaults returns l with every zero field set to its default and the
// domains normalized.
func (l LocalPolicy) WithDefaults() LocalPolicy {
	def := func(v *FromOutcome, d FromOutcome) {
		if *v == "" {
			*v = d
		}
	}
	if l.Mode == "" {
		l.Mode = ModeEnforce
	}
	if l.OnReject == "" {
		l.OnReject = RejectUnlessIndirect
	}
	if l.OnTempError == "" {
		l.OnTempError = TempErrorTempFail
	}
	if l.Indirect == "" {
		l.Indirect = IndirectQuarantine
	}
	f := &l.From
	def(&f.MultipleFields, FromEvaluate)
	def(&f.MultipleDomains, FromEvaluate)
	def(&f.TooManyDomains, FromReject)
	def(&f.NoMailbox, FromReject)
	def(&f.Missing, FromReject)
	def(&f.Unparseable, FromReject)
	if f.MaxDomains <= 0 {
		f.MaxDomains = 5
	}
	l.AllowFrom = normalizeAll(l.AllowFrom)
	l.Forwarders.DKIMDomains = normalizeAll(l.Forwarders.DKIMDomains)
	l.Forwarders.ARCSealers = normalizeAll(l.Forwarders.ARCSealers)
	return l
}

// normalizeAll returns the names normalized; in itself when they already
// are (so that a policy the milter prepared once is not copied per message).
func normalizeAll(in []string) []string {
	done := true
	for _, d := range in {
		if n, err := NormalizeDomain(d); err != nil || n != d {
			done = false
			break
		}
	}
	if done {
		return in
	}
	out := make([]string, 0, len(in))
	for _, d := range in {
		out = append(out, normalizeOrKeep(d))
	}
	return out
}

// Validate reports the first invalid field of l (after defaults).
func (l LocalPolicy) Validate() error {
	l = l.WithDefaults()
	for _, err := range []error{l.Mode.Valid(), l.OnReject.Valid(), l.OnTempError.Valid(), l.Indirect.Valid(), l.From.Validate()} {
		if err != nil {
			return fmt.Errorf("policy: %w", err)
		}
	}
	for _, d := range append(append(append([]string(nil), l.AllowFrom...), l.Forwarders.DKIMDomains...), l.Forwarders.ARCSealers...) {
		if _, err := NormalizeDomain(d); err != nil {
			return fmt.Errorf("policy: domain %q: %w", d, err)
		}
	}
	return nil
}

// Validate reports the first invalid field of f, named by its
// configuration key (multiple_fields, ..., max_domains): several fields or
// domains may be evaluated, the other conditions only decided.
func (f FromPolicy) Validate() error {
	for _, o := range []struct {
		key        string
		v          FromOutcome
		evaluateOK bool
	}{
		{"multiple_fields", f.MultipleFields, true},
		{"multiple_domains", f.MultipleDomains, true},
		{"too_many_domains", f.TooManyDomains, false},
		{"no_mailbox", f.NoMailbox, false},
		{"missing", f.Missing, false},
		{"unparseable", f.Unparseable, false},
	} {
		allowed := []FromOutcome{FromReject, FromQuarantine, FromAccept}
		if o.evaluateOK {
			allowed = append([]FromOutcome{FromEvaluate}, allowed...)
		}
		if err := oneOf(o.v, allowed...); err != nil {
			return fmt.Errorf("%s: %w", o.key, err)
		}
	}
	if f.MaxDomains < 1 || f.MaxDomains > maxFromDomains {
		return fmt.Errorf("max_domains: %d is outside 1..%d", f.MaxDomains, maxFromDomains)
	}
	return nil
}

// maxFromDomains bounds FromPolicy.MaxDomains (RFC 9989 §11.5: bounded work
// on hostile input).
const maxFromDomains = 50

// Valid reports whether m is a known mode.
func (m Mode) Valid() error { return oneOf(m, ModeEnforce, ModeMonitor) }

// UnmarshalText accepts the known modes only (configuration files).
func (m *Mode) UnmarshalText(b []byte) error { return unmarshalEnum(m, b) }

// MarshalText writes the mode.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m), nil }

// Valid reports whether h is a known reject handling.
func (h RejectHandling) Valid() error {
	return oneOf(h, RejectReject, RejectQuarantine, RejectUnlessIndirect)
}

// UnmarshalText accepts the known reject handlings only.
func (h *RejectHandling) UnmarshalText(b []byte) error { return unmarshalEnum(h, b) }

// MarshalText writes the reject handling.
func (h RejectHandling) MarshalText() ([]byte, error) { return []byte(h), nil }

// Valid reports whether h is a known temperror handling.
func (h TempErrorHandling) Valid() error { return oneOf(h, TempErrorTempFail, TempErrorAccept) }

// UnmarshalText accepts the known temperror handlings only.
func (h *TempErrorHandling) UnmarshalText(b []byte) error { return unmarshalEnum(h, b) }

// MarshalText writes the temperror handling.
func (h TempErrorHandling) MarshalText() ([]byte, error) { return []byte(h), nil }

// Valid reports whether o is a known From outcome (FromPolicy.Validate
// says which outcome each condition allows).
func (o FromOutcome) Valid() error {
	return oneOf(o, FromEvaluate, FromReject, FromQuarantine, FromAccept)
}

// UnmarshalText accepts the known From outcomes only.
func (o *FromOutcome) UnmarshalText(b []byte) error { return unmarshalEnum(o, b) }

// MarshalText writes the From outcome.
func (o FromOutcome) MarshalText() ([]byte, error) { return []byte(o), nil }

// enum is a string type of this package with a fixed set of values.
type enum interface {
	~string
	Valid() error
}

// unmarshalEnum sets *p to b when b is one of its values.
func unmarshalEnum[T enum](p *T, b []byte) error {
	v := T(b)
	if err := v.Valid(); err != nil {
		return err
	}
	*p = v
	return nil
}

// oneOf returns an error naming the allowed values unless v is one of them.
func oneOf[T ~string](v T, allowed ...T) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	return fmt.Errorf("unknown value %q (want %s)", string(v), strings.Join(names, ", "))
}

// allowlisted reports whether the Author Domain is covered by AllowFrom.
func (l *LocalPolicy) allowlisted(domain string) (string, bool) {
	for _, a := range l.AllowFrom {
		if isSubdomainOrSelf(domain, a) {
			return a, true
		}
	}
	return "", false
}

// trustedForwarder says whether the message came from a trusted forwarder,
// as the override to record.
func (l *LocalPolicy) trustedForwarder(in *Input) (Override, bool) {
	if n, ok := inNetworks(l.Forwarders.Networks, in.SourceIP); ok {
		return Override{Reason: ReasonTrustedForwarderNetwork, Comment: "client " + in.SourceIP.Unmap().String() + " in " + n.String()}, true
	}
	for _, s := range in.DKIM {
		if s.Result != verify.ResultPass {
			continue
		}
		d := normalizeOrKeep(s.Domain)
		for _, f := range l.Forwarders.DKIMDomains {
			if d == f {
				return Override{Reason: ReasonTrustedForwarderDKIM, Comment: "valid DKIM signature d=" + d}, true
			}
		}
	}
	return Override{}, false
}

// allowedNetwork returns the AllowNetworks prefix ip is in.
func (l *LocalPolicy) allowedNetwork(ip netip.Addr) (netip.Prefix, bool) {
	return inNetworks(l.AllowNetworks, ip)
}

// inNetworks returns the first of ns that holds ip (IPv4-mapped IPv6
// addresses as IPv4).
func inNetworks(ns []netip.Prefix, ip netip.Addr) (netip.Prefix, bool) {
	if !ip.IsValid() {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap()
	for _, n := range ns {
		if n.Contains(ip) {
			return n, true
		}
	}
	return netip.Prefix{}, false
}

// outcomeRank orders From outcomes from the most lenient to the strictest.
func outcomeRank(o FromOutcome) int {
	switch o {
	case FromEvaluate:
		return 1
	case FromQuarantine:
		return 2
	case FromReject:
		return 3
	}
	return 0 // FromAccept
}
