// Package authres writes and reads Authentication-Results header fields
// (RFC 8601, https://datatracker.ietf.org/doc/html/rfc8601).
//
// Format writes the field in one pass into one buffer. Its output is byte
// for byte what the former renderer wrote through
// github.com/emersion/go-msgauth/authres.Format (kept in the tests as the
// reference): the same quoting rules (a property value that looks like an
// address or a token is written bare, anything else as a quoted string; a
// reason is a token or a quoted string), properties in name order after the
// reason, a comment after method=value, and values sanitised to printable
// ASCII first (see the notes in libraries.md §2.3 for what go-msgauth did
// wrong and why the sanitising exists: no backslash reaches a quoted
// string). Each result is on its own folded line.
//
// The reader (Parse, AuthservID, IsOurs) and the Result type live in
// pkg/authres, so that code under pkg/ can read Authentication-Results and
// ARC-Authentication-Results too; parse.go forwards to them. The milter uses
// IsOurs on incoming fields to find the ones that claim to come from us, and
// the tests parse every header we write back with Parse.
package authres

import (
	"bytes"
	"slices"
	"strings"
)

// FieldName is the header field name.
const FieldName = "Authentication-Results"

// maxLine is the line length RFC 5322 §2.1.1 asks for (excluding CRLF):
// https://datatracker.ietf.org/doc/html/rfc5322#section-2.1.1
const maxLine = 78

// Format renders the value of an Authentication-Results field (without the
// field name). It starts with a space, because the milter negotiates
// SMFIP_HDR_LEADSPC and Postfix then inserts the value byte for byte; each
// result starts on a new line, and lines are folded at spaces to stay within
// 78 characters when the words allow it. Folds are CRLF followed by a tab.
func Format(authservID string, results []Result) string {
	if len(results) == 0 {
		// RFC 8601 §2.2: no-result is "; none".
		return " " + authservID + "; none"
	}
	var b strings.Builder
	b.Grow(len(authservID) + 2 + 80*len(results))
	b.WriteByte(' ')
	b.WriteString(authservID)
	b.WriteByte(';')
	var lineBuf, tmpBuf [320]byte // one result, and room for its comment
	for i, r := range results {
		line := appendResult(lineBuf[:0], tmpBuf[:0], r)
		if i < len(results)-1 {
			line = append(line, ';')
		}
		foldLine(&b, line)
	}
	return b.String()
}

// appendResult renders one resinfo: "method=value (comment) reason=...
// props" (tmp is scratch space for the comment).
func appendResult(dst, tmp []byte, r Result) []byte {
	dst = append(dst, ' ')
	dst = append(dst, r.Method...)
	dst = append(dst, '=')
	dst = append(dst, r.Value...)
	dst = append(dst, ' ')
	dst = appendParams(dst, r)
	s := bytes.TrimSpace(dst)
	if !hasCommentChar(r.Comment) {
		return s
	}
	head, rest, _ := bytes.Cut(s, []byte{' '})
	tmp = append(tmp, head...)
	tmp = append(tmp, " ("...)
	tmp = appendComment(tmp, r.Comment)
	tmp = append(tmp, ") "...)
	tmp = append(tmp, rest...)
	return bytes.TrimSpace(tmp)
}

// appendParams writes the reason first, then the properties in name order,
// space-separated; empty values are left out. A property named "reason"
// stands for the reason.
func appendParams(dst []byte, r Result) []byte {
	reason, reasonSanitise := r.Reason, true
	var pb [10]Param
	props := pb[:0]
	for k, v := range r.Props {
		props = append(props, Param{Name: k, Value: v})
	}
	props = append(props, r.Params...)
	for i := 0; i < len(props); i++ {
		if props[i].Name == "reason" {
			reason, reasonSanitise = props[i].Value, false
			props = slices.Delete(props, i, i+1)
			i--
		}
	}
	slices.SortFunc(props, func(a, b Param) int { return strings.Compare(a.Name, b.Name) })
	n := 0
	if reason != "" {
		dst = append(dst, "reason="...)
		dst = appendValue(dst, reason, reasonSanitise, false)
		n++
	}
	for _, p := range props {
		if p.Value == "" {
			continue
		}
		if n > 0 {
			dst = append(dst, ' ')
		}
		dst = append(dst, p.Name...)
		dst = append(dst, '=')
		dst = appendValue(dst, p.Value, false, true)
		n++
	}
	return dst
}

