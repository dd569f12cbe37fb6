package report_test

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/report"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// recordFromPolicy maps one message's policy.ReportRow onto a record (the
// recorder's job; pkg/report does not import pkg/policy). It is here to
// show that every value pkg/policy produces is one this package can write.
func recordFromPolicy(r policy.ReportRow) report.Record {
	rec := report.Record{
		Row: report.Row{SourceIP: r.SourceIP, Count: 1, PolicyEvaluated: report.PolicyEvaluated{
			Disposition: report.ActionDisposition(r.Disposition),
			DKIM:        report.DMARCResult(r.DKIM),
			SPF:         report.DMARCResult(r.SPF),
		}},
		Identifiers: report.Identifiers{HeaderFrom: r.HeaderFrom, EnvelopeFrom: r.EnvelopeFrom, EnvelopeTo: r.EnvelopeTo},
	}
	for _, o := range r.Reasons {
		// RFC 9990 has no sampled_out: RFC9990 writes it as "other".
		rec.Row.PolicyEvaluated.Reasons = append(rec.Row.PolicyEvaluated.Reasons,
			report.Reason{Type: report.ReasonType(o.Type()), Comment: o.Comment}.RFC9990())
	}
	for _, d := range r.DKIMResults {
		rec.AuthResults.DKIM = append(rec.AuthResults.DKIM, report.DKIMAuth{
			Domain: d.Domain, Selector: d.Selector, Result: report.DKIMResult(d.Result), HumanResult: d.HumanResult,
		})
	}
	if s := r.SPFResult; s != nil {
		rec.AuthResults.SPF = &report.SPFAuth{
			Domain: s.Domain, Scope: report.SPFScope(s.Scope), Result: report.SPFResult(s.Result), HumanResult: s.HumanResult,
		}
	}
	return rec
}

func policyPublishedFromPolicy(p policy.PolicyPublished) report.PolicyPublished {
	t := report.TestingNo
	if p.Testing {
		t = report.TestingYes
	}
	return report.PolicyPublished{
		Domain: p.Domain, P: report.Disposition(p.P), SP: report.Disposition(p.SP), NP: report.Disposition(p.NP),
		ADKIM: report.Alignment(p.ADKIM), ASPF: report.Alignment(p.ASPF),
		DiscoveryMethod: report.DiscoveryMethod(p.DiscoveryMethod), FO: p.FO, Testing: t,
	}
}

// TestPolicyRowsAreWritable: rows with every value pkg/policy gives
// (dispositions, override types, DKIM and SPF results) make a report that
// Marshal accepts and the RFC 9990 XSD validates.
func TestPolicyRowsAreWritable(t *testing.T) {
	t.Parallel()
	pp := policy.PolicyPublished{
		Domain: "example.com", P: policy.DispositionReject, SP: policy.DispositionQuarantine, NP: policy.DispositionNone,
		ADKIM: policy.AlignStrict, ASPF: policy.AlignRelaxed, DiscoveryMethod: policy.MethodPSL, FO: "1", Testing: true,
	}
	var rows []policy.ReportRow
	overrides := []policy.Reason{policy.ReasonTestMode, policy.ReasonSampledOut, policy.ReasonAllowFrom, policy.ReasonAllowNetwork,
		policy.ReasonMonitorMode, policy.ReasonTrustedForwarderNetwork, policy.ReasonTrustedForwarderDKIM, policy.ReasonListHeaders,
		policy.ReasonRejectAsQuarantine, policy.ReasonTempErrorAccepted, policy.ReasonFromQuarantine}
	dkim := []verify.Result{verify.ResultNone, verify.ResultPass, verify.ResultFail, verify.ResultPolicy,
		verify.ResultNeutral, verify.ResultTempError, verify.ResultPermError}
	spf := []verify.Result{verify.ResultNone, verify.ResultPass, verify.ResultFail, verify.ResultSoftFail,
		verify.ResultNeutral, verify.ResultPolicy, verify.ResultTempError, verify.ResultPermError}
	disps := []policy.ReportDisposition{policy.ReportNone, policy.ReportPass, policy.ReportQuarantine, policy.ReportReject}
	for i, o := range overrides {
		r := policy.ReportRow{
			PolicyPublished: pp, SourceIP: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}),
			Disposition: disps[i%len(disps)], DKIM: policy.AlignedFail, SPF: policy.AlignedPass,
			Reasons:    []policy.Override{{Reason: o, Comment: "c"}},
			HeaderFrom: "example.com", EnvelopeFrom: "",
			SPFResult: &policy.SPFAuth{Domain: "helo.example", Scope: verify.ScopeMailFrom, Result: spf[i%len(spf)]},
		}
		for j, d := range dkim {
			r.DKIMResults = append(r.DKIMResults, policy.DKIMAuth{Domain: "example.com", Selector: string(rune('a' + j)), Result: d})
		}
		rows = append(rows, r)
	}
	for i, s := range spf {
		rows = append(rows, policy.ReportRow{
			PolicyPublished: pp, SourceIP: netip.MustParseAddr("2001:db8::1"), Disposition: policy.ReportNone, DKIM: policy.AlignedPass, SPF: policy.AlignedFail,
			HeaderFrom: "example.com", EnvelopeFrom: "example.net", EnvelopeTo: "example.org",
			SPFResult: &policy.SPFAuth{Domain: "example.net", Scope: verify.ScopeMailFrom, Result: s, HumanResult: string(rune('a' + i))},
		})
	}
	var recs []report.Record
	for _, r := range rows {
		recs = append(recs, recordFromPolicy(r))
	}
	begin := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	f := &report.Feedback{
		Metadata: report.Metadata{OrgName: "example.org", Email: "d@example.org", ReportID: "r1",
			DateRange: report.DateRange{Begin: begin, End: begin.AddDate(0, 0, 1)}},
		PolicyPublished: policyPublishedFromPolicy(pp),
		Records:         report.Aggregate(append(recs, recs...)),
	}
	doc, err := report.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Records) != len(rows) || f.Records[0].Row.Count != 2 {
		t.Errorf("Aggregate: %d records (want %d), first count %d (want 2)", len(f.Records), len(rows), f.Records[0].Row.Count)
	}
	bin, err := exec.LookPath("xmllint")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("xmllint not found (Debian libxml2-utils): %v", err)
		}
		t.Skip("******** xmllint not installed (apt-get install libxml2-utils): XSD validation SKIPPED ********")
	}
	path := filepath.Join(t.TempDir(), "r.xml")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "--noout", "--schema", "testdata/xsd/dmarc-xml-0.2.xsd", path).CombinedOutput(); err != nil {
		t.Fatalf("xmllint: %v\n%s", err, out)
	}
}
