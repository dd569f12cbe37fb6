package report

import (
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func unix(s int64) time.Time { return time.Unix(s, 0).UTC() }

// corpusCase is one file of testdata/incoming (built by make.py from
// src/): the reports it holds, or the refusal.
type corpusCase struct {
	file string
	// want is compared in full when set; check runs when set.
	want    []*Feedback
	check   func(t *testing.T, got []*Feedback)
	refusal RefusalReason
}

func corpusCases() []corpusCase {
	day5 := DateRange{Begin: unix(1764892800), End: unix(1764979200)}
	day5incl := DateRange{Begin: unix(1764892800), End: unix(1764979199)}
	return []corpusCase{
		{file: "01-rfc9990-full.xml", want: []*Feedback{{
			Version: "1.0",
			Metadata: Metadata{
				OrgName: "Receiver Example", Email: "dmarc-noreply@receiver.example",
				ExtraContactInfo: "https://receiver.example/postmaster",
				ReportID:         "2026-12-05_example.com@receiver.example", DateRange: day5,
				Errors: []string{"rua URI 2 ignored: not a mailto URI"}, Generator: "Example Reporter 3.1",
			},
			PolicyPublished: PolicyPublished{
				Domain: "example.com", P: DispositionReject, SP: DispositionQuarantine, NP: DispositionReject,
				ADKIM: AlignmentStrict, ASPF: AlignmentRelaxed, DiscoveryMethod: DiscoveryTreeWalk, FO: "1", Testing: TestingNo,
			},
			Records: []Record{
				{
					Row: Row{SourceIP: ip("192.0.2.25"), Count: 814,
						PolicyEvaluated: PolicyEvaluated{Disposition: ActionPass, DKIM: DMARCPass, SPF: DMARCPass}},
					Identifiers: Identifiers{HeaderFrom: "example.com", EnvelopeFrom: "example.com", EnvelopeTo: "receiver.example"},
					AuthResults: AuthResults{
						DKIM: []DKIMAuth{
							{Domain: "example.com", Selector: "k2026", Result: DKIMPass},
							{Domain: "example.com", Selector: "k2025", Result: DKIMFail, HumanResult: "key revoked"},
							{Domain: "mailer.example.net", Selector: "m1", Result: DKIMPass},
						},
						SPF: &SPFAuth{Domain: "example.com", Scope: SPFScopeMailFrom, Result: SPFPass},
					},
				},
				{
					Row: Row{SourceIP: ip("2001:db8:77::1"), Count: 4,
						PolicyEvaluated: PolicyEvaluated{Disposition: ActionNone, DKIM: DMARCFail, SPF: DMARCFail,
							Reasons: []Reason{
								{Type: ReasonTrustedForwarder, Comment: "ARC chain from a known forwarder"},
								{Type: ReasonLocalPolicy},
							}}},
					Identifiers: Identifiers{HeaderFrom: "example.com"},
					AuthResults: AuthResults{
						SPF: &SPFAuth{Domain: "relay.forwarder.example", Scope: SPFScopeMailFrom, Result: SPFNone, HumanResult: "no SPF record"},
					},
				},
			},
		}}},
		{file: "02-rfc7489-namespace.xml", want: []*Feedback{{
			Version: "1.0",
			Metadata: Metadata{
				OrgName: "legacy.example", Email: "postmaster@legacy.example", ReportID: "legacy-4711",
				DateRange: day5incl, Errors: []string{"first error", "second error"},
			},
			PolicyPublished: PolicyPublished{
				Domain: "example.org", P: DispositionQuarantine, SP: DispositionQuarantine,
				ADKIM: AlignmentRelaxed, ASPF: AlignmentRelaxed, FO: "0",
			},
			Records: []Record{{
				Row: Row{SourceIP: ip("198.51.100.20"), Count: 12,
					PolicyEvaluated: PolicyEvaluated{Disposition: ActionNone, DKIM: DMARCFail, SPF: DMARCFail,
						Reasons: []Reason{{Type: ReasonSampledOut, Comment: "pct=50"}, {Type: ReasonForwarded}}}},
				Identifiers: Identifiers{HeaderFrom: "example.org", EnvelopeFrom: "bounces.example.net", EnvelopeTo: "legacy.example"},
				AuthResults: AuthResults{
					DKIM: []DKIMAuth{{Domain: "example.org", Result: DKIMFail}},
					// Of helo and mfrom, the mfrom result is kept.
					SPF: &SPFAuth{Domain: "bounces.example.net", Scope: SPFScopeMailFrom, Result: SPFSoftFail},
				},
			}},
		}}},
		{file: "03-google-style.zip", check: func(t *testing.T, got []*Feedback) {
			f := got[0]
			expect(t, f.Metadata.OrgName == "google.com" && f.Metadata.ReportID == "9981774623810473625", "metadata %+v", f.Metadata)
			expect(t, f.Version == "" && f.Metadata.DateRange == day5incl, "version %q, range %+v", f.Version, f.Metadata.DateRange)
			expect(t, f.PolicyPublished.NP == DispositionNone && f.PolicyPublished.P == DispositionNone, "policy %+v", f.PolicyPublished)
			expect(t, len(f.Records) == 2 && totalCount(f) == 100, "%d records, %d messages", len(f.Records), totalCount(f))
			d := f.Records[0].AuthResults.DKIM
			expect(t, len(d) == 2 && d[1].Selector == "20230601" && d[1].Result == DKIMPass, "dkim %+v", d)
			expect(t, f.Records[0].AuthResults.SPF.Scope == "" && f.Records[0].Identifiers.EnvelopeFrom == "", "spf %+v", f.Records[0].AuthResults.SPF)
		}},
		{file: "04-microsoft-style.xml.gz", check: func(t *testing.T, got []*Feedback) {
			f := got[0]
			expect(t, f.Metadata.OrgName == "Enterprise Outlook" && f.PolicyPublished.P == DispositionQuarantine, "%+v", f.Metadata)
			r := f.Records[0]
			expect(t, r.Row.PolicyEvaluated.Disposition == ActionQuarantine && r.Identifiers.EnvelopeTo == "contoso.example" &&
				r.Identifiers.EnvelopeFrom == "spoofer.example" && len(r.AuthResults.DKIM) == 0, "record %+v", r)
		}},
		{file: "06-unknown-enums.xml", check: func(t *testing.T, got []*Feedback) {
			f := got[0]
			expect(t, f.Metadata.OrgName == "Sloppy Reporter" && f.Metadata.ReportID == "sloppy-1", "trimmed metadata %+v", f.Metadata)
			expect(t, f.Metadata.DateRange == day5, "range %+v (a .0 fraction is dropped)", f.Metadata.DateRange)
			p := f.PolicyPublished
			// Case and spaces are forgiven; values outside the schema are kept.
			expect(t, p.P == DispositionReject && p.P.Known() && p.DiscoveryMethod == DiscoveryPSL, "policy %+v", p)
			expect(t, p.SP == "unknown" && !p.SP.Known() && p.ADKIM == "relaxed" && !p.ADKIM.Known() && p.Testing == "no" && !p.Testing.Known(), "policy %+v", p)
			r := f.Records[0]
			pe := r.Row.PolicyEvaluated
			expect(t, r.Row.SourceIP == ip("198.51.100.99") && r.Row.Count == 6, "row %+v", r.Row)
			expect(t, pe.Disposition == "discard" && !pe.Disposition.Known() && pe.DKIM == DMARCPass && pe.SPF == "unknown" && !pe.SPF.Known(), "evaluated %+v", pe)
			expect(t, pe.Reasons[0].Type == "arc" && !pe.Reasons[0].Type.Known(), "reason %+v", pe.Reasons)
			expect(t, r.Identifiers.HeaderFrom == "Example.COM", "header_from %q kept as written", r.Identifiers.HeaderFrom)
			d := r.AuthResults.DKIM
			expect(t, d[0].Result == DKIMTempError && d[0].Result.Known() && d[1].Result == "hardfail" && !d[1].Result.Known(), "dkim %+v", d)
			s := r.AuthResults.SPF
			expect(t, s.Scope == SPFScopeMailFrom && s.Result == "unknown" && !s.Result.Known(), "spf %+v", s)
		}},
		{file: "07-missing-optional.xml", check: func(t *testing.T, got []*Feedback) {
			f := got[0]
			expect(t, f.Version == "" && f.Metadata.Email == "" && f.PolicyPublished.SP == "" && f.PolicyPublished.P == DispositionNone, "%+v", f)
			r := f.Records[0]
			expect(t, len(r.AuthResults.DKIM) == 0 && r.AuthResults.SPF == nil && r.Identifiers.EnvelopeFrom == "", "record %+v", r)
		}},
		{file: "08-multi-day.xml", check: func(t *testing.T, got []*Feedback) {
			f := got[0]
			expect(t, f.Metadata.DateRange.End.Sub(f.Metadata.DateRange.Begin) == 60*time.Hour, "range %+v", f.Metadata.DateRange)
			days := SpreadDays(f.Metadata.DateRange, f.Records[0].Row.Count)
			want := []DayCount{{Day: unix(1764547200), Count: 20}, {Day: unix(1764633600), Count: 41}, {Day: unix(1764720000), Count: 40}}
			if diff := cmp.Diff(want, days); diff != "" {
				t.Errorf("SpreadDays (-want +got):\n%s", diff)
			}
		}},
		// The "null report" some receivers send: one record, count 0, no data.
		{file: "09-null-report.xml", check: func(t *testing.T, got []*Feedback) {
			expect(t, len(got[0].Records) == 0 && got[0].Metadata.ReportID == "quiet-20251205", "%+v", got[0])
		}},
		// Yahoo's reports of May 2023 whose gzip held the word "unused"
		// (parsedmarc #409, dmarc-srg #73).
		{file: "10-yahoo-unused.xml.gz", refusal: RefusalNotXML},
		{file: "11-message-gzip.eml", check: func(t *testing.T, got []*Feedback) {
			f := got[0]
			expect(t, f.Metadata.OrgName == "Yahoo" && f.Metadata.ReportID == "1764980000.123456" && totalCount(f) == 41, "%+v", f.Metadata)
		}},
		{file: "12-message-zip.eml", check: func(t *testing.T, got []*Feedback) {
			expect(t, got[0].Metadata.ReportID == "legacy-4711" && len(got[0].Metadata.Errors) == 2, "%+v", got[0].Metadata)
		}},
		{file: "13-message-inline.eml", check: func(t *testing.T, got []*Feedback) {
			expect(t, got[0].Metadata.ReportID == "m1" && totalCount(got[0]) == 1, "%+v", got[0].Metadata)
		}},
		{file: "14-message-octet-nested.eml", check: func(t *testing.T, got []*Feedback) {
			expect(t, got[0].Metadata.ReportID == "w49" && totalCount(got[0]) == 101, "%+v", got[0].Metadata)
		}},
		{file: "15-message-yahoo-unused.eml", refusal: RefusalNotXML},
	}
}

func expect(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Errorf("unexpected: "+format, args...)
	}
}

