package policy

import (
	"errors"
	"strings"

	"golang.org/x/net/idna"
)

// ErrBadDomain is returned (wrapped) for a name that is not a usable DNS
// domain name.
var ErrBadDomain = errors.New("policy: not a valid domain name")

// NormalizeDomain returns d in the one form this package compares and
// queries: lowercase A-labels without a trailing dot. RFC 9989 §5.3.1: a
// U-label MUST be converted to an A-label (RFC 5890 §2.3); comparisons are
// case-insensitive (RFC 9989 §4.4, RFC 4343). One trailing dot (an
// absolute name) is accepted. Labels may hold letters, digits, '-' and '_'.
func NormalizeDomain(d string) (string, error) {
	d = strings.TrimSuffix(d, ".")
	if d == "" {
		return "", ErrBadDomain
	}
	if !isASCII(d) {
		a, err := idna.Lookup.ToASCII(d) // RFC 9989 §5.3.1: the domain MUST be converted to an A-label
		if err != nil {
			return "", ErrBadDomain
		}
		d = a
	}
	d = lowerASCII(d)
	if !validHostname(d) {
		return "", ErrBadDomain
	}
	return d, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// lowerASCII lowercases ASCII letters; it does not allocate when s is
// already lowercase.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// validHostname checks the RFC 1035 §2.3.4 limits (labels of 1-63 octets,
// 253 octets in all) and a letter-digit-hyphen-underscore alphabet.
func validHostname(d string) bool {
	if len(d) > 253 {
		return false
	}
	n := 0
	for i := 0; i < len(d); i++ {
		c := d[i]
		switch {
		case c == '.':
			if n == 0 {
				return false
			}
			n = 0
			continue
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
		n++
		if n > 63 {
			return false
		}
	}
	return n > 0
}

// normalizeOrKeep normalizes d, or returns it lowercased when it is not a
// valid name (such a name never aligns with a valid Author Domain).
func normalizeOrKeep(d string) string {
	if n, err := NormalizeDomain(d); err == nil {
		return n
	}
	return strings.ToLower(strings.TrimSuffix(d, "."))
}

// isSubdomainOrSelf reports whether d equals parent or lies below it. Both
// must be normalized.
func isSubdomainOrSelf(d, parent string) bool {
	return d == parent || strings.HasSuffix(d, "."+parent)
}

// countLabels returns the number of labels of a normalized name.
func countLabels(d string) int { return strings.Count(d, ".") + 1 }

// lastLabels returns the name made of the right-most n labels of d.
func lastLabels(d string, n int) string {
	i := len(d)
	for ; n > 0 && i > 0; n-- {
		j := strings.LastIndexByte(d[:i], '.')
		if j < 0 {
			return d
		}
		i = j
	}
	if i == len(d) {
		return ""
	}
	return d[i+1:]
}

// parentDomain returns d without its left-most label, or "" for a single
// label.
func parentDomain(d string) string {
	i := strings.IndexByte(d, '.')
	if i < 0 {
		return ""
	}
	return d[i+1:]
}
