package report

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestMarshalGolden(t *testing.T) {
	t.Parallel()
	f := goldenFeedback()
	if got := len(f.Records); got != 7 {
		t.Fatalf("Aggregate gave %d records, want 7", got)
	}
	var total uint64
	for _, r := range f.Records {
		total += r.Row.Count
	}
	if total != 1200+35+3+5+42+7+2 {
		t.Fatalf("total count %d", total)
	}
	doc, err := Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "golden-report.xml", doc)
	validateXSD(t, doc, xsdRFC9990)
}

// TestMarshalTestingMode: a policy published with t=y, whose failing
// messages were handled one level below p (RFC 9990 §3.1.6
// policy_test_mode), in a report with every optional element.
func TestMarshalTestingMode(t *testing.T) {
	t.Parallel()
	f := goldenFeedback()
	f.PolicyPublished.Testing = TestingYes
	f.PolicyPublished.FO = "1:d"
	f.Metadata.Errors = []string{"rua URI 2 is not a mailto: URI", "sp=bogus ignored"}
	f.Records = []Record{{
		Row: Row{SourceIP: ip("2001:db8::1"), Count: 9, PolicyEvaluated: PolicyEvaluated{
			Disposition: ActionQuarantine, DKIM: DMARCFail, SPF: DMARCFail,
			Reasons: []Reason{{Type: ReasonPolicyTestMode, Comment: "t=y"}, {Type: ReasonTrustedForwarder}},
		}},
		Identifiers: Identifiers{HeaderFrom: "example.com", EnvelopeFrom: "example.com", EnvelopeTo: "example.org"},
		AuthResults: AuthResults{SPF: &SPFAuth{Domain: "example.com", Result: SPFTempError, HumanResult: "DNS timeout"}},
	}}
	doc, err := Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "golden-testing.xml", doc)
	validateXSD(t, doc, xsdRFC9990)
	if !bytes.Contains(doc, []byte("<error>rua URI 2 is not a mailto: URI; sp=bogus ignored</error>")) {
		t.Errorf("errors not joined into one element:\n%s", doc)
	}
}

func TestMarshalRefusesWhatTheSchemaRefuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mutate func(f *Feedback)
	}{
		{"no org_name", func(f *Feedback) { f.Metadata.OrgName = "" }},
		{"no email", func(f *Feedback) { f.Metadata.Email = "" }},
		{"report_id not dot-atom", func(f *Feedback) { f.Metadata.ReportID = "a b" }},
		{"begin == end", func(f *Feedback) { f.Metadata.DateRange.End = f.Metadata.DateRange.Begin }},
		{"no domain", func(f *Feedback) { f.PolicyPublished.Domain = "" }},
		{"p unknown", func(f *Feedback) { f.PolicyPublished.P = "unknown" }},
		{"sp unknown", func(f *Feedback) { f.PolicyPublished.SP = "Reject" }},
		{"np unknown", func(f *Feedback) { f.PolicyPublished.NP = "x" }},
		{"adkim unknown", func(f *Feedback) { f.PolicyPublished.ADKIM = "relaxed" }},
		{"aspf unknown", func(f *Feedback) { f.PolicyPublished.ASPF = "x" }},
		{"discovery unknown", func(f *Feedback) { f.PolicyPublished.DiscoveryMethod = "walk" }},
		{"testing unknown", func(f *Feedback) { f.PolicyPublished.Testing = "yes" }},
		{"no records", func(f *Feedback) { f.Records = nil }},
		{"no source ip", func(f *Feedback) { f.Records[0].Row.SourceIP = netip.Addr{} }},
		{"disposition unknown", func(f *Feedback) { f.Records[1].Row.PolicyEvaluated.Disposition = "discard" }},
		{"aligned dkim unknown", func(f *Feedback) { f.Records[1].Row.PolicyEvaluated.DKIM = "none" }},
		{"aligned spf unknown", func(f *Feedback) { f.Records[1].Row.PolicyEvaluated.SPF = "softfail" }},
		{"sampled_out is RFC 7489 only", func(f *Feedback) {
			f.Records[1].Row.PolicyEvaluated.Reasons = []Reason{{Type: ReasonSampledOut}}
		}},
		{"no header_from", func(f *Feedback) { f.Records[0].Identifiers.HeaderFrom = "" }},
		{"dkim result unknown", func(f *Feedback) { f.Records[0].AuthResults.DKIM[0].Result = "unknown" }},
		{"spf result unknown", func(f *Feedback) { f.Records[0].AuthResults.SPF.Result = "error" }},
		{"spf scope helo", func(f *Feedback) { f.Records[0].AuthResults.SPF.Scope = SPFScopeHELO }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := goldenFeedback()
			tc.mutate(f)
			doc, err := Marshal(f)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Marshal = %v, want ErrInvalid; document:\n%s", err, doc)
			}
		})
	}
}

