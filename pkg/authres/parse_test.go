package authres

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	t.Parallel()
	id, rs, err := Parse(" (comment) \"mx.example.org\" 1 ; spf=pass (good (nested)) smtp.mailfrom=\"a b\"@x.example;\r\n\tdkim=fail reason=\"bad; sig\" header.d=x.example ; dmarc=none")
	if err != nil {
		t.Fatal(err)
	}
	want := []Result{
		{Method: "spf", Value: "pass", Props: map[string]string{"smtp.mailfrom": "a b@x.example"}},
		{Method: "dkim", Value: "fail", Reason: "bad; sig", Props: map[string]string{"header.d": "x.example"}},
		{Method: "dmarc", Value: "none"},
	}
	if id != "mx.example.org" {
		t.Errorf("id = %q", id)
	}
	if d := cmp.Diff(want, rs); d != "" {
		t.Errorf("Parse (-want +got):\n%s", d)
	}
	for _, bad := range []string{
		"",                           // no authserv-id
		"mx; spf",                    // no result
		"mx; spf=pass header",        // property without value
		"mx 2; spf=pass",             // unknown version
		"mx; spf=pass (unterminated", // comment
		"mx; spf=pass reason=\"x",    // quoted string
		"mx spf=pass",                // missing ';'
	} {
		if _, _, err := Parse(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) = %v, want ErrSyntax", bad, err)
		}
	}
}

func TestIsOurs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		value string
		want  bool
	}{
		{"mx.example.org; dmarc=pass", true},
		{" MX.Example.ORG ; dmarc=pass", true},             // case-insensitive
		{"\r\n\t(forged) mx.example.org; spf=pass", true},  // CFWS before the id
		{"mx.example.org.; none", true},                    // trailing dot
		{"\"mx.example.org\"; none", true},                 // quoted-string id
		{"mx.example.org/x; dmarc=pass", true},             // id ends at a tspecial
		{"mx.example.org 1; none", true},                   // version
		{"mx.example.org(c); none", true},                  // comment right after
		{"other.example.org; dmarc=pass", false},           // someone else's
		{"mx.example.org.evil; dmarc=pass", false},         // longer name
		{"x-mx.example.org; dmarc=pass", false},            // prefix
		{"; dmarc=pass", false},                            // no id
		{"(unterminated mx.example.org; dmarc=pass", true}, // unreadable id, ours inside: fail closed
		{"(unterminated other.example; dmarc=pass", false}, // unreadable, not ours
		{strings.Repeat("(", 40) + "x" + strings.Repeat(")", 40) + " mx.example.org; dmarc=pass", true}, // deep comment
		{strings.Repeat("(", 5000) + "x" + strings.Repeat(")", 5000) + " other.example; none", false},
	}
	for _, tc := range cases {
		if got := IsOurs(tc.value, "mx.example.org"); got != tc.want {
			t.Errorf("IsOurs(%q) = %v, want %v", tc.value, got, tc.want)
		}
	}
}

// FuzzParse: hostile field values never panic, and an accepted value has an
// authserv-id that AuthservID finds too.
func FuzzParse(f *testing.F) {
	f.Add(" mx.example.org; dmarc=pass header.from=example.com")
	f.Add("(a(b(c))) \"q\\\"x\" 1; none")
	f.Add("mx; spf=pass reason=\"a;b\" smtp.mailfrom=x@y")
	f.Fuzz(func(t *testing.T, v string) {
		id, _, err := Parse(v)
		AuthservID(v)
		if err == nil && id == "" {
			t.Fatalf("Parse(%q) accepted an empty authserv-id", v)
		}
	})
}
