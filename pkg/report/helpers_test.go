package report

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files of pkg/report/testdata")

// xsdRFC9990 is the RFC 9990 schema (draft -32 Appendix A), copied from
// the shared test data (testdata/xsd/SOURCE.md).
const xsdRFC9990 = "testdata/xsd/dmarc-xml-0.2.xsd"

// validateXSD runs xmllint (Debian libxml2-utils) on doc against xsd. A
// missing xmllint fails the test under CI=true and skips it loudly
// otherwise.
func validateXSD(t *testing.T, doc []byte, xsd string) {
	t.Helper()
	bin, err := exec.LookPath("xmllint")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("xmllint not found (Debian package libxml2-utils, scripts/install-deps.sh): %v", err)
		}
		t.Skip("******** xmllint not installed (apt-get install libxml2-utils): XSD validation SKIPPED ********")
	}
	path := filepath.Join(t.TempDir(), "report.xml")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--noout", "--schema", xsd, path).CombinedOutput()
	if err != nil {
		t.Fatalf("xmllint --schema %s: %v\n%s\ndocument:\n%s", xsd, err, out, doc)
	}
}

// golden compares got with testdata/name byte for byte; -update rewrites
// the file. A mismatch leaves name.got beside it (gitignored).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update once to create it)", err)
	}
	if !bytes.Equal(want, got) {
		_ = os.WriteFile(path+".got", got, 0o644)
		t.Errorf("%s differs from the golden file; see %s.got (go test -update rewrites it)", path, path)
	}
}

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// evaluation is one message as the recorder would see it: the fixture of
// the golden report lists messages, and Aggregate groups them.
type evaluation struct {
	n   int // how many identical messages
	rec Record
}

