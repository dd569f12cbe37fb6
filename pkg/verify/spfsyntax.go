package verify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// spfResolver sits between blitiri.com.ar/go/spf and the real resolver. It
// adds two rules of RFC 7208 that the library does not apply:
//
//   - §4.6: a
//     record with a syntax error anywhere gives permerror, even when
//     a term before the error would have matched. The library only finds an
//     error when it reaches the term. Every TXT query the library makes is
//     for an SPF record (it ignores exp=), so the record is checked here,
//     when it is fetched, and a record that does not parse is returned as an
//     error that is not a *net.DNSError, which the library maps to permerror.
//   - §4.8: a name longer than 253 octets after macro expansion is truncated
//     from the left, label by label.
//
// Errors from the real resolver are passed on unwrapped: the library
// classifies them with type assertions.
type spfResolver struct {
	r      Resolver
	syntax *spfSyntaxCache // nil: check every record
}

// SPFSyntaxError is returned (through the SPF library) when a fetched SPF
// record does not follow the grammar of RFC 7208 §12.
type SPFSyntaxError struct {
	Domain string // where the record was found
	Term   string // the offending term, "" for the record as a whole
	Msg    string
}

func (e *SPFSyntaxError) Error() string {
	if e.Term == "" {
		return fmt.Sprintf("syntax error in SPF record of %s: %s", e.Domain, e.Msg)
	}
	return fmt.Sprintf("syntax error in SPF record of %s: term %q: %s", e.Domain, e.Term, e.Msg)
}

func (s *spfResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	name, err := spfQueryName(name)
	if err != nil {
		return nil, err
	}
	txts, err := s.r.LookupTXT(ctx, name)
	if err != nil {
		return txts, err
	}
	var recs []string
	for _, t := range txts {
		if isSPFRecord(t) {
			recs = append(recs, t)
		}
	}
	if len(recs) == 1 { // none: "none"; several: the library's permerror
		if se := s.syntax.get(recs[0], syntaxError); se != nil {
			e := *se // the cached error is shared: the domain goes on a copy
			e.Domain = strings.TrimSuffix(name, ".")
			return nil, &e
		}
	}
	return txts, nil
}

// spfSyntaxCache remembers the outcome of checkSPFRecord (nil: well-formed)
// per record text: 1024 records of at most 1024 octets, about 1 MB in all.
type spfSyntaxCache = textMemo[*SPFSyntaxError]

const (
	spfSyntaxCacheEntries = 1024
	spfSyntaxCacheMaxLen  = 1024
)

// newSPFSyntaxCache returns an empty cache; its map is made on first use.
func newSPFSyntaxCache() *spfSyntaxCache {
	return newTextMemo[*SPFSyntaxError](spfSyntaxCacheEntries, spfSyntaxCacheMaxLen)
}

// syntaxError is checkSPFRecord with its concrete error type.
func syntaxError(rec string) *SPFSyntaxError {
	var se *SPFSyntaxError
	if err := checkSPFRecord(rec); err != nil && !errors.As(err, &se) {
		se = &SPFSyntaxError{Msg: err.Error()} // not reached: checkSPFRecord returns *SPFSyntaxError
	}
	return se
}

func (s *spfResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	name, err := spfQueryName(name)
	if err != nil {
		return nil, err
	}
	return s.r.LookupMX(ctx, name)
}

func (s *spfResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	host, err := spfQueryName(host)
	if err != nil {
		return nil, err
	}
	return s.r.LookupIPAddr(ctx, host)
}

func (s *spfResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	return s.r.LookupAddr(ctx, addr)
}

// spfQueryName applies RFC 7208 §4.8 to a name about to be queried, and
// refuses names that cannot be sent (an empty label, a label over 63
// octets) as "does not exist": such a name has no records.
func spfQueryName(name string) (string, error) {
	name = strings.TrimSuffix(name, ".")
	// RFC 7208 §4.8: "if the expanded domain name exceeds 253 characters …,
	// the left side is truncated to fit, by removing successive domain labels
	// (and their following dots)".
	for len(name) > 253 {
		i := strings.IndexByte(name, '.')
		if i < 0 {
			break
		}
		name = name[i+1:]
	}
	if name == "" || len(name) > 253 {
		return "", &net.DNSError{Err: "invalid domain name", Name: name, IsNotFound: true}
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 {
			return "", &net.DNSError{Err: "invalid domain name", Name: name, IsNotFound: true}
		}
	}
	return name, nil
}

// isSPFRecord applies the record selection of RFC 7208 §4.5: "v=spf1"
// followed by a space or the end of the record, case-insensitively.
func isSPFRecord(txt string) bool {
	if len(txt) < 6 || !strings.EqualFold(txt[:6], "v=spf1") {
		return false
	}
	return len(txt) == 6 || txt[6] == ' '
}

