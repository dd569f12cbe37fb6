package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fromCases is the From parser's table, with the regression cases of the
// bypasses that hit other implementations (see the "peer" column). The
// fuzz test is seeded from it.
var fromCases = []struct {
	name    string
	rule    string // RFC section, or the peer bypass it guards against
	fields  []string
	domains []string
	problem FromProblem
}{
	{"plain addr-spec", "RFC 5322 §3.4.1", []string{"user@example.com"}, []string{"example.com"}, FromOK},
	{"name-addr", "RFC 5322 §3.4", []string{"Jane Doe <jane@example.com>"}, []string{"example.com"}, FromOK},
	{"leading white space and folding", "RFC 5322 §2.2.3", []string{" Jane\r\n Doe\r\n\t<jane@example.com>"}, []string{"example.com"}, FromOK},
	{"LF-only folding", "RFC 5322 §2.2.3 (milter line ends)", []string{"Jane\n <jane@example.com>"}, []string{"example.com"}, FromOK},
	{"trailing CRLF", "header value as some APIs pass it", []string{"jane@example.com\r\n"}, []string{"example.com"}, FromOK},
	{"break without white space", "RFC 5322 §2.2.3", []string{"jane@example.com\r\nBcc: x@evil.example"}, nil, FromUnparseable},
	{"comments everywhere", "RFC 5322 §3.2.2 CFWS", []string{"(c1) Jane (c2) <(c3) jane (c4) @ (c5) example.com (c6)> (c7)"}, []string{"example.com"}, FromOK},
	{"nested comment with address", "RFC 5322 §3.2.2", []string{"(a (b@evil.example) c) jane@example.com"}, []string{"example.com"}, FromOK},
	{"address only in a comment", "RFC 5322 §3.2.2", []string{"Jane (x@evil.example)"}, nil, FromUnparseable},
	{"unterminated comment", "RFC 5322 §3.2.2", []string{"jane@example.com (oops"}, nil, FromUnparseable},
	{"deep comment nesting refused", "bounded input", []string{strings.Repeat("(", 40) + strings.Repeat(")", 40) + "a@example.com"}, nil, FromUnparseable},
	{"quoted display name", "RFC 5322 §3.2.4", []string{`"Jane Doe" <jane@example.com>`}, []string{"example.com"}, FromOK},
	{"quoted comma in display name", "peer: OpenDMARC #72/#104 parsed the comma as a separator", []string{`"Doe, John" <john@victim.example>`}, []string{"victim.example"}, FromOK},
	{"quoted local part hiding an address", "peer: OpenDMARC #243", []string{`"Someone <x@junk.example>"@victim.example`}, []string{"victim.example"}, FromOK},
	{"quoted local part hiding an address in angle", "peer: OpenDMARC #243", []string{`Someone <"x@junk.example"@victim.example>`}, []string{"victim.example"}, FromOK},
	{"escaped quote in quoted string", "RFC 5322 §3.2.1 quoted-pair", []string{`"a\"b <x@junk.example>" <c@victim.example>`}, []string{"victim.example"}, FromOK},
	{"unbalanced > after addr-spec", "peer: OpenDMARC #113/#174", []string{"attacker@evil.example>"}, nil, FromUnparseable},
	{"unbalanced > after angle", "peer: OpenDMARC #113/#174", []string{"<attacker@evil.example>>"}, nil, FromUnparseable},
	{"unbalanced <", "RFC 5322 §3.4", []string{"Jane <jane@example.com"}, nil, FromUnparseable},
	{"two angle addresses", "RFC 5322 §3.4", []string{"Jane <a@evil.example> <b@victim.example>"}, nil, FromUnparseable},
	{"trailing space", "peer: rspamd #3812", []string{"user@victim.example "}, []string{"victim.example"}, FromOK},
	{"trailing tab and comment", "peer: rspamd #3812", []string{"<user@victim.example>\t(x) "}, []string{"victim.example"}, FromOK},
	{"several addresses", "peer: CVE-2019-16378", []string{"a@evil.example, b@victim.example"}, []string{"evil.example", "victim.example"}, FromOK},
	{"several addresses, one domain", "RFC 5322 §3.6.2 mailbox-list", []string{"a@example.com, B <b@EXAMPLE.com>"}, []string{"example.com"}, FromOK},
	{"several From fields", "peer: Mail::DMARC #87 used only the last", []string{"a@evil.example", "b@victim.example"}, []string{"evil.example", "victim.example"}, FromOK},
	{"encoded-word display name hiding an address", "peer: complaint 1 (encoded-word)", []string{"=?utf-8?B?Y2VvQGJhbmsuZXhhbXBsZQ==?= <attacker@evil.example>"}, []string{"evil.example"}, FromOK},
	{"encoded-word with angle brackets inside", "RFC 2047 §5(3)", []string{"=?utf-8?Q?=3Cceo=40bank=2Eexample=3E?= <attacker@evil.example>"}, []string{"evil.example"}, FromOK},
	{"raw address in display name", "RFC 5322 §3.4", []string{"ceo@bank.example <attacker@evil.example>"}, nil, FromUnparseable},
	{"quoted address in display name", "RFC 5322 §3.4", []string{`"ceo@bank.example" <attacker@evil.example>`}, []string{"evil.example"}, FromOK},
	{"group with mailboxes", "RFC 6854 §2.1", []string{"Team: a@example.com, b@example.net;"}, []string{"example.com", "example.net"}, FromOK},
	{"empty group", "RFC 6854 §2.1", []string{"undisclosed-recipients:;"}, nil, FromNoMailbox},
	{"group without ;", "RFC 5322 §3.4", []string{"Team: a@example.com"}, nil, FromUnparseable},
	{"nested group", "RFC 5322 §3.4", []string{"A: B: c@example.com;;"}, nil, FromUnparseable},
	{"missing", "RFC 9989 §5.3.1 zero domains", nil, nil, FromMissing},
	{"empty field", "RFC 5322 §3.6.2", []string{"  "}, nil, FromUnparseable},
	{"only commas", "RFC 5322 §3.6.2", []string{" , , "}, nil, FromUnparseable},
	{"obsolete empty list elements", "RFC 5322 §4.4 obs-mbox-list", []string{", a@example.com,, "}, []string{"example.com"}, FromOK},
	{"obsolete route", "RFC 5322 §4.4 obs-route (relays, not the author)", []string{"<@relay.evil.example,@b.example:user@victim.example>"}, []string{"victim.example"}, FromOK},
	{"obsolete route alone", "RFC 5322 §4.4 obs-angle-addr", []string{"<@victim.example>"}, nil, FromUnparseable},
	{"obsolete local part", "RFC 5322 §4.4 obs-local-part", []string{`john . "q" . public @ example.com`}, []string{"example.com"}, FromOK},
	{"obsolete domain", "RFC 5322 §4.4 obs-domain", []string{"john@ example (c). com"}, []string{"example.com"}, FromOK},
	{"obsolete phrase with dot", "RFC 5322 §4.1 obs-phrase", []string{"John Q. Public <jqp@example.com>"}, []string{"example.com"}, FromOK},
	{"double dot in local part", "RFC 5322 §3.2.3 dot-atom", []string{"a..b@example.com"}, nil, FromUnparseable},
	{"double dot in domain", "RFC 5322 §3.2.3 dot-atom", []string{"a@example..com"}, nil, FromUnparseable},
	{"trailing dot in domain", "RFC 1034 §3.1 absolute name", []string{"a@Victim.Example."}, []string{"victim.example"}, FromOK},
	{"upper case", "RFC 9989 §4.4 case-insensitive", []string{"A@EXAMPLE.COM"}, []string{"example.com"}, FromOK},
	{"IDN U-label", "RFC 9989 §5.3.1 U-label → A-label", []string{"Иван <ivan@пример.рф>"}, []string{"xn--e1afmkfd.xn--p1ai"}, FromOK},
	{"IDN A-label", "RFC 5890", []string{"ivan@XN--E1AFMKFD.xn--p1ai"}, []string{"xn--e1afmkfd.xn--p1ai"}, FromOK},
	{"UTF-8 local part", "RFC 6532 §3.2", []string{"δοκιμή@example.com"}, []string{"example.com"}, FromOK},
	{"invalid UTF-8", "RFC 6532 §3.1", []string{"a@exam\xffple.com"}, nil, FromUnparseable},
	{"invalid UTF-8 in the local part", "RFC 6532 §3.1", []string{"Ren\xe9 <r\xe9@example.com>"}, nil, FromUnparseable},
	{"Latin-1 display name tolerated", "RFC 6532 §3.1 (display text only)", []string{"Ren\xe9 M\xfcller <rene@Example.com>"}, []string{"example.com"}, FromOK},
	{"Latin-1 quoted display name and comment", "RFC 6532 §3.1 (display text only)", []string{"\"Ren\xe9\" <rene@example.com> (caf\xe9)"}, []string{"example.com"}, FromOK},
	{"domain literal", "RFC 5322 §3.4.1 (no Author Domain)", []string{"a@[192.0.2.1]"}, nil, FromUnparseable},
	{"domain with atext that is not a host name", "NormalizeDomain", []string{"a@bank.example!"}, nil, FromUnparseable},
	{"no at sign", "RFC 5322 §3.4.1", []string{"just a name"}, nil, FromUnparseable},
	{"at sign without domain", "RFC 5322 §3.4.1", []string{"a@"}, nil, FromUnparseable},
	{"empty local part", "RFC 5322 §3.4.1", []string{"@example.com"}, nil, FromUnparseable},
	{"NUL", "bounded input", []string{"a@example.com\x00b@evil.example"}, nil, FromUnparseable},
	{"one bad field poisons all", "From is a security boundary", []string{"a@example.com", "broken <"}, nil, FromUnparseable},
	{"too many fields", "bounded input", make17("a@example.com"), nil, FromUnparseable},
	{"too many mailboxes", "bounded input", []string{strings.Repeat("a@example.com,", MaxFromMailboxes+1)}, nil, FromUnparseable},
	{"too long", "bounded input", []string{"a@example.com (" + strings.Repeat("x", MaxFromFieldLen) + ")"}, nil, FromUnparseable},
}

