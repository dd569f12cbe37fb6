package integration

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeQuickStartMatchesFragment: the README's quick start shows the
// settings of deploy/postfix/main.cf.fragment, the file the tests use, and
// no other; so the two cannot drift apart. It needs no Postfix.
func TestReadmeQuickStartMatchesFragment(t *testing.T) {
	frag, err := os.ReadFile("../deploy/postfix/main.cf.fragment")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var settings []string
	for _, line := range strings.Split(string(frag), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			settings = append(settings, line)
		}
	}
	var shown []string
	for _, line := range strings.Split(string(readme), "\n") {
		if l := strings.TrimSpace(line); strings.HasPrefix(line, "    ") && strings.Contains(l, " = ") && !strings.HasPrefix(l, "#") {
			shown = append(shown, l)
		}
	}
	if strings.Join(settings, "\n") != strings.Join(shown, "\n") {
		t.Errorf("README quick start shows\n%s\nbut the fragment has\n%s", strings.Join(shown, "\n"), strings.Join(settings, "\n"))
	}
}