// checkSPFRecord checks a record against the ABNF of RFC 7208 §12 and the
// rules of §6 (at most one redirect= and one exp=) and §7.1 (macro letters
// c, r, t only in exp text). It returns a *SPFSyntaxError or nil.
func checkSPFRecord(rec string) error {
	if !isSPFRecord(rec) {
		return &SPFSyntaxError{Msg: "record does not start with v=spf1"}
	}
	seen := map[string]bool{}
	for _, term := range strings.Split(rec[6:], " ") { // RFC 7208 §4.6.1: terms are separated by SP only
		if term == "" {
			continue
		}
		var err error
		if name, val, ok := modifierParts(term); ok {
			lname := strings.ToLower(name)
			if (lname == "redirect" || lname == "exp") && seen[lname] {
				// RFC 7208 §6: redirect and exp "MUST NOT appear in a record more than once each"
				err = errors.New("modifier appears more than once")
			} else {
				seen[lname] = true
				err = checkModifier(lname, val)
			}
		} else {
			err = checkDirective(term)
		}
		if err != nil {
			return &SPFSyntaxError{Term: term, Msg: err.Error()}
		}
	}
	return nil
}

// modifierParts splits name=value when term is a modifier: name = ALPHA
// *( ALPHA / DIGIT / "-" / "_" / "." ), before any ":" or "/".
func modifierParts(term string) (name, value string, ok bool) {
	i := strings.IndexByte(term, '=')
	if i <= 0 {
		return "", "", false
	}
	name = term[:i]
	if !isAlpha(name[0]) {
		return "", "", false
	}
	for j := 1; j < len(name); j++ {
		c := name[j]
		if !isAlpha(c) && !isDigit(c) && c != '-' && c != '_' && c != '.' {
			return "", "", false
		}
	}
	return name, term[i+1:], true
}

func checkModifier(lname, val string) error {
	switch lname {
	case "redirect":
		return checkDomainSpec(val, false)
	case "exp":
		return checkDomainSpec(val, false)
	default:
		return checkMacroString(val, true) // unknown-modifier = name "=" macro-string
	}
}

func checkDirective(term string) error {
	if strings.ContainsAny(term[:1], "+-?~") {
		term = term[1:]
	}
	name, arg := term, ""
	if i := strings.IndexAny(term, ":/"); i >= 0 {
		name, arg = term[:i], term[i:]
	}
	switch strings.ToLower(name) {
	case "all":
		if arg != "" {
			return errors.New("all takes no argument")
		}
		return nil
	case "include", "exists":
		if !strings.HasPrefix(arg, ":") {
			return fmt.Errorf("%s needs :domain-spec", name)
		}
		return checkDomainSpec(arg[1:], false)
	case "a", "mx":
		return checkAorMX(arg)
	case "ptr":
		if arg == "" {
			return nil
		}
		if arg[0] != ':' {
			return errors.New("ptr takes no CIDR length")
		}
		return checkDomainSpec(arg[1:], false)
	case "ip4":
		return checkIP(arg, true)
	case "ip6":
		return checkIP(arg, false)
	}
	return errors.New("unknown mechanism")
}

// checkAorMX checks [ ":" domain-spec ] [ dual-cidr-length ]. A
// domain-spec may itself hold "/" and ":" (macro-literal), so the CIDR
// lengths are taken from the end: "//" digits, then "/" digits.
func checkAorMX(arg string) error {
	rest := arg
	if i := strings.LastIndex(rest, "//"); i >= 0 && allDigits(rest[i+2:]) {
		if err := checkCIDR(rest[i+2:], 128); err != nil {
			return err
		}
		rest = rest[:i]
	}
	if i := strings.LastIndexByte(rest, '/'); i >= 0 && allDigits(rest[i+1:]) {
		if err := checkCIDR(rest[i+1:], 32); err != nil {
			return err
		}
		rest = rest[:i]
	}
	if rest == "" {
		return nil
	}
	if rest[0] != ':' {
		return errors.New("bad argument")
	}
	return checkDomainSpec(rest[1:], false)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// checkCIDR checks a cidr length: "0" / %x31-39 0*nDIGIT, at most max.
func checkCIDR(s string, max int) error {
	if s == "" || len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return fmt.Errorf("bad CIDR length %q", s)
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return fmt.Errorf("bad CIDR length %q", s)
		}
	}
	if n, _ := strconv.Atoi(s); n > max {
		return fmt.Errorf("CIDR length %s over %d", s, max)
	}
	return nil
}

func checkIP(arg string, v4 bool) error {
	if !strings.HasPrefix(arg, ":") {
		return errors.New("needs :address")
	}
	addr, cidr, hasCIDR := strings.Cut(arg[1:], "/")
	max := 32
	if v4 {
		if !isIP4Network(addr) {
			return fmt.Errorf("bad IPv4 address %q", addr)
		}
	} else {
		a, err := netip.ParseAddr(addr)
		if err != nil || !strings.Contains(addr, ":") || a.Zone() != "" {
			return fmt.Errorf("bad IPv6 address %q", addr)
		}
		max = 128
	}
	if hasCIDR {
		return checkCIDR(cidr, max)
	}
	return nil
}