// TestMarshalLimited: a report over its size or record bound keeps the
// records with the highest counts, says what it left out in its error
// element and in its result, and stays valid and within the bound.
func TestMarshalLimited(t *testing.T) {
	t.Parallel()
	full, err := Marshal(goldenFeedback())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name         string
		lim          WriteLimits
		wantRecords  int
		wantOmitted  Omitted
		wantTooSmall bool
	}{
		{name: "no bound", lim: WriteLimits{}, wantRecords: 7},
		{name: "exact size", lim: WriteLimits{MaxBytes: len(full)}, wantRecords: 7},
		{name: "3 records", lim: WriteLimits{MaxRecords: 3}, wantRecords: 3,
			wantOmitted: Omitted{Records: 4, Messages: 5 + 3 + 2 + 7}},
		{name: "1 record", lim: WriteLimits{MaxRecords: 1}, wantRecords: 1,
			wantOmitted: Omitted{Records: 6, Messages: 1294 - 1200}},
		{name: "bytes", lim: WriteLimits{MaxBytes: len(full) - 1}, wantRecords: -1},
		{name: "bytes half", lim: WriteLimits{MaxBytes: len(full) / 2}, wantRecords: -1},
		{name: "too small", lim: WriteLimits{MaxBytes: 900}, wantTooSmall: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := goldenFeedback()
			doc, om, err := MarshalLimited(f, tc.lim)
			if tc.wantTooSmall {
				if !errors.Is(err, ErrLimitTooSmall) {
					t.Fatalf("err = %v, want ErrLimitTooSmall", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.lim.MaxBytes > 0 && len(doc) > tc.lim.MaxBytes {
				t.Errorf("%d bytes > limit %d", len(doc), tc.lim.MaxBytes)
			}
			got, err := Parse(bytes.NewReader(doc), DefaultLimits())
			if err != nil {
				t.Fatal(err)
			}
			var kept uint64
			for _, r := range got.Records {
				kept += r.Row.Count
			}
			if kept+om.Messages != 1294 || len(got.Records)+om.Records != 7 {
				t.Errorf("kept %d records/%d messages, omitted %+v: does not add up to 7/1294", len(got.Records), kept, om)
			}
			if tc.wantRecords >= 0 && len(got.Records) != tc.wantRecords {
				t.Errorf("%d records, want %d", len(got.Records), tc.wantRecords)
			}
			if tc.wantRecords >= 0 && om != tc.wantOmitted {
				t.Errorf("omitted %+v, want %+v", om, tc.wantOmitted)
			}
			wantErr := ""
			if om.Records > 0 {
				wantErr = fmt.Sprintf("%d of 7 records (%d of 1294 messages) left out", om.Records, om.Messages)
			}
			gotErr := strings.Join(got.Metadata.Errors, "|")
			if wantErr == "" && gotErr != "" || !strings.Contains(gotErr, wantErr) {
				t.Errorf("error element %q, want it to say %q", gotErr, wantErr)
			}
			validateXSD(t, doc, xsdRFC9990)
		})
	}
}

func TestDKIMBoundPerRow(t *testing.T) {
	t.Parallel()
	f := goldenFeedback()
	var sigs []DKIMAuth
	for i := range 150 {
		res := DKIMFail
		if i%3 == 0 {
			res = DKIMPass
		}
		sigs = append(sigs, DKIMAuth{Domain: fmt.Sprintf("d%d.example", i), Selector: "s", Result: res})
	}
	f.Records[0].AuthResults.DKIM = sigs
	doc, err := Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(bytes.NewReader(doc), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	d := got.Records[0].AuthResults.DKIM
	if len(d) != MaxDKIMPerRow {
		t.Fatalf("%d DKIM results, want %d", len(d), MaxDKIMPerRow)
	}
	for i := range 50 { // the 50 passing ones come first, in order
		if d[i].Result != DKIMPass || d[i].Domain != fmt.Sprintf("d%d.example", 3*i) {
			t.Fatalf("result %d = %+v", i, d[i])
		}
	}
}

func TestAggregate(t *testing.T) {
	t.Parallel()
	a := Record{Row: Row{SourceIP: ip("192.0.2.1"), Count: 2, PolicyEvaluated: PolicyEvaluated{Disposition: ActionNone, DKIM: DMARCPass, SPF: DMARCFail}},
		Identifiers: Identifiers{HeaderFrom: "example.com"}}
	b := a
	b.Row.SourceIP = ip("192.0.2.2")
	b.Row.Count = 1
	c := a
	c.AuthResults.DKIM = []DKIMAuth{{Domain: "example.com", Selector: "s", Result: DKIMPass}}
	got := Aggregate([]Record{b, a, c, a, b, b})
	want := []uint64{4, 3, 2}
	if len(got) != 3 {
		t.Fatalf("%d records, want 3", len(got))
	}
	for i, r := range got {
		if r.Row.Count != want[i] {
			t.Errorf("record %d count %d, want %d", i, r.Row.Count, want[i])
		}
	}
	if got[0].Row.SourceIP != a.Row.SourceIP || got[1].Row.SourceIP != b.Row.SourceIP || len(got[2].AuthResults.DKIM) != 1 {
		t.Errorf("wrong grouping: %+v", got)
	}
}
