package authres

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestFormat(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		id      string
		results []Result
		want    string
	}{
		{"none", "mx.example.org", nil, " mx.example.org; none"},
		{"no props has no trailing space", "mx.example.org", []Result{{Method: "spf", Value: "none"}},
			" mx.example.org;\r\n\tspf=none"},
		{"full", "mx.example.org", []Result{
			{Method: "spf", Value: "pass", Props: map[string]string{"smtp.mailfrom": "bounce@example.com"}},
			{Method: "spf", Value: "none", Props: map[string]string{"smtp.helo": "mail.example.com"}},
			{Method: "dkim", Value: "pass", Props: map[string]string{"header.d": "example.com", "header.s": "sel", "header.a": "rsa-sha256", "header.b": "AbCd+/12"}},
			{Method: "dmarc", Value: "fail", Comment: "p=reject dis=quarantine", Reason: "indirect flow: list headers",
				Props: map[string]string{"header.from": "example.com", "policy.dmarc": "quarantine"}},
		}, " mx.example.org;\r\n" +
			"\tspf=pass smtp.mailfrom=bounce@example.com;\r\n" +
			"\tspf=none smtp.helo=mail.example.com;\r\n" +
			"\tdkim=pass header.a=rsa-sha256 header.b=AbCd+/12 header.d=example.com\r\n" +
			"\theader.s=sel;\r\n" +
			"\tdmarc=fail (p=reject dis=quarantine) reason=\"indirect flow: list headers\"\r\n" +
			"\theader.from=example.com policy.dmarc=quarantine"},
		{"hostile values sanitised", "mx", []Result{
			{Method: "dmarc", Value: "fail", Comment: "a)b(c\\", Reason: "x\\\"y\r\nz",
				Props: map[string]string{"header.from": "ev il\"\\.example"}},
		}, " mx;\r\n\tdmarc=fail (abc) reason=\"x_\\\"y__z\" header.from=ev_il__.example"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := Format(tc.id, tc.results)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("Format (-want +got):\n%s", d)
			}
			checkLayout(t, got)
			id, back, err := Parse(got)
			if err != nil {
				t.Fatalf("Parse(Format): %v", err)
			}
			if id != tc.id {
				t.Errorf("authserv-id %q, want %q", id, tc.id)
			}
			if len(back) != len(tc.results) {
				t.Fatalf("parsed %d results, want %d", len(back), len(tc.results))
			}
		})
	}
}

// checkLayout asserts the folding rules: value starts with a space, lines
// of at most 78 characters (counting the field name on the first) unless one
// word is longer, no trailing white space, only CRLF TAB folds.
func checkLayout(t *testing.T, v string) {
	t.Helper()
	if !strings.HasPrefix(v, " ") {
		t.Errorf("value does not start with a space: %q", v)
	}
	lines := strings.Split(v, "\r\n")
	for i, l := range lines {
		n := len(l)
		if i == 0 {
			n += len(FieldName) + 1
		} else if !strings.HasPrefix(l, "\t") {
			t.Errorf("line %d does not start with a tab: %q", i, l)
		}
		if n > maxLine && len(splitWords(strings.TrimSpace(l))) > 1 {
			t.Errorf("line %d is %d characters: %q", i, n, l)
		}
		if strings.TrimRight(l, " \t") != l {
			t.Errorf("line %d has trailing white space: %q", i, l)
		}
		if strings.ContainsAny(l, "\r\n") {
			t.Errorf("bare CR or LF in line %d: %q", i, l)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	in := []Result{
		{Method: "spf", Value: "softfail", Reason: "no match", Props: map[string]string{"smtp.mailfrom": "a@b.example"}},
		{Method: "dkim", Value: "temperror", Reason: "key lookup: SERVFAIL", Props: map[string]string{"header.d": "b.example", "header.s": "s1", "header.b": "abc="}},
		{Method: "dmarc", Value: "pass", Props: map[string]string{"header.from": "b.example", "policy.dmarc": "none"}},
	}
	_, got, err := Parse(Format("mx.example.org", in))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(in, got, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
}

func ExampleFormat() {
	v := Format("mx.example.org", []Result{
		{Method: "spf", Value: "pass", Props: map[string]string{"smtp.mailfrom": "example.com"}},
		{Method: "dmarc", Value: "pass", Props: map[string]string{"header.from": "example.com", "policy.dmarc": "none"}},
	})
	fmt.Println("Authentication-Results:" + strings.ReplaceAll(v, "\r\n", "\n"))
	// Output:
	// Authentication-Results: mx.example.org;
	// 	spf=pass smtp.mailfrom=example.com;
	// 	dmarc=pass header.from=example.com policy.dmarc=none
}

// FuzzFormat: whatever the inputs, the rendered field parses back to the
// same methods and results, keeps the layout rules, and its authserv-id is
// recognised as ours.
func FuzzFormat(f *testing.F) {
	f.Add("mx.example.org", "dmarc", "fail", "indirect flow", "example.com", "p=reject")
	f.Add("mx", "spf", "pass", "", "a\\\"b@c", "")
	f.Add("m", "dkim", "temperror", "x\r\ny", "(", ")")
	f.Fuzz(func(t *testing.T, id, method, value, reason, prop, comment string) {
		if !validToken(id) || !validToken(method) || !validToken(value) || strings.Contains(method, ".") {
			return
		}
		in := []Result{{Method: method, Value: value, Reason: reason, Comment: comment,
			Props: map[string]string{"header.d": prop}}}
		v := Format(id, in)
		checkLayout(t, v)
		gotID, rs, err := Parse(v)
		if err != nil {
			t.Fatalf("Parse(%q): %v", v, err)
		}
		if gotID != id || len(rs) != 1 || rs[0].Method != strings.ToLower(method) || rs[0].Value != strings.ToLower(value) {
			t.Fatalf("round trip of %q gave %q %+v", v, gotID, rs)
		}
		if !IsOurs(v, id) {
			t.Fatalf("IsOurs(%q, %q) = false", v, id)
		}
	})
}

func validToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}
