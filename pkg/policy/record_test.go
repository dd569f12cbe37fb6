package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// recordCases are the parser's table; each names the rule it checks. The
// fuzz test is seeded from it.
var recordCases = []struct {
	name    string
	rule    string
	txt     string
	want    *Record
	wantErr error
}{
	{"minimal", "RFC 9989 §4.7 v", "v=DMARC1", &Record{}, nil},
	{"p reject", "RFC 9989 §4.7 p", "v=DMARC1; p=reject", &Record{P: DispositionReject}, nil},
	{"all RFC 9989 tags", "RFC 9989 §4.7",
		"v=DMARC1; p=quarantine; sp=reject; np=none; psd=n; t=y; adkim=s; aspf=r; rua=mailto:a@example.com,mailto:b@example.net; ruf=mailto:f@example.com; fo=1:d",
		&Record{P: DispositionQuarantine, SP: DispositionReject, NP: DispositionNone, PSD: PSDNo, Testing: true, HasT: true,
			ADKIM: AlignStrict, ASPF: AlignRelaxed, RUA: []string{"mailto:a@example.com", "mailto:b@example.net"},
			RUF: []string{"mailto:f@example.com"}, FO: []string{"1", "d"}}, nil},
	{"RFC 7489 tags", "RFC 7489 §6.3 pct rf ri", "v=DMARC1; p=none; pct=20; rf=afrf; ri=3600",
		&Record{P: DispositionNone, Pct: 20, HasPct: true, RF: []string{"afrf"}, RI: 3600, HasRI: true}, nil},
	{"white space around separators", "RFC 9989 §4.8 dmarc-sep, equals", "  v = DMARC1 ;\tp = reject ; sp=none ;  ",
		&Record{P: DispositionReject, SP: DispositionNone}, nil},
	{"case of names and values", "RFC 9989 §4.8 (ABNF literals are case-insensitive)", "V=DMARC1; P=Reject; ADKIM=S",
		&Record{P: DispositionReject, ADKIM: AlignStrict}, nil},
	{"v value is case-sensitive", "RFC 9989 §4.7 v", "v=dmarc1; p=reject", nil, ErrNotDMARC},
	{"v not first", "RFC 9989 §4.7 v MUST be the first tag", "p=reject; v=DMARC1", nil, ErrNotDMARC},
	{"no v", "RFC 9989 §4.7 v", "p=reject", nil, ErrNotDMARC},
	{"v without separator", "RFC 9989 §4.7 v value must be DMARC1", "v=DMARC1 p=reject", nil, ErrNotDMARC},
	{"broken first segment", "RFC 9989 §4.8 dmarc-record", "DMARC1; v=DMARC1; p=reject", nil, ErrNotDMARC},
	{"SPF record", "RFC 9989 §4.10 step 2", "v=spf1 -all", nil, ErrNotDMARC},
	{"empty", "RFC 9989 §4.10 step 2", "", nil, ErrNotDMARC},
	{"unknown tags ignored", "RFC 9989 §4.7 unknown tags MUST be ignored", "v=DMARC1; foo=bar; p=reject; x-y=z",
		&Record{P: DispositionReject}, nil},
	{"missing p is allowed", "RFC 9989 §4.7 p (treated as p=none)", "v=DMARC1; rua=mailto:a@example.com",
		&Record{RUA: []string{"mailto:a@example.com"}}, nil},
	{"invalid p kept as invalid", "RFC 9989 §4.10.1 invalid p", "v=DMARC1; p=bogus; rua=mailto:a@example.com",
		&Record{RUA: []string{"mailto:a@example.com"}, Invalid: []string{"p=bogus"}}, nil},
	{"invalid values default", "RFC 9989 §4.8 syntax errors discarded in favor of defaults",
		"v=DMARC1; p=reject; adkim=x; aspf=; psd=maybe; t=yes; fo=2; pct=101; ri=-1; rf=a b",
		&Record{P: DispositionReject, Invalid: []string{"adkim=x", "aspf=", "psd=maybe", "t=yes", "fo=2", "pct=101", "ri=-1", "rf=a b"}}, nil},
	{"fo 0 and 1 exclusive", "RFC 9989 §4.7 fo", "v=DMARC1; fo=0:1", &Record{Invalid: []string{"fo=0:1"}}, nil},
	{"duplicate tag: first wins", "RFC 9989 §4.8 (syntax error ignored)", "v=DMARC1; p=reject; p=none",
		&Record{P: DispositionReject}, nil},
	{"trailing separator", "RFC 9989 §4.8 dmarc-record [dmarc-sep]", "v=DMARC1; p=none;", &Record{P: DispositionNone}, nil},
	{"empty segments", "RFC 9989 §4.8 (tolerated)", "v=DMARC1;;; p=none", &Record{P: DispositionNone}, nil},
	{"report size suffix stripped", "RFC 9989 §4.8 obs-dmarc-report-size", "v=DMARC1; rua=mailto:a@example.com!10m, mailto:b@example.com",
		&Record{RUA: []string{"mailto:a@example.com", "mailto:b@example.com"}}, nil},
	{"invalid URIs dropped", "RFC 9989 §4.7 rua", "v=DMARC1; rua=not a uri,mailto:ok@example.com,:x",
		&Record{RUA: []string{"mailto:ok@example.com"}}, nil},
	{"no valid URI at all", "RFC 9989 §4.10.1 at least one syntactically valid URI", "v=DMARC1; p=bogus; rua=nonsense",
		&Record{Invalid: []string{"p=bogus", "rua=nonsense"}}, nil},
	{"uri with query", "RFC 3986", "v=DMARC1; rua=mailto:a@example.com?subject=x=y",
		&Record{RUA: []string{"mailto:a@example.com?subject=x=y"}}, nil},
	{"pct zero", "RFC 7489 §6.3 pct", "v=DMARC1; p=reject; pct=0", &Record{P: DispositionReject, HasPct: true}, nil},
	{"too long", "bounded input", "v=DMARC1; p=none; x=" + strings.Repeat("a", MaxRecordLen), nil, ErrRecordTooLong},
}

