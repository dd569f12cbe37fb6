package mailout

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

// Reason says why a reporting URI or destination is not used. The empty
// Reason means it is used.
type Reason string

// The reasons. Those of the URI itself come from ParseRUA; the others from
// Destinations.
const (
	ReasonNone Reason = ""
	// ReasonEmpty: an empty element of the list (a stray comma).
	ReasonEmpty Reason = "empty"
	// ReasonMalformed: not a URI as RFC 9989 §4.8 allows (white space,
	// unencoded '!' or ',', bad percent-encoding, bad size suffix).
	ReasonMalformed Reason = "malformed"
	// ReasonScheme: a URI of another scheme than mailto (the only one
	// RFC 9990 defines for aggregate reports).
	ReasonScheme Reason = "unsupported-scheme"
	// ReasonAddress: a mailto URI without an address we can send to (bad
	// syntax, a domain literal, a non-ASCII local part, over the RFC 5321
	// length limits).
	ReasonAddress Reason = "bad-address"
	// ReasonMultiple: a mailto URI naming several addresses (an encoded
	// comma): one address per URI.
	ReasonMultiple Reason = "multiple-addresses"
	// ReasonDuplicate: the address was already listed.
	ReasonDuplicate Reason = "duplicate"
	// ReasonTooMany: beyond MaxURIs.
	ReasonTooMany Reason = "too-many"
	// ReasonPolicyDomain: the policy domain given is not a domain name.
	ReasonPolicyDomain Reason = "bad-policy-domain"
	// ReasonNotAuthorized: an external destination without a v=DMARC1
	// record at <policy-domain>._report._dmarc.<host> (RFC 9990 §4).
	ReasonNotAuthorized Reason = "external-not-authorized"
	// ReasonNameTooLong: <policy-domain>._report._dmarc.<host> is longer
	// than a DNS name can be (RFC 9990 §4 step 4).
	ReasonNameTooLong Reason = "external-name-too-long"
	// ReasonOverrideHost: the authorization record's rua names another host
	// (RFC 9990 §4 step 9): neither the original nor the override is used.
	ReasonOverrideHost Reason = "external-override-other-host"
	// ReasonOverridden: the destination's authorization record replaced
	// this URI with its own rua (RFC 9990 §4 step 9).
	ReasonOverridden Reason = "external-overridden"
	// ReasonTryLater: a DNS lookup needed to decide failed temporarily;
	// the destination should be tried again later.
	ReasonTryLater Reason = "try-later"
)

// ErrURI is wrapped by the Err of every URI or Destination that is not
// used; Reason says which case it is.
var ErrURI = errors.New("mailout: reporting URI not used")

// MaxURIs is the number of URIs of one rua tag that ParseRUA considers;
// the rest form one entry with ReasonTooMany. RFC 9990 §3.5 lets a receiver
// limit "supported URIs": each one costs DNS queries and a message, real
// records list one to three, and the list is chosen by whoever publishes
// the record.
const MaxURIs = 20

// Limits of RFC 5321 §4.5.3.1 on the address of a RCPT command.
const (
	maxLocalPart = 64  // RFC 5321 §4.5.3.1.1: local-part ≤ 64 octets
	maxPath      = 256 // RFC 5321 §4.5.3.1.3: path ≤ 256 octets, angle brackets included
)

// URI is one element of a rua tag.
type URI struct {
	// Raw is the element as published, surrounding white space removed.
	Raw string
	// Address is local-part@domain with the domain as lowercase A-labels
	// and the local part as decoded; set when Reason is ReasonNone.
	Address string
	// Host is the domain of Address.
	Host string
	// Reason is ReasonNone when the URI is usable.
	Reason Reason
	// Err details the reason (it wraps ErrURI); nil when usable.
	Err error
}

// ParseRUA parses the value of a rua tag: comma-separated URIs (RFC 9989
// §4.7, §4.8), of which only mailto URIs with one address are usable. A
// malformed URI is kept with its Reason, never dropped silently (RFC 9990
// §3.5: "If any of the URIs are malformed, they SHOULD be ignored"). The
// RFC 7489 "!size" suffix is accepted and ignored: RFC 9989 made it
// obsolete. Duplicate addresses are marked ReasonDuplicate. Order is kept;
// an empty value gives no URIs.
func ParseRUA(rua string) []URI {
	if trimWSP(rua) == "" {
		return nil
	}
	var out []URI
	seen := map[string]bool{}
	rest, more := rua, true
	for more {
		if len(out) == MaxURIs {
			out = append(out, bad(trimWSP(rest), ReasonTooMany, "more than %d URIs", MaxURIs))
			break
		}
		var elem string
		elem, rest, more = strings.Cut(rest, ",")
		u := parseURI(trimWSP(elem))
		if u.Reason == ReasonNone {
			if seen[u.Address] {
				u = bad(u.Raw, ReasonDuplicate, "address %s listed before", u.Address)
			}
			seen[u.Address] = true
		}
		out = append(out, u)
	}
	return out
}

func bad(raw string, r Reason, format string, args ...any) URI {
	return URI{Raw: raw, Reason: r, Err: fmt.Errorf("%w: %s: %s", ErrURI, r, fmt.Sprintf(format, args...))}
}

