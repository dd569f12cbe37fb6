package authres

// splitWords splits at spaces that are outside quoted strings and comments.
// It is the reference renderer's own split (reference_test.go), written
// apart from foldLine on purpose: sharing foldLine's scan would make the
// reference agree with the code it checks by construction.
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