func make17(s string) []string {
	out := make([]string, MaxFromFields+1)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestParseFrom(t *testing.T) {
	for _, tc := range fromCases {
		t.Run(tc.name, func(t *testing.T) {
			a := ParseFrom(tc.fields)
			if a.Problem != tc.problem {
				t.Fatalf("%s: ParseFrom(%q).Problem = %q (err %v), want %q", tc.rule, tc.fields, a.Problem, a.Err, tc.problem)
			}
			if diff := cmp.Diff(tc.domains, a.Domains); diff != "" {
				t.Errorf("%s: ParseFrom(%q).Domains (-want +got):\n%s", tc.rule, tc.fields, diff)
			}
			if tc.problem == FromUnparseable && !errors.Is(a.Err, ErrFromSyntax) {
				t.Errorf("%s: Err = %v, want it to wrap ErrFromSyntax", tc.rule, a.Err)
			}
			if a.Fields != len(tc.fields) {
				t.Errorf("Fields = %d, want %d", a.Fields, len(tc.fields))
			}
		})
	}
}

func TestParseFromMailboxDetails(t *testing.T) {
	a := ParseFrom([]string{`"Doe, John" (x) <"j.d"@Example.COM.>`, `Team: Q. Public <q@b.example>;`})
	want := []Mailbox{
		{Field: 0, DisplayName: "Doe, John", LocalPart: "j.d", RawDomain: "Example.COM.", Domain: "example.com"},
		{Field: 1, DisplayName: "Q. Public", Group: "Team", LocalPart: "q", RawDomain: "b.example", Domain: "b.example"},
	}
	if diff := cmp.Diff(want, a.Mailboxes); diff != "" {
		t.Errorf("mailboxes (-want +got):\n%s", diff)
	}
}

func TestNormalizeDomain(t *testing.T) {
	cases := []struct{ in, want string }{
		{"Example.COM", "example.com"},
		{"example.com.", "example.com"},
		{"пример.рф", "xn--e1afmkfd.xn--p1ai"},
		{"_dmarc.example.com", "_dmarc.example.com"},
		{"", ""},
		{".", ""},
		{"a..b", ""},
		{".a", ""},
		{"a b", ""},
		{strings.Repeat("a", 64) + ".com", ""},
		{strings.Repeat("a.", 127) + "com", ""},
	}
	for _, c := range cases {
		got, err := NormalizeDomain(c.in)
		if got != c.want || (err != nil) != (c.want == "") {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}