func TestParse(t *testing.T) {
	for _, tc := range recordCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.txt)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("%s: Parse(%q) error = %v, want %v", tc.rule, tc.txt, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("%s: Parse(%q) mismatch (-want +got):\n%s", tc.rule, tc.txt, diff)
			}
		})
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, tc := range recordCases {
		if tc.want == nil {
			continue
		}
		r, _ := Parse(tc.txt)
		s := r.String()
		r2, err := Parse(s)
		if err != nil {
			t.Fatalf("%s: Parse(String()=%q): %v", tc.name, s, err)
		}
		if diff := cmp.Diff(r, r2); diff != "" {
			t.Errorf("%s: round trip of %q via %q (-first +second):\n%s", tc.name, tc.txt, s, diff)
		}
	}
}

func TestRecordString(t *testing.T) {
	r, _ := Parse("v=DMARC1; RUA=mailto:x@example.com; P=Reject; t=n; pct=50; fo=d:0; bogus=1; np=oops")
	const want = "v=DMARC1; p=reject; t=n; pct=50; rua=mailto:x@example.com; fo=d:0; np=oops"
	if got := r.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestRecordEffectiveValues(t *testing.T) {
	cases := []struct {
		rule, txt       string
		p, sp, np       Disposition
		applies, asNone bool
		adkim, aspf     AlignMode
		pct             int
		psd             PSD
		fo              string
	}{
		{"RFC 9989 §4.7 defaults", "v=DMARC1", DispositionNone, DispositionNone, DispositionNone, true, false, AlignRelaxed, AlignRelaxed, 100, PSDUnknown, "0"},
		{"RFC 9989 §4.7 sp falls back to p, np to sp", "v=DMARC1; p=reject; sp=quarantine", DispositionReject, DispositionQuarantine, DispositionQuarantine, true, false, AlignRelaxed, AlignRelaxed, 100, PSDUnknown, "0"},
		{"RFC 9989 §4.7 np falls back to p", "v=DMARC1; p=reject", DispositionReject, DispositionReject, DispositionReject, true, false, AlignRelaxed, AlignRelaxed, 100, PSDUnknown, "0"},
		{"RFC 9989 §4.7 np", "v=DMARC1; p=none; np=reject; adkim=s; pct=5; psd=y; fo=1", DispositionNone, DispositionNone, DispositionReject, true, false, AlignStrict, AlignRelaxed, 5, PSDYes, "1"},
		{"RFC 9989 §4.10.1 invalid p with rua acts as p=none", "v=DMARC1; p=bogus; sp=reject; rua=mailto:a@example.com", DispositionNone, DispositionNone, DispositionNone, true, true, AlignRelaxed, AlignRelaxed, 100, PSDUnknown, "0"},
		{"RFC 9989 §4.10.1 invalid sp with rua acts as p=none", "v=DMARC1; p=reject; sp=x; rua=mailto:a@example.com", DispositionNone, DispositionNone, DispositionNone, true, true, AlignRelaxed, AlignRelaxed, 100, PSDUnknown, "0"},
		{"RFC 9989 §4.10.1 invalid np without rua: no DMARC", "v=DMARC1; p=reject; np=x", DispositionReject, DispositionReject, DispositionReject, false, false, AlignRelaxed, AlignRelaxed, 100, PSDUnknown, "0"},
	}
	for _, c := range cases {
		r, err := Parse(c.txt)
		if err != nil {
			t.Fatalf("%s: %v", c.rule, err)
		}
		applies, asNone := r.Applicable()
		got := []any{r.Policy(), r.SubdomainPolicy(), r.NonExistentPolicy(), applies, asNone, r.DKIMAlignment(), r.SPFAlignment(), r.Percent(), r.PSDValue(), r.FailureOptions()}
		want := []any{c.p, c.sp, c.np, c.applies, c.asNone, c.adkim, c.aspf, c.pct, c.psd, c.fo}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: %q (-want +got):\n%s", c.rule, c.txt, diff)
		}
	}
}