func totalCount(f *Feedback) uint64 {
	var n uint64
	for _, r := range f.Records {
		n += r.Row.Count
	}
	return n
}

// parseCorpusFile reads a file as the intake would: a message or a file.
func parseCorpusFile(t *testing.T, path string) ([]*Feedback, error) {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if strings.HasSuffix(path, ".eml") {
		return ParseMessage(fh, Limits{})
	}
	f, err := ParseFile(fh, Limits{})
	if err != nil {
		return nil, err
	}
	return []*Feedback{f}, nil
}

func TestCorpus(t *testing.T) {
	t.Parallel()
	cases := corpusCases()
	tested := map[string]bool{}
	for _, tc := range cases {
		tested[tc.file] = true
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			got, err := parseCorpusFile(t, filepath.Join("testdata", "incoming", tc.file))
			if tc.refusal != "" {
				if r, ok := ReasonOf(err); !ok || r != tc.refusal {
					t.Fatalf("err = %v, want refusal %s", err, tc.refusal)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 {
				t.Fatalf("%d reports, want 1", len(got))
			}
			if tc.want != nil {
				if diff := cmp.Diff(tc.want, got, cmpAddr); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			}
			if tc.check != nil {
				tc.check(t, got)
			}
		})
	}
	// Every file of the corpus has a case.
	files, _ := filepath.Glob("testdata/incoming/*")
	var untested []string
	for _, f := range files {
		b := filepath.Base(f)
		if !tested[b] && b != "make.py" && b != "src" && b != "README.md" {
			untested = append(untested, b)
		}
	}
	sort.Strings(untested)
	if len(untested) > 0 {
		t.Errorf("corpus files without a case: %v", untested)
	}
}

// TestRFC9990Sample parses the draft's own sample report (Appendix B).
func TestRFC9990Sample(t *testing.T) {
	t.Parallel()
	fh, err := os.Open("testdata/xsd/dmarc-xml-0.2.xml")
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	f, err := Parse(fh, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, f.Metadata.ReportID == "3v98abbp8ya9n3va8yr8oa3ya" && f.PolicyPublished.DiscoveryMethod == DiscoveryTreeWalk, "%+v", f)
	expect(t, len(f.Records) == 1 && f.Records[0].Row.Count == 123 && f.Records[0].AuthResults.DKIM[0].Selector == "abc123", "%+v", f.Records)
}
