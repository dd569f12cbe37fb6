package health

import (
	"errors"
	"strings"
)

// TermKind says whether an SPF term is a mechanism or a modifier (RFC 7208
// §4.6.1, https://datatracker.ietf.org/doc/html/rfc7208#section-4.6.1).
type TermKind string

// The term kinds.
const (
	Mechanism TermKind = "mechanism"
	Modifier  TermKind = "modifier"
)

// SPFTerm is one term of an SPF record, with what the analysis learned
// about it.
type SPFTerm struct {
	// Raw is the term as published.
	Raw  string   `json:"term"`
	Kind TermKind `json:"kind"`
	// Qualifier is "+", "-", "~" or "?" for a mechanism ("+" when omitted).
	Qualifier string `json:"qualifier,omitempty"`
	// Name is the mechanism or modifier name, lower-cased.
	Name string `json:"name"`
	// Target is the domain-spec of include, exists, a, mx, ptr and
	// redirect (without CIDR lengths), or the network of ip4/ip6.
	Target string `json:"target,omitempty"`
	// Lookup is true for the terms that cause DNS queries and count
	// against the limit of 10 (RFC 7208 §4.6.4).
	Lookup bool `json:"dns_lookup"`
	// Void is true when the term's query found nothing (NXDOMAIN or no
	// records): a void lookup of RFC 7208 §4.6.4.
	Void bool `json:"void,omitempty"`
	// MXNames is the number of MX names an mx term found.
	MXNames int `json:"mx_names,omitempty"`
	// Ignored says why evaluation never reaches the term ("after all",
	// "redirect with all"); empty when it is evaluated.
	Ignored string `json:"ignored,omitempty"`
}

// errNotSPF: the text is not an SPF record.
var errNotSPF = errors.New("health: not an SPF record")

// parseSPFTerms splits an SPF record into its terms. Terms are separated by
// spaces (RFC 7208 §4.6.1: 1*SP); every other character stays in its term,
// so a term may be malformed: the grammar is checked separately
// (verify.CheckSPFSyntax). It fails only when rec is not an SPF record.
func parseSPFTerms(rec string) ([]SPFTerm, error) {
	if len(rec) < 6 || !strings.EqualFold(rec[:6], "v=spf1") || (len(rec) > 6 && rec[6] != ' ') {
		return nil, errNotSPF // RFC 7208 §4.5: "v=spf1" then a space or the end
	}
	var out []SPFTerm
	for raw := range strings.SplitSeq(rec[6:], " ") {
		if raw != "" {
			out = append(out, parseTerm(raw))
		}
	}
	return out, nil
}

// parseTerm reads one non-empty term. A modifier is name "=" value where
// name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ) comes before any ":"
// or "/" (RFC 7208 §4.6.1); anything else is a directive.
func parseTerm(raw string) SPFTerm {
	if name, value, ok := splitModifier(raw); ok {
		t := SPFTerm{Raw: raw, Kind: Modifier, Name: strings.ToLower(name)}
		if t.Name == "redirect" || t.Name == "exp" {
			t.Target = value
		}
		t.Lookup = t.Name == "redirect" // RFC 7208 §4.6.4: redirect causes a DNS query; exp does not count
		return t
	}
	t := SPFTerm{Raw: raw, Kind: Mechanism, Qualifier: "+"}
	rest := raw
	if strings.ContainsAny(rest[:1], "+-~?") {
		t.Qualifier, rest = rest[:1], rest[1:]
	}
	name, arg := rest, ""
	if i := strings.IndexAny(rest, ":/"); i >= 0 {
		name, arg = rest[:i], rest[i:]
	}
	t.Name = strings.ToLower(name)
	switch t.Name {
	case "include", "exists", "ptr", "ip4", "ip6":
		t.Target = strings.TrimPrefix(arg, ":")
	case "a", "mx":
		t.Target = strings.TrimPrefix(stripCIDR(arg), ":")
	}
	switch t.Name {
	case "include", "a", "mx", "ptr", "exists":
		t.Lookup = true // RFC 7208 §4.6.4: the DNS-querying mechanisms
	}
	return t
}

// splitModifier returns name and value when term is a modifier.
func splitModifier(term string) (name, value string, ok bool) {
	i := strings.IndexByte(term, '=')
	if i <= 0 || !isLetter(term[0]) {
		return "", "", false
	}
	for j := 1; j < i; j++ {
		c := term[j]
		if !isLetter(c) && !(c >= '0' && c <= '9') && c != '-' && c != '_' && c != '.' {
			return "", "", false
		}
	}
	return term[:i], term[i+1:], true
}

// stripCIDR removes the dual-cidr-length of an a or mx argument
// (RFC 7208 §5.3, §5.4): "/" digits, "//" digits, or both, at the end.
func stripCIDR(arg string) string {
	if i := strings.LastIndex(arg, "//"); i >= 0 && digits(arg[i+2:]) {
		arg = arg[:i]
	}
	if i := strings.LastIndexByte(arg, '/'); i >= 0 && digits(arg[i+1:]) {
		arg = arg[:i]
	}
	return arg
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

// hasMacro reports whether a domain-spec holds a macro expansion (RFC 7208
// §7): such a name depends on the message and cannot be looked up here.
func hasMacro(s string) bool { return strings.ContainsRune(s, '%') }