// maxValue bounds a value (in bytes of input) before sanitising.
const maxValue = 200

// appendValue sanitises v (see sanitizeTo) and writes it bare when it can
// be, else as a quoted string: a property value (pvalue) is bare when it
// looks like an address or a token, a reason when it is a token.
func appendValue(dst []byte, v string, reason, pvalue bool) []byte {
	var buf [maxValue]byte
	s := sanitizeTo(buf[:0], v, reason)
	if pvalue && addressLike(s) || !needsQuotes(s) {
		return append(dst, s...)
	}
	dst = append(dst, '"')
	for _, c := range s {
		if c == '"' {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	return append(dst, '"')
}

// sanitizeTo keeps a value printable ASCII without backslashes, and for
// property values without spaces and double quotes either; each other
// character (or invalid byte) becomes one '_'. Values are cut at maxValue
// bytes first.
func sanitizeTo(dst []byte, s string, reason bool) []byte {
	if len(s) > maxValue {
		s = s[:maxValue]
	}
	for _, r := range s {
		switch {
		case r == '\\', r < ' ', r > '~':
			r = '_'
		case r == ' ' && !reason, r == '"' && !reason:
			r = '_'
		}
		dst = append(dst, byte(r))
	}
	return dst
}

// addressLike: letters, digits and the punctuation of addresses and domain
// names only (not "(", ")", "=" or '"', which a reader could take for the
// start of a comment, a property or a quoted string).
func addressLike(s []byte) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("#$%&'*+,./-@[]\\^_`{|}~", c) >= 0) {
			return false
		}
	}
	return true
}

// needsQuotes: a value with a space, a control character or a tspecial is
// not a token (the quoting rule go-msgauth applied).
func needsQuotes(s []byte) bool {
	for _, c := range s {
		if c <= ' ' || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return true
		}
	}
	return false
}

// commentChar reports whether a byte may stay in a comment: printable
// ASCII that would neither end nor nest it, nor escape.
func commentChar(c byte) bool {
	return c >= ' ' && c <= '~' && c != '(' && c != ')' && c != '\\'
}

func hasCommentChar(s string) bool {
	for i := 0; i < len(s); i++ {
		if commentChar(s[i]) {
			return true
		}
	}
	return false
}

// appendComment writes the comment's characters that may stay.
func appendComment(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if commentChar(s[i]) {
			dst = append(dst, s[i])
		}
	}
	return dst
}

// foldLine starts a new folded line (CRLF TAB) with the words of line,
// breaking it further at spaces outside quoted strings and comments when
// it would pass maxLine.
func foldLine(b *strings.Builder, line []byte) {
	b.WriteString("\r\n\t")
	f := folder{b: b, col: 1} // the tab
	start, depth, quoted := 0, 0, false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == '(':
			depth++
		case !quoted && c == ')' && depth > 0:
			depth--
		case c == ' ' && !quoted && depth == 0:
			if i > start {
				f.word(line[start:i])
			}
			start = i + 1
		}
	}
	if start < len(line) {
		f.word(line[start:])
	}
}

// folder lays out the words of one line.
type folder struct {
	b   *strings.Builder
	col int
	n   int // words written
}

func (f *folder) word(w []byte) {
	if f.n > 0 && f.col+1+len(w) > maxLine {
		f.b.WriteString("\r\n\t")
		f.col = 1
	} else if f.n > 0 {
		f.b.WriteByte(' ')
		f.col++
	}
	f.b.Write(w)
	f.col += len(w)
	f.n++
}
