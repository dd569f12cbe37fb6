package policy

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzParse checks the record parser: no panic; a record is returned only
// for text that starts with the v tag; String round-trips (Parse of it
// gives an equal record and the same text again).
func FuzzParse(f *testing.F) {
	for _, c := range recordCases {
		f.Add(c.txt)
	}
	f.Add("v=DMARC1; p=reject; rua=mailto:a@b.example!5k,mailto:c@d.example; fo=0:d:s; rf=afrf:iodef; ri=86400; pct=7")
	f.Fuzz(func(t *testing.T, txt string) {
		r, err := Parse(txt)
		if err != nil {
			if r != nil {
				t.Fatalf("Parse(%q) returned a record with error %v", txt, err)
			}
			return
		}
		if head := strings.TrimLeft(txt, " \t\r\n"); len(head) == 0 || head[0]|0x20 != 'v' {
			t.Fatalf("Parse(%q) accepted text that does not start with the v tag", txt)
		}
		s := r.String()
		r2, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(String()) of %q: %q: %v", txt, s, err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip of %q via %q:\n%#v\n%#v", txt, s, r, r2)
		}
		if s2 := r2.String(); s2 != s {
			t.Fatalf("String not stable: %q then %q", s, s2)
		}
		// The effective values must be defined for every record.
		for _, d := range []Disposition{r.Policy(), r.SubdomainPolicy(), r.NonExistentPolicy()} {
			if d != DispositionNone && d != DispositionQuarantine && d != DispositionReject {
				t.Fatalf("effective policy %q of %q", d, txt)
			}
		}
		if p := r.Percent(); p < 0 || p > 100 {
			t.Fatalf("pct %d", p)
		}
	})
}

// FuzzParseFrom checks the From parser's security property: no panic, and
// a domain is returned only from a mailbox actually present in the input.
// The input holds the From field values separated by U+001E.
func FuzzParseFrom(f *testing.F) {
	for _, c := range fromCases {
		f.Add(strings.Join(c.fields, "\x1e"))
	}
	f.Fuzz(func(t *testing.T, in string) {
		var fields []string
		if in != "" {
			fields = strings.Split(in, "\x1e")
		}
		a := ParseFrom(fields)
		if a.Problem != FromOK {
			if len(a.Domains) != 0 || len(a.Mailboxes) != 0 {
				t.Fatalf("problem %q with domains %q", a.Problem, a.Domains)
			}
			return
		}
		if len(a.Mailboxes) == 0 || len(a.Domains) == 0 {
			t.Fatalf("no problem but no mailbox for %q", in)
		}
		if len(a.Mailboxes) > strings.Count(in, "@") {
			t.Fatalf("%d mailboxes from %d '@' in %q", len(a.Mailboxes), strings.Count(in, "@"), in)
		}
		lower := strings.ToLower(in)
		for _, m := range a.Mailboxes {
			checkMailboxPresent(t, in, lower, m)
		}
		for _, d := range a.Domains {
			if !hasDomain(a.Mailboxes, d) {
				t.Fatalf("domain %q not from any mailbox of %q", d, in)
			}
		}
	})
}

// checkMailboxPresent asserts that m really is a mailbox of the input: its
// domain's labels occur in the input, its domain is the normalized raw
// domain, and the mailbox re-rendered in canonical form parses to the same
// domain.
func checkMailboxPresent(t *testing.T, in, lower string, m Mailbox) {
	t.Helper()
	if m.Field < 0 || m.Field > strings.Count(in, "\x1e") {
		t.Fatalf("mailbox field %d out of range", m.Field)
	}
	for l := range strings.SplitSeq(strings.TrimSuffix(m.RawDomain, "."), ".") {
		if !strings.Contains(lower, strings.ToLower(l)) {
			t.Fatalf("domain label %q of %q not in input %q", l, m.Domain, in)
		}
	}
	if n, err := NormalizeDomain(m.RawDomain); err != nil || n != m.Domain {
		t.Fatalf("domain %q is not the normalized raw domain %q (%v)", m.Domain, m.RawDomain, err)
	}
	canon := "<" + quoteLocal(m.LocalPart) + "@" + m.RawDomain + ">"
	b := ParseFrom([]string{canon})
	if b.Problem != FromOK || len(b.Domains) != 1 || b.Domains[0] != m.Domain {
		t.Fatalf("mailbox %+v of %q re-rendered as %q parses to %q (%v)", m, in, canon, b.Domains, b.Err)
	}
}

func quoteLocal(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

func hasDomain(ms []Mailbox, d string) bool {
	for _, m := range ms {
		if m.Domain == d {
			return true
		}
	}
	return false
}
