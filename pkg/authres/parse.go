package authres

import (
	"errors"
	"fmt"
	"strings"
)

// ErrSyntax is returned (wrapped) by Parse for a field it cannot read.
var ErrSyntax = errors.New("authres: syntax error")

// AuthservID returns the authserv-id of an Authentication-Results field
// value: the first token or quoted string after optional CFWS (RFC 8601
// §2.2 "authres-payload = [CFWS] authserv-id ...",
// https://datatracker.ietf.org/doc/html/rfc8601#section-2.2; token and quoted-string as in RFC 2045
// §5.1, https://datatracker.ietf.org/doc/html/rfc2045#section-5.1, and RFC 5322 §3.2.4,
// https://datatracker.ietf.org/doc/html/rfc5322#section-3.2.4). ok is false when the
// value does not start with one.
func AuthservID(value string) (id string, ok bool) {
	l := lexer{s: value}
	if err := l.cfws(); err != nil {
		return "", false
	}
	if !l.eof() && l.peek() == '"' {
		id, err := l.value()
		return id, err == nil && id != ""
	}
	// RFC 2045 token: stop at the first tspecial, so that a forged
	// "ours/x; dmarc=pass" still counts as carrying our id.
	start := l.pos
	for !l.eof() && isTokenChar(l.peek()) {
		l.pos++
	}
	return l.s[start:l.pos], l.pos > start
}

// IsOurs reports whether an Authentication-Results value carries the
// authserv-id id, the check RFC 8601 §5 requires before our own field is
// added. The id is normally a host name, so it is compared the way DNS names
// are (case-insensitively, RFC 4343 §3), ignoring a trailing dot; and the
// value's id ends at the first tspecial, so a sloppy "ours/x" or "ours(c)"
// counts as ours. RFC 4343: https://datatracker.ietf.org/doc/html/rfc4343#section-3
//
// It fails closed: a value whose authserv-id cannot be read at all (broken
// comments, no token) counts as ours when it contains id anywhere, since a
// more lenient reader downstream might find it there.
func IsOurs(value, id string) bool {
	got, ok := AuthservID(value)
	if !ok {
		return id != "" && strings.Contains(strings.ToLower(value), strings.ToLower(strings.TrimSuffix(id, ".")))
	}
	return strings.EqualFold(strings.TrimSuffix(got, "."), strings.TrimSuffix(id, "."))
}

func isTokenChar(c byte) bool {
	return c > ' ' && c < 0x7f && strings.IndexByte(`()<>@,;:\"/[]?=`, c) < 0
}

// Parse reads a whole Authentication-Results field value. Comments are
// skipped; a result's properties are returned keyed "ptype.property". The
// authres-version, if present, must be 1.
func Parse(value string) (authservID string, results []Result, err error) {
	l := lexer{s: value}
	if authservID, err = l.idAndVersion(); err != nil {
		return "", nil, err
	}
	seen := false
	for {
		if err := l.cfws(); err != nil {
			return "", nil, err
		}
		if l.eof() && seen {
			return authservID, results, nil
		}
		// RFC 8601 §2.2: no-result or at least one resinfo must follow.
		if !l.accept(';') {
			return "", nil, l.errorf("want ';'")
		}
		seen = true
		r, none, err := l.resinfo()
		if err != nil {
			return "", nil, err
		}
		if !none {
			results = append(results, r)
		}
	}
}

func (l *lexer) idAndVersion() (string, error) {
	if err := l.cfws(); err != nil {
		return "", err
	}
	id, err := l.value()
	if err != nil {
		return "", err
	}
	if id == "" {
		return "", l.errorf("empty authserv-id")
	}
	if err := l.cfws(); err != nil {
		return "", err
	}
	if !l.eof() && l.peek() >= '0' && l.peek() <= '9' {
		if v := l.token(); v != "1" {
			return "", l.errorf("unsupported version %q", v)
		}
	}
	return id, nil
}

// resinfo reads "method=result [reason=...] [ptype.prop=value ...]" after
// the semicolon; none reports the "none" no-result form.
func (l *lexer) resinfo() (r Result, none bool, err error) {
	if err := l.cfws(); err != nil {
		return r, false, err
	}
	r.Method = strings.ToLower(l.token())
	if r.Method == "" {
		return r, false, l.errorf("want a method")
	}
	if err := l.cfws(); err != nil {
		return r, false, err
	}
	if r.Method == "none" && (l.eof() || l.peek() == ';') {
		return r, true, nil
	}
	if !l.accept('=') {
		return r, false, l.errorf("want '=' after %q", r.Method)
	}
	if err := l.cfws(); err != nil {
		return r, false, err
	}
	if r.Value = strings.ToLower(l.token()); r.Value == "" {
		return r, false, l.errorf("want a result for %q", r.Method)
	}
	return r, false, l.props(&r)
}

