package verify

import (
	"errors"
	"fmt"
	"strings"
)

// Tag lists (RFC 6376 §3.2) are the syntax of both the DKIM-Signature header
// field and the DNS key record. go-msgauth parses them too, but does not
// expose s=, a=, b= or l=, which the Authentication-Results header and our
// l= policy need, so we parse the same text here.
// https://datatracker.ietf.org/doc/html/rfc6376#section-3.2

// maxTags bounds the number of tags kept from one tag list.
const maxTags = 64

var (
	errTagSyntax    = errors.New("malformed tag-spec")
	errTagDuplicate = errors.New("duplicate tag")
	errTagCount     = errors.New("too many tags")
)

// parseTagList parses tag-list = tag-spec *( ";" tag-spec ) [ ";" ].
// Whitespace (FWS) around names and values is removed; values keep their
// inner whitespace. A tag name is ALPHA *ALNUMPUNC. Duplicate names are an
// error (RFC 6376 §3.2: "Tags with duplicate names MUST NOT occur within a
// single tag-list; if a tag name does occur more than once, the entire
// tag-list is invalid").
func parseTagList(s string) (map[string]string, error) {
	tags := map[string]string{}
	for len(s) > 0 {
		spec := s
		if i := strings.IndexByte(s, ';'); i >= 0 {
			spec, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		if strings.Trim(spec, " \t\r\n") == "" {
			continue // an empty spec: trailing ";" (or ";;", tolerated)
		}
		name, value, ok := strings.Cut(spec, "=")
		name = strings.Trim(name, " \t\r\n")
		if !ok || !isTagName(name) {
			return tags, fmt.Errorf("%w: %q", errTagSyntax, truncate(spec, 40))
		}
		if _, dup := tags[name]; dup {
			return tags, fmt.Errorf("%w: %s=", errTagDuplicate, name)
		}
		if len(tags) >= maxTags {
			return tags, errTagCount
		}
		tags[name] = strings.Trim(value, " \t\r\n")
	}
	return tags, nil
}

// isTagName checks tag-name = ALPHA *ALNUMPUNC (ALNUMPUNC = ALPHA / DIGIT / "_").
func isTagName(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isAlpha(s[i]) && !isDigit(s[i]) && s[i] != '_' {
			return false
		}
	}
	return true
}

// stripFWS removes all whitespace, as for base64 values and the d=, s= and
// i= tags, where folding whitespace is not part of the value.
func stripFWS(s string) string {
	if !strings.ContainsAny(s, " \t\r\n") {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// sigInfo is what we report of one DKIM-Signature field.
type sigInfo struct {
	domain    string // d=, as written (FWS removed)
	selector  string // s=
	algorithm string // a=
	auid      string // i=
	b         string // b=, FWS removed
	hasL      bool   // l= present
	parseErr  error
}

// parseSignature extracts the tags we report from a DKIM-Signature value.
// A syntax error is kept in parseErr; the fields found before it are kept.
func parseSignature(value string) sigInfo {
	tags, err := parseTagList(value)
	_, hasL := tags["l"]
	return sigInfo{
		domain:    stripFWS(tags["d"]),
		selector:  stripFWS(tags["s"]),
		algorithm: strings.ToLower(stripFWS(tags["a"])),
		auid:      stripFWS(tags["i"]),
		b:         stripFWS(tags["b"]),
		hasL:      hasL,
		parseErr:  err,
	}
}