// goldenEvaluations are the messages of the golden report's day: direct
// mail passing with two DKIM signatures, a subdomain, a mailing list over
// IPv6, the null sender, monitor mode, pct sampling, an envelope_to.
func goldenEvaluations() []evaluation {
	pass := PolicyEvaluated{Disposition: ActionPass, DKIM: DMARCPass, SPF: DMARCPass}
	return []evaluation{
		{n: 1200, rec: Record{
			Row:         Row{SourceIP: ip("192.0.2.10"), PolicyEvaluated: pass},
			Identifiers: Identifiers{HeaderFrom: "example.com", EnvelopeFrom: "example.com"},
			AuthResults: AuthResults{
				DKIM: []DKIMAuth{
					{Domain: "example.com", Selector: "sel2026", Result: DKIMPass},
					{Domain: "esp.example.net", Selector: "s1", Result: DKIMPass},
				},
				SPF: &SPFAuth{Domain: "example.com", Scope: SPFScopeMailFrom, Result: SPFPass},
			},
		}},
		{n: 35, rec: Record{
			Row:         Row{SourceIP: ip("192.0.2.11"), PolicyEvaluated: pass},
			Identifiers: Identifiers{HeaderFrom: "news.example.com", EnvelopeFrom: "bounce.example.com"},
			AuthResults: AuthResults{
				DKIM: []DKIMAuth{{Domain: "example.com", Selector: "sel2026", Result: DKIMPass}},
				SPF:  &SPFAuth{Domain: "bounce.example.com", Scope: SPFScopeMailFrom, Result: SPFPass},
			},
		}},
		{n: 3, rec: Record{
			Row: Row{SourceIP: ip("2001:db8:4::25"), PolicyEvaluated: PolicyEvaluated{
				Disposition: ActionNone, DKIM: DMARCFail, SPF: DMARCFail,
				Reasons: []Reason{{Type: ReasonMailingList, Comment: "List-Id: <announce.lists.example.org>"}},
			}},
			Identifiers: Identifiers{HeaderFrom: "example.com", EnvelopeFrom: "lists.example.org"},
			AuthResults: AuthResults{
				DKIM: []DKIMAuth{
					{Domain: "example.com", Selector: "sel2026", Result: DKIMFail, HumanResult: "body hash did not verify"},
					{Domain: "lists.example.org", Selector: "list", Result: DKIMPass},
				},
				SPF: &SPFAuth{Domain: "lists.example.org", Scope: SPFScopeMailFrom, Result: SPFPass},
			},
		}},
		{n: 5, rec: Record{
			Row: Row{SourceIP: ip("198.51.100.7"), PolicyEvaluated: PolicyEvaluated{
				Disposition: ActionReject, DKIM: DMARCFail, SPF: DMARCFail,
			}},
			// The null sender: envelope_from present and empty (RFC 9990 §3.1.1.10).
			Identifiers: Identifiers{HeaderFrom: "example.com", EnvelopeFrom: ""},
			AuthResults: AuthResults{
				SPF: &SPFAuth{Domain: "mx.forger.example", Scope: SPFScopeMailFrom, Result: SPFFail},
			},
		}},
		{n: 42, rec: Record{
			Row: Row{SourceIP: ip("203.0.113.9"), PolicyEvaluated: PolicyEvaluated{
				Disposition: ActionNone, DKIM: DMARCFail, SPF: DMARCFail,
				Reasons: []Reason{{Type: ReasonLocalPolicy, Comment: "monitor mode: would reject"}},
			}},
			Identifiers: Identifiers{HeaderFrom: "example.com", EnvelopeFrom: "forger.example"},
			AuthResults: AuthResults{
				DKIM: []DKIMAuth{{Domain: "forger.example", Selector: "x", Result: DKIMPermError, HumanResult: "no key"}},
				SPF:  &SPFAuth{Domain: "forger.example", Scope: SPFScopeMailFrom, Result: SPFSoftFail},
			},
		}},
		{n: 7, rec: Record{
			Row: Row{SourceIP: ip("203.0.113.10"), PolicyEvaluated: PolicyEvaluated{
				Disposition: ActionQuarantine, DKIM: DMARCFail, SPF: DMARCFail,
				Reasons: []Reason{Reason{Type: ReasonSampledOut, Comment: "pct=50"}.RFC9990()},
			}},
			Identifiers: Identifiers{HeaderFrom: "example.com", EnvelopeFrom: "forger.example"},
			AuthResults: AuthResults{
				SPF: &SPFAuth{Domain: "forger.example", Scope: SPFScopeMailFrom, Result: SPFFail},
			},
		}},
		{n: 2, rec: Record{
			Row:         Row{SourceIP: ip("192.0.2.10"), PolicyEvaluated: pass},
			Identifiers: Identifiers{HeaderFrom: "example.com", EnvelopeFrom: "example.com", EnvelopeTo: "example.org"},
			AuthResults: AuthResults{
				DKIM: []DKIMAuth{{Domain: "example.com", Selector: "sel2026", Result: DKIMPass}},
				SPF:  &SPFAuth{Domain: "example.com", Scope: SPFScopeMailFrom, Result: SPFPass},
			},
		}},
	}
}

// goldenFeedback is the golden report: the evaluations above, message by
// message, grouped by Aggregate.
func goldenFeedback() *Feedback {
	var msgs []Record
	for _, e := range goldenEvaluations() {
		for range e.n {
			r := e.rec
			r.Row.Count = 1
			msgs = append(msgs, r)
		}
	}
	return &Feedback{
		Metadata: Metadata{
			OrgName:          "mx.example.org",
			Email:            "dmarc-reports@example.org",
			ExtraContactInfo: "https://example.org/dmarc",
			ReportID:         "20261206abcdefghijklmnopqrstuvwx",
			DateRange:        DateRange{Begin: day(2026, 12, 6), End: day(2026, 12, 7)},
			Generator:        "dmarc-milter/test",
		},
		PolicyPublished: PolicyPublished{
			Domain: "example.com", P: DispositionReject, SP: DispositionQuarantine, NP: DispositionReject,
			ADKIM: AlignmentRelaxed, ASPF: AlignmentRelaxed, DiscoveryMethod: DiscoveryTreeWalk, Testing: TestingNo,
		},
		Records: Aggregate(msgs),
	}
}
