package report

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fuzzLimits keep the fuzzers fast; the properties hold for any limits.
var fuzzLimits = Limits{MaxInputBytes: 1 << 20, MaxXMLBytes: 1 << 20, MaxRecords: 50, MaxDepth: 12, MaxTokenBytes: 4 << 10, MaxParts: 16, MaxReports: 3}

func addSeeds(f *testing.F, globs ...string) {
	for _, g := range globs {
		files, _ := filepath.Glob(g)
		for _, name := range files {
			if data, err := os.ReadFile(name); err == nil {
				f.Add(data)
			}
		}
	}
}

// checkParsed is the property of every successful or failed read: a
// refusal is a *RefusalError and comes without a report; a report keeps
// within the limits, and when its values are ones we can write, writing
// and reading it again gives it back.
func checkParsed(t *testing.T, fb *Feedback, err error) {
	t.Helper()
	if err != nil {
		if _, ok := ReasonOf(err); !ok {
			t.Fatalf("an error that is not a refusal: %v", err)
		}
		if fb != nil {
			t.Fatal("a report with an error")
		}
		return
	}
	if len(fb.Records) > fuzzLimits.MaxRecords {
		t.Fatalf("%d records over the limit", len(fb.Records))
	}
	doc, err := Marshal(fb)
	if err != nil {
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("Marshal: %v", err)
		}
		return // values outside the schema: kept when read, not written
	}
	again, err := Parse(bytes.NewReader(doc), Limits{})
	if err != nil {
		t.Fatalf("reading back what Marshal wrote: %v\n%s", err, doc)
	}
	if diff := cmp.Diff(normalized(fb), again, cmpAddr); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
}

// normalized is f as Marshal states it: version 1.0, the errors in one
// element, at most MaxDKIMPerRow DKIM results.
func normalized(f *Feedback) *Feedback {
	n := *f
	n.Version = Version
	if len(f.Metadata.Errors) > 1 {
		n.Metadata.Errors = []string{strings.Join(f.Metadata.Errors, "; ")}
	}
	n.Records = make([]Record, len(f.Records))
	for i, r := range f.Records {
		r.AuthResults.DKIM = dkimForWrite(r.AuthResults.DKIM)
		n.Records[i] = r
	}
	return &n
}

func FuzzParse(f *testing.F) {
	// Small seeds: the fuzzer minimizes every new input, and that is slow
	// for large ones.
	addSeeds(f, "testdata/incoming/*.xml", "testdata/hostile/*.xml")
	f.Add([]byte(minimalReport(2, "")))
	f.Fuzz(func(t *testing.T, data []byte) {
		fb, err := Parse(bytes.NewReader(data), fuzzLimits)
		checkParsed(t, fb, err)
	})
}

func FuzzParseMessage(f *testing.F) {
	addSeeds(f, "testdata/incoming/*.eml", "testdata/golden-message.eml")
	b, err := BuildMessage(goldenMessage())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b.Message)
	f.Add(zipped(f, zipEntrySpec{name: "r.xml", data: minimalReport(1, "")}))
	f.Add(gzipped(f, minimalReport(1, "")))
	f.Fuzz(func(t *testing.T, data []byte) {
		reports, err := ParseMessage(bytes.NewReader(data), fuzzLimits)
		if err == nil && (len(reports) == 0 || len(reports) > fuzzLimits.MaxReports) {
			t.Fatalf("%d reports without an error", len(reports))
		}
		for _, fb := range reports {
			checkParsed(t, fb, nil)
		}
		if err != nil {
			checkParsed(t, nil, err)
		}
		// The same bytes as a file (xml, gzip, zip).
		fb, err := ParseFile(bytes.NewReader(data), fuzzLimits)
		checkParsed(t, fb, err)
	})
}

// FuzzRoundTrip: a report generated from the fuzzer's bytes, written by
// Marshal and read by Parse, comes back equal.
func FuzzRoundTrip(f *testing.F) {
	for i := range uint64(8) {
		f.Add(i, i*7919)
	}
	f.Fuzz(func(t *testing.T, a, b uint64) {
		want := genFeedback(rand.New(rand.NewPCG(a, b)))
		doc, err := Marshal(want)
		if err != nil {
			t.Fatalf("Marshal of a generated report: %v", err)
		}
		got, err := Parse(bytes.NewReader(doc), Limits{})
		if err != nil {
			t.Fatalf("Parse: %v\n%s", err, doc)
		}
		if diff := cmp.Diff(normalized(want), got, cmpAddr); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
	})
}

