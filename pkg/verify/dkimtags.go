package verify

import (
	"errors"
	"fmt"
	"strings"
)

// Tag lists (RFC 6376 §3.2) are the syntax of both the DKIM-Signature header
// field and the DNS key record.
// https://datatracker.ietf.org/doc/html/rfc6376#section-3.2

// maxTags bounds the number of tags kept from one tag list.
const maxTags = 64

var (
	errTagSyntax    = errors.New("malformed tag-spec")
	errTagDuplicate = errors.New("duplicate tag")
	errTagCount     = errors.New("too many tags")
)

// tagIter walks a tag-list = tag-spec *( ";" tag-spec ) [ ";" ] without
// allocating: names and values are substrings of the input. FWS around names
// and values is removed; values keep their inner whitespace. A tag name is
// ALPHA *ALNUMPUNC. Empty specs (a trailing ";", or ";;") are skipped.
// Duplicates are the caller's business (see tagSeen).
type tagIter struct {
	rest string
	n    int // tags returned so far
}

// next returns the next tag. ok is false at the end of the list or after an
// error; err is set for a malformed tag-spec or too many tags.
func (it *tagIter) next() (name, value string, ok bool, err error) {
	for len(it.rest) > 0 {
		spec := it.rest
		if i := strings.IndexByte(it.rest, ';'); i >= 0 {
			spec, it.rest = it.rest[:i], it.rest[i+1:]
		} else {
			it.rest = ""
		}
		if trimFWS(spec) == "" {
			continue
		}
		n, v, found := strings.Cut(spec, "=")
		n = trimFWS(n)
		if !found || !isTagName(n) {
			it.rest = ""
			return "", "", false, fmt.Errorf("%w: %q", errTagSyntax, truncate(spec, 40))
		}
		if it.n >= maxTags {
			it.rest = ""
			return "", "", false, errTagCount
		}
		it.n++
		return n, trimFWS(v), true, nil
	}
	return "", "", false, nil
}

// tagSeen detects duplicate tag names (RFC 6376 §3.2: "Tags with duplicate
// names MUST NOT occur within a single tag-list; if a tag name does occur
// more than once, the entire tag-list is invalid").
type tagSeen struct {
	names [maxTags]string
	n     int
}

func (s *tagSeen) add(name string) error {
	for _, o := range s.names[:s.n] {
		if o == name { // RFC 6376 §3.2: tag names are case-sensitive
			return fmt.Errorf("%w: %s=", errTagDuplicate, name)
		}
	}
	if s.n < len(s.names) {
		s.names[s.n] = name
		s.n++
	}
	return nil
}

// parseTagList parses a whole tag-list into a map; an error (syntax,
// duplicate, count) comes with the tags read before it. Used for key records,
// which are parsed once per distinct record text (see dkimKeys).
func parseTagList(s string) (map[string]string, error) {
	tags := map[string]string{}
	it := tagIter{rest: s}
	var seen tagSeen
	for {
		name, value, ok, err := it.next()
		if err != nil {
			return tags, err
		}
		if !ok {
			return tags, nil
		}
		if err := seen.add(name); err != nil {
			return tags, err
		}
		tags[name] = value
	}
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

func isFWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// trimFWS removes SP, HTAB, CR and LF at both ends.
func trimFWS(s string) string {
	i, j := 0, len(s)
	for i < j && isFWS(s[i]) {
		i++
	}
	for j > i && isFWS(s[j-1]) {
		j--
	}
	return s[i:j]
}

// stripFWS removes all whitespace, as for base64 values and the d=, s= and
// i= tags, where folding whitespace is not part of the value.
func stripFWS(s string) string {
	i := 0
	for i < len(s) && !isFWS(s[i]) {
		i++
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) - 1)
	for {
		b.WriteString(s[:i]) // a run without FWS
		for i < len(s) && isFWS(s[i]) {
			i++
		}
		s = s[i:]
		if s == "" {
			return b.String()
		}
		for i = 0; i < len(s) && !isFWS(s[i]); i++ {
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// listItems calls f with each element of a colon-separated list (h=, q=,
// and the key record's h=, s=, t=), FWS removed, empty elements included.
// It stops when f returns false.
func listItems(s string, f func(string) bool) {
	for {
		item, rest, more := strings.Cut(s, ":")
		if !f(stripFWS(item)) || !more {
			return
		}
		s = rest
	}
}
