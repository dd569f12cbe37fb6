// Package authres writes and reads Authentication-Results header fields
// (RFC 8601, https://datatracker.ietf.org/doc/html/rfc8601).
//
// Rendering goes through github.com/emersion/go-msgauth/authres.Format, one
// result at a time, and then fixes what that function gets wrong or leaves
// out (see the notes in libraries.md §2.3): it leaves a trailing space after
// a result without properties, it does not fold, it cannot write comments,
// and it does not escape a backslash inside a quoted string (so values are
// sanitised before they reach it).
//
// Parse is a small tolerant reader of the RFC 8601 §2.2 grammar (comments,
// quoted strings, folding). The milter uses AuthservID on incoming fields to
// find the ones that claim to come from us, and the tests parse every header
// we write back with Parse.
package authres

import (
	"strings"

	"github.com/emersion/go-msgauth/authres"
)

// FieldName is the header field name.
const FieldName = "Authentication-Results"

// maxLine is the line length RFC 5322 §2.1.1 asks for (excluding CRLF):
// https://datatracker.ietf.org/doc/html/rfc5322#section-2.1.1
const maxLine = 78

// Result is one resinfo: method=value, an optional comment, a reason and
// properties ("smtp.mailfrom", "header.d", ...).
type Result struct {
	Method  string            // "spf", "dkim", "dmarc", "auth"
	Value   string            // "pass", "fail", ...
	Comment string            // written as "(comment)" after the value
	Reason  string            // written as reason="..."
	Props   map[string]string // ptype.property → value; empty values are left out
}

// Format renders the value of an Authentication-Results field (without the
// field name). It starts with a space, because the milter negotiates
// SMFIP_HDR_LEADSPC and Postfix then inserts the value byte for byte; each
// result starts on a new line, and lines are folded at spaces to stay within
// 78 characters when the words allow it. Folds are CRLF followed by a tab.
func Format(authservID string, results []Result) string {
	lines := []string{" " + authservID + ";"}
	if len(results) == 0 {
		// RFC 8601 §2.2: no-result is "; none".
		lines[0] = " " + authservID + "; none"
		return lines[0]
	}
	for i, r := range results {
		s := formatOne(r)
		if i < len(results)-1 {
			s += ";"
		}
		lines = append(lines, s)
	}
	return fold(lines)
}

// formatOne renders one resinfo with go-msgauth and adds the comment.
func formatOne(r Result) string {
	params := map[string]string{"reason": sanitize(r.Reason, true)}
	for k, v := range r.Props {
		params[k] = sanitize(v, false)
	}
	g := &authres.GenericResult{Method: r.Method, Value: authres.ResultValue(r.Value), Params: params}
	s := authres.Format("", []authres.Result{g})
	// Format writes "; method=value " + params: drop the separator and the
	// trailing space it leaves when there are no params.
	s = strings.TrimSpace(strings.TrimPrefix(s, ";"))
	if c := sanitizeComment(r.Comment); c != "" {
		head, rest, _ := strings.Cut(s, " ")
		s = strings.TrimSpace(head + " (" + c + ") " + rest)
	}
	return s
}

// sanitize keeps a value within what go-msgauth quotes correctly: printable
// ASCII without backslashes (which it would not escape), and for property
// values without double quotes either. Anything else becomes '_'.
func sanitize(s string, reason bool) string {
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\\', r < ' ', r > '~':
			return '_'
		case r == ' ' && !reason, r == '"' && !reason:
			return '_'
		}
		return r
	}, s)
}

// sanitizeComment keeps a comment free of characters that would end or
// nest it.
func sanitizeComment(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '(' || r == ')' || r == '\\' || r < ' ' || r > '~' {
			return -1
		}
		return r
	}, s)
}

// fold lays out the lines: the first is kept, each following one starts a
// new folded line (CRLF TAB); a line longer than maxLine is further broken
// at spaces outside quoted strings and comments.
func fold(lines []string) string {
	var b strings.Builder
	b.WriteString(lines[0])
	for _, l := range lines[1:] {
		col := 1 // the tab
		b.WriteString("\r\n\t")
		for i, w := range splitWords(l) {
			if i > 0 && col+1+len(w) > maxLine {
				b.WriteString("\r\n\t")
				col = 1
			} else if i > 0 {
				b.WriteByte(' ')
				col++
			}
			b.WriteString(w)
			col += len(w)
		}
	}
	return b.String()
}

// splitWords splits at spaces that are outside quoted strings and comments.
func splitWords(s string) []string {
	var words []string
	start, depth, quoted := 0, 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
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
				words = append(words, s[start:i])
			}
			start = i + 1
		}
	}
	if start < len(s) {
		words = append(words, s[start:])
	}
	return words
}