// props reads the reason and the properties up to the next ';'.
func (l *lexer) props(r *Result) error {
	for {
		if err := l.cfws(); err != nil {
			return err
		}
		if l.eof() || l.peek() == ';' {
			return nil
		}
		key := strings.ToLower(l.token())
		if key == "" {
			return l.errorf("want a property")
		}
		if err := l.cfws(); err != nil {
			return err
		}
		if !l.accept('=') {
			return l.errorf("want '=' after %q", key)
		}
		if err := l.cfws(); err != nil {
			return err
		}
		v, err := l.value()
		if err != nil {
			return err
		}
		// RFC 8601 §2.2 pvalue: a quoted local-part may be followed by
		// "@" domain-name.
		if !l.eof() && l.peek() == '@' {
			v += l.token()
		}
		if key == "reason" {
			r.Reason = v
			continue
		}
		if !strings.Contains(key, ".") {
			return l.errorf("property %q has no ptype", key)
		}
		if r.Props == nil {
			r.Props = map[string]string{}
		}
		r.Props[key] = v
	}
}

// lexer reads RFC 5322 / RFC 2045 lexical tokens.
type lexer struct {
	s   string
	pos int
}

func (l *lexer) eof() bool  { return l.pos >= len(l.s) }
func (l *lexer) peek() byte { return l.s[l.pos] }

func (l *lexer) accept(c byte) bool {
	if !l.eof() && l.peek() == c {
		l.pos++
		return true
	}
	return false
}

func (l *lexer) errorf(format string, args ...any) error {
	return fmt.Errorf("%w at offset %d: %s", ErrSyntax, l.pos, fmt.Sprintf(format, args...))
}

// cfws skips folding white space and (nested) comments.
func (l *lexer) cfws() error {
	for !l.eof() {
		switch l.peek() {
		case ' ', '\t', '\r', '\n':
			l.pos++
		case '(':
			if err := l.comment(); err != nil {
				return err
			}
		default:
			return nil
		}
	}
	return nil
}

func (l *lexer) comment() error {
	depth := 0
	for !l.eof() {
		switch c := l.peek(); c {
		case '\\':
			l.pos++
		case '(':
			// No depth limit: the scan is iterative and the field's size
			// is bounded, and a limit would let a deeply nested comment
			// hide our authserv-id from IsOurs (while RFC 8601 readers
			// downstream skip the comment and see it).
			depth++
		case ')':
			if depth--; depth == 0 {
				l.pos++
				return nil
			}
		}
		l.pos++
	}
	return l.errorf("unterminated comment")
}

// value reads a token or a quoted string (RFC 2045 "value"). For property
// values the token also admits '@' and '.' (RFC 8601 pvalue: an address or a
// domain name) and other characters go-msgauth leaves unquoted.
func (l *lexer) value() (string, error) {
	if l.eof() {
		return "", l.errorf("want a value")
	}
	if l.peek() != '"' {
		v := l.token()
		if v == "" {
			return "", l.errorf("want a value")
		}
		return v, nil
	}
	var b strings.Builder
	for l.pos++; !l.eof(); l.pos++ {
		switch c := l.peek(); c {
		case '\\':
			if l.pos++; l.eof() {
				return "", l.errorf("unterminated quoted string")
			}
			b.WriteByte(l.peek())
		case '"':
			l.pos++
			return b.String(), nil
		case '\r', '\n':
			// Folding inside a quoted string: unfold.
		default:
			b.WriteByte(c)
		}
	}
	return "", l.errorf("unterminated quoted string")
}

// token reads a run of characters that are not white space, controls, or
// one of the delimiters of the grammar: ( ) ; = " and, for the result part,
// nothing else. '@', '.', '/' and the like stay inside tokens because
// pvalues (addresses, domains, base64) contain them.
func (l *lexer) token() string {
	start := l.pos
	for !l.eof() {
		c := l.peek()
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`();="`, c) >= 0 {
			break
		}
		l.pos++
	}
	return l.s[start:l.pos]
}