// TestRoundTripGenerated runs the round trip on generated reports and has
// xmllint validate some of them against the RFC 9990 XSD.
func TestRoundTripGenerated(t *testing.T) {
	t.Parallel()
	for i := range uint64(300) {
		want := genFeedback(rand.New(rand.NewPCG(i, 42)))
		doc, err := Marshal(want)
		if err != nil {
			t.Fatalf("report %d: Marshal: %v", i, err)
		}
		got, err := Parse(bytes.NewReader(doc), Limits{})
		if err != nil {
			t.Fatalf("report %d: Parse: %v\n%s", i, err, doc)
		}
		if diff := cmp.Diff(normalized(want), got, cmpAddr); diff != "" {
			t.Fatalf("report %d (-want +got):\n%s", i, diff)
		}
		if i%30 == 0 {
			validateXSD(t, doc, xsdRFC9990)
		}
	}
}

// genFeedback builds a valid report: every field in use, text with
// characters XML must escape, optional elements present or not.
func genFeedback(r *rand.Rand) *Feedback {
	text := func(empty bool) string {
		if empty && r.IntN(3) == 0 {
			return ""
		}
		words := []string{"a", "Ω", "x<y", "&amp;", "ü", "]]>", "'\"", "tab\there", "line\nbreak", "0", "-"}
		var parts []string
		for range 1 + r.IntN(4) {
			parts = append(parts, words[r.IntN(len(words))])
		}
		return strings.Join(parts, " ")
	}
	pick := func(vals ...string) string { return vals[r.IntN(len(vals))] }
	begin := time.Unix(MinReportTime.Unix()+r.Int64N(20*365*86400), 0).UTC()
	f := &Feedback{
		Metadata: Metadata{
			OrgName: text(false), Email: text(false), ExtraContactInfo: text(true),
			ReportID:  pick("r1", "1721054318-example.com@example.org", "<a.b@c>", "x!#$%&'*+-/=?^_`{|}~"),
			DateRange: DateRange{Begin: begin, End: begin.Add(time.Duration(1+r.Int64N(3*86400)) * time.Second)},
			Generator: text(true),
		},
		PolicyPublished: PolicyPublished{
			Domain: pick("example.com", "sub.example.org", "xn--bcher-kva.example"),
			P:      Disposition(pick("none", "quarantine", "reject")), SP: Disposition(pick("", "none", "reject")),
			NP: Disposition(pick("", "quarantine")), ADKIM: Alignment(pick("", "r", "s")), ASPF: Alignment(pick("", "r", "s")),
			DiscoveryMethod: DiscoveryMethod(pick("", "psl", "treewalk")), FO: pick("", "0", "1:d:s"), Testing: Testing(pick("", "n", "y")),
		},
	}
	if r.IntN(2) == 0 {
		f.Metadata.Errors = []string{text(false)}
	}
	for range 1 + r.IntN(5) {
		f.Records = append(f.Records, genRecord(r, text, pick))
	}
	return f
}

func genRecord(r *rand.Rand, text func(bool) string, pick func(...string) string) Record {
	var raw [16]byte
	binary.LittleEndian.PutUint64(raw[:], r.Uint64())
	binary.LittleEndian.PutUint64(raw[8:], r.Uint64())
	addr := netip.AddrFrom16(raw)
	if r.IntN(2) == 0 {
		addr = netip.AddrFrom4([4]byte(raw[:4]))
	}
	rec := Record{
		Row: Row{SourceIP: addr.Unmap(), Count: 1 + r.Uint64N(1<<62), PolicyEvaluated: PolicyEvaluated{
			Disposition: ActionDisposition(pick("none", "pass", "quarantine", "reject")),
			DKIM:        DMARCResult(pick("pass", "fail")), SPF: DMARCResult(pick("pass", "fail")),
		}},
		Identifiers: Identifiers{HeaderFrom: pick("example.com", "a.example.com"), EnvelopeFrom: pick("", "bounce.example.net"), EnvelopeTo: pick("", "example.org")},
	}
	for range r.IntN(3) {
		rec.Row.PolicyEvaluated.Reasons = append(rec.Row.PolicyEvaluated.Reasons, Reason{
			Type: ReasonType(pick("local_policy", "mailing_list", "other", "policy_test_mode", "trusted_forwarder")), Comment: text(true),
		})
	}
	for range r.IntN(4) {
		rec.AuthResults.DKIM = append(rec.AuthResults.DKIM, DKIMAuth{
			Domain: pick("example.com", "esp.example"), Selector: pick("", "s1", "2026a"),
			Result: DKIMResult(pick("none", "pass", "fail", "policy", "neutral", "temperror", "permerror")), HumanResult: text(true),
		})
	}
	if r.IntN(4) > 0 {
		rec.AuthResults.SPF = &SPFAuth{
			Domain: pick("example.com", "helo.example"), Scope: SPFScope(pick("", "mfrom")),
			Result: SPFResult(pick("none", "pass", "fail", "softfail", "policy", "neutral", "temperror", "permerror")), HumanResult: text(true),
		}
	}
	return rec
}