// parseURI parses one element.
func parseURI(raw string) URI {
	if raw == "" {
		return bad(raw, ReasonEmpty, "empty element")
	}
	u := raw
	if i := strings.LastIndexByte(u, '!'); i >= 0 {
		if !isReportSize(u[i+1:]) {
			return bad(raw, ReasonMalformed, "'!' must be percent-encoded except before a size")
		}
		u = u[:i] // RFC 9989 §4.8: the obsolete size suffix is ignored
	}
	scheme, rest, ok := strings.Cut(u, ":")
	if !ok || !isScheme(scheme) || !validURIText(rest) {
		return bad(raw, ReasonMalformed, "not a URI")
	}
	if !strings.EqualFold(scheme, "mailto") { // RFC 3986 §3.1: schemes are case-insensitive
		return bad(raw, ReasonScheme, "scheme %q", scheme)
	}
	to, _, _ := strings.Cut(rest, "?") // RFC 6068 §2: hfields (subject=, body=, to=) are not used
	addr, err := percentDecode(to)
	if err != nil {
		return bad(raw, ReasonMalformed, "%v", err)
	}
	if strings.Contains(addr, ",") && !strings.HasPrefix(addr, `"`) {
		return bad(raw, ReasonMultiple, "several addresses") // RFC 6068 §2: to = addr-spec *("," addr-spec)
	}
	local, host, err := splitAddress(addr)
	if err != nil {
		return bad(raw, ReasonAddress, "%v", err)
	}
	return URI{Raw: raw, Address: local + "@" + host, Host: host}
}

// splitAddress checks an RFC 5321 §4.1.2 Mailbox (a dot-string or
// quoted-string local part, a domain) and returns its local part and its
// domain as lowercase A-labels.
func splitAddress(addr string) (local, host string, err error) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "", "", errors.New("no '@'")
	}
	local, domain := addr[:at], addr[at+1:]
	if strings.HasPrefix(domain, "[") {
		return "", "", errors.New("address literal: no domain to verify")
	}
	if !isDotString(local) && !isQuotedString(local) {
		return "", "", fmt.Errorf("local part %q is not a dot-string or quoted-string (ASCII)", local)
	}
	if len(local) > maxLocalPart {
		return "", "", fmt.Errorf("local part longer than %d octets", maxLocalPart)
	}
	host, err = policy.NormalizeDomain(domain)
	if err != nil || strings.HasSuffix(domain, ".") {
		return "", "", fmt.Errorf("domain %q: %w", domain, policy.ErrBadDomain)
	}
	if len(local)+1+len(host)+2 > maxPath {
		return "", "", fmt.Errorf("path longer than %d octets", maxPath)
	}
	return local, host, nil
}

// isDotString is RFC 5321 §4.1.2 Dot-string: atoms of atext joined by
// single dots.
func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '.' && !isAtext(c) {
			return false
		}
	}
	return true
}

// isAtext is RFC 5322 §3.2.3 atext.
func isAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// isQuotedString is RFC 5321 §4.1.2 Quoted-string: DQUOTE *(qtextSMTP /
// quoted-pairSMTP) DQUOTE, printable ASCII only.
func isQuotedString(s string) bool {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		c := s[i]
		switch {
		case c == '\\':
			i++
			if i == len(s)-1 || s[i] < 32 || s[i] > 126 {
				return false
			}
		case c == '"' || c < 32 || c > 126:
			return false
		}
	}
	return true
}

// percentDecode decodes %XX escapes (RFC 3986 §2.1). The result must be
// UTF-8 without control characters: it becomes part of an SMTP command.
func percentDecode(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return "", errors.New("bad percent-encoding")
		}
		b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
		i += 2
	}
	out := b.String()
	if !utf8.ValidString(out) {
		return "", errors.New("percent-encoding is not UTF-8")
	}
	for _, r := range out {
		if r < 0x20 || r == 0x7f {
			return "", errors.New("control character")
		}
	}
	return out, nil
}

// validURIText checks the part after the scheme: non-empty printable ASCII
// without white space, ',', ';' or '!' (RFC 9989 §4.8: they MUST be
// percent-encoded) and with well-formed percent-encoding.
func validURIText(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c <= ' ' || c >= 0x7f || c == ',' || c == ';' || c == '!':
			return false
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
		}
	}
	return true
}

// isScheme is RFC 3986 §3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
func isScheme(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alpha := c|0x20 >= 'a' && c|0x20 <= 'z'
		if !alpha && (i == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}

// isReportSize is RFC 7489 §6.2's size suffix: 1*DIGIT [ "k" / "m" / "g" /
// "t" ].
func isReportSize(s string) bool {
	if n := len(s); n > 0 && strings.IndexByte("kmgtKMGT", s[n-1]) >= 0 {
		s = s[:n-1]
	}
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

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'f'
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c | 0x20 - 'a' + 10
}

// trimWSP trims RFC 5234 WSP and stray CR/LF from both ends.
func trimWSP(s string) string {
	return strings.Trim(s, " \t\r\n")
}
