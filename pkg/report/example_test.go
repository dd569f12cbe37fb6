package report_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/dmarc-milter/dmarc-milter/pkg/report"
)

// A receiver builds the report message for one policy domain and day.
func ExampleBuildMessage() {
	begin := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	// A fixed random source for the example; nil means crypto/rand.
	id, _ := report.NewReportID(begin, strings.NewReader("fifteen bytes!!"))
	f := &report.Feedback{
		Metadata: report.Metadata{
			OrgName: "mx.example.org", Email: "dmarc-reports@example.org", ReportID: id,
			DateRange: report.DateRange{Begin: begin, End: begin.AddDate(0, 0, 1)},
			Generator: "dmarc-milter/1.0",
		},
		PolicyPublished: report.PolicyPublished{Domain: "example.com", P: report.DispositionReject},
		Records: report.Aggregate([]report.Record{{
			Row: report.Row{SourceIP: netip.MustParseAddr("192.0.2.10"), Count: 3, PolicyEvaluated: report.PolicyEvaluated{
				Disposition: report.ActionPass, DKIM: report.DMARCPass, SPF: report.DMARCPass,
			}},
			Identifiers: report.Identifiers{HeaderFrom: "example.com", EnvelopeFrom: "example.com"},
			AuthResults: report.AuthResults{
				DKIM: []report.DKIMAuth{{Domain: "example.com", Selector: "s1", Result: report.DKIMPass}},
				SPF:  &report.SPFAuth{Domain: "example.com", Scope: report.SPFScopeMailFrom, Result: report.SPFPass},
			},
		}}),
	}
	b, err := report.BuildMessage(report.Message{
		Feedback: f, Receiver: "example.org",
		From: "dmarc-reports@example.org", To: []string{"dmarc@example.com"},
		Date:   begin.Add(26 * time.Hour),
		Limits: report.WriteLimits{MaxBytes: 10 << 20},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(b.Filename)
	fmt.Println(b.Subject)
	fmt.Println(b.Omitted.Records, "records left out")
	// Output:
	// example.org!example.com!1796515200!1796601600!20261206mzuwm5dfmvxcaytzorsxgijb.xml.gz
	// Report Domain: example.com Submitter: example.org Report-ID: <20261206mzuwm5dfmvxcaytzorsxgijb>
	// 0 records left out
}

// The intake reads a report message, checks the dates, and counts the
// refusals by reason.
func ExampleParseMessage() {
	msg := "From: dmarc@reporter.example\r\nTo: rua@example.com\r\nSubject: Report Domain: example.com\r\n" +
		"Content-Type: text/xml\r\n\r\n" +
		`<feedback><report_metadata><org_name>reporter.example</org_name><email>dmarc@reporter.example</email>` +
		`<report_id>r-1</report_id><date_range><begin>1796515200</begin><end>1796601599</end></date_range></report_metadata>` +
		`<policy_published><domain>example.com</domain><p>none</p></policy_published>` +
		`<record><row><source_ip>192.0.2.10</source_ip><count>12</count><policy_evaluated><disposition>none</disposition>` +
		`<dkim>pass</dkim><spf>unknown</spf></policy_evaluated></row><identifiers><header_from>example.com</header_from></identifiers>` +
		`<auth_results/></record></feedback>`
	reports, err := report.ParseMessage(strings.NewReader(msg), report.Limits{})
	if reason, refused := report.ReasonOf(err); refused {
		fmt.Println("refused:", reason)
		return
	}
	f := reports[0]
	if err := f.Validate(time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)); err != nil {
		fmt.Println(err)
		return
	}
	r := f.Records[0]
	fmt.Println(f.Metadata.OrgName, f.Metadata.ReportID, r.Row.SourceIP, r.Row.Count)
	fmt.Println("spf:", r.Row.PolicyEvaluated.SPF, "known:", r.Row.PolicyEvaluated.SPF.Known())

	_, err = report.ParseFile(bytes.NewReader([]byte("unused")), report.Limits{})
	reason, _ := report.ReasonOf(err)
	fmt.Println("refused:", reason)
	// Output:
	// reporter.example r-1 192.0.2.10 12
	// spf: unknown known: false
	// refused: unknown_format
}

// A three-day report's count, spread over the UTC days it covers.
func ExampleSpreadDays() {
	dr := report.DateRange{
		Begin: time.Date(2025, 12, 1, 12, 0, 0, 0, time.UTC),
		End:   time.Date(2025, 12, 4, 0, 0, 0, 0, time.UTC),
	}
	for _, d := range report.SpreadDays(dr, 101) {
		fmt.Println(d.Day.Format("2006-01-02"), d.Count)
	}
	// Output:
	// 2025-12-01 20
	// 2025-12-02 41
	// 2025-12-03 40
}