// isIP4Network checks qnum "." qnum "." qnum "." qnum (no leading zeros).
func isIP4Network(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		if p == "" || len(p) > 3 || (len(p) > 1 && p[0] == '0') {
			return false
		}
		for i := 0; i < len(p); i++ {
			if !isDigit(p[i]) {
				return false
			}
		}
		if n, _ := strconv.Atoi(p); n > 255 {
			return false
		}
	}
	return true
}

// checkDomainSpec checks domain-spec = macro-string domain-end, where
// domain-end = ( "." toplabel [ "." ] ) / macro-expand.
func checkDomainSpec(s string, exp bool) error {
	if s == "" {
		return errors.New("empty domain-spec")
	}
	if err := checkMacroString(s, exp); err != nil {
		return err
	}
	if endsWithMacroExpand(s) {
		return nil
	}
	t := strings.TrimSuffix(s, ".")
	i := strings.LastIndexByte(t, '.')
	if i < 0 {
		return errors.New("domain-spec does not end in a dot and a top label")
	}
	if !isTopLabel(t[i+1:]) {
		return fmt.Errorf("bad top label %q", t[i+1:])
	}
	return nil
}

// endsWithMacroExpand reports whether the (valid) macro-string s ends with a
// macro-expand: "%{…}", "%%", "%_" or "%-".
func endsWithMacroExpand(s string) bool {
	// Walk the string so that "%%}" style sequences are read left to right.
	last := false
	for i := 0; i < len(s); i++ {
		last = false
		if s[i] != '%' || i+1 >= len(s) {
			continue
		}
		switch s[i+1] {
		case '%', '_', '-':
			i++
			last = i == len(s)-1
		case '{':
			j := strings.IndexByte(s[i:], '}')
			if j < 0 {
				return false
			}
			i += j
			last = i == len(s)-1
		}
	}
	return last
}

// isTopLabel checks toplabel = ( *alphanum ALPHA *alphanum ) /
// ( 1*alphanum "-" *( alphanum / "-" ) alphanum ).
func isTopLabel(l string) bool {
	if l == "" || len(l) > 63 {
		return false
	}
	alpha, hyphen := false, false
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case isAlpha(c):
			alpha = true
		case isDigit(c):
		case c == '-':
			hyphen = true
		default:
			return false
		}
	}
	if !hyphen {
		return alpha
	}
	return l[0] != '-' && l[len(l)-1] != '-'
}

// checkMacroString checks macro-string = *( macro-expand / macro-literal ).
// Macro letters c, r and t are allowed only in exp text (RFC 7208 §7.1).
func checkMacroString(s string, exp bool) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			if c < 0x21 || c > 0x7e { // macro-literal = %x21-24 / %x26-7E
				return fmt.Errorf("invalid character %q", c)
			}
			continue
		}
		if i+1 >= len(s) {
			return errors.New("lone % at end")
		}
		switch s[i+1] {
		case '%', '_', '-':
			i++
			continue
		case '{':
		default:
			return fmt.Errorf("invalid macro %%%c", s[i+1])
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return errors.New("unterminated macro")
		}
		if err := checkMacroBody(s[i+2:i+j], exp); err != nil {
			return err
		}
		i += j
	}
	return nil
}

// checkMacroBody checks macro-letter transformers *delimiter, the text
// between "%{" and "}".
func checkMacroBody(b string, exp bool) error {
	if b == "" {
		return errors.New("empty macro")
	}
	switch strings.ToLower(b[:1]) {
	case "s", "l", "o", "d", "i", "p", "h", "v":
	case "c", "r", "t":
		if !exp {
			// RFC 7208 §7.1: "The following macro letters are allowed only in "exp" text: c, r, t"
			return fmt.Errorf("macro letter %q is only allowed in exp text", b[:1])
		}
	default:
		return fmt.Errorf("unknown macro letter %q", b[:1])
	}
	rest := b[1:]
	n := 0
	for n < len(rest) && isDigit(rest[n]) {
		n++
	}
	if n > 0 {
		if v, err := strconv.Atoi(rest[:n]); err != nil || v == 0 {
			// RFC 7208 §7.1: "If a DIGIT is specified, the value MUST be nonzero."
			return fmt.Errorf("bad macro digits %q", rest[:n])
		}
	}
	rest = rest[n:]
	if rest != "" && (rest[0] == 'r' || rest[0] == 'R') {
		rest = rest[1:]
	}
	for i := 0; i < len(rest); i++ {
		if !strings.ContainsRune(".-+,/_=", rune(rest[i])) {
			return fmt.Errorf("bad macro delimiter %q", rest[i])
		}
	}
	return nil
}

func isAlpha(c byte) bool { return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
