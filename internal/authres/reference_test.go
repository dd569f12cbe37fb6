package authres

import (
	"strings"

	"github.com/emersion/go-msgauth/authres"
)

// referenceFormat is the former renderer, through go-msgauth's
// authres.Format one result at a time: Format must write exactly what it
// wrote (TestFormatMatchesReference, FuzzFormatMatchesReference).
func referenceFormat(authservID string, results []Result) string {
	lines := []string{" " + authservID + ";"}
	if len(results) == 0 {
		return " " + authservID + "; none"
	}
	for i, r := range results {
		s := referenceOne(r)
		if i < len(results)-1 {
			s += ";"
		}
		lines = append(lines, s)
	}
	return referenceFold(lines)
}

func referenceOne(r Result) string {
	params := map[string]string{"reason": referenceSanitize(r.Reason, true)}
	for k, v := range r.Props {
		params[k] = referenceSanitize(v, false)
	}
	g := &authres.GenericResult{Method: r.Method, Value: authres.ResultValue(r.Value), Params: params}
	s := authres.Format("", []authres.Result{g})
	s = strings.TrimSpace(strings.TrimPrefix(s, ";"))
	if c := referenceSanitizeComment(r.Comment); c != "" {
		head, rest, _ := strings.Cut(s, " ")
		s = strings.TrimSpace(head + " (" + c + ") " + rest)
	}
	return s
}

func referenceSanitize(s string, reason bool) string {
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

func referenceSanitizeComment(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '(' || r == ')' || r == '\\' || r < ' ' || r > '~' {
			return -1
		}
		return r
	}, s)
}

func referenceFold(lines []string) string {
	var b strings.Builder
	b.WriteString(lines[0])
	for _, l := range lines[1:] {
		col := 1
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
