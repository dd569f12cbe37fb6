package web

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/intake"
	"github.com/dmarc-milter/dmarc-milter/internal/pgtest"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/health"
	"github.com/dmarc-milter/dmarc-milter/pkg/report"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testNow is the tests' clock: the default range is 2026-11-08 to
// 2026-12-07.
var testNow = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// dec is 2026-12-d 00:00 UTC.
func dec(d int) time.Time { return time.Date(2026, 12, d, 0, 0, 0, 0, time.UTC) }

// The fixture's totals, as the pages must show them (default range).
const (
	comMessages = 170 // example.com: 100 + 20 (Dec 1), 50 (Dec 2)
	comPass     = 150
	orgMessages = 30 // example.org: Dec 3, all pass
	netMessages = 12 // example.net: the XSS corpus, Dec 5, all fail
	allMessages = comMessages + orgMessages + netMessages
	inboundMsgs = 150 // the outcome counters
)

// openStore opens a fresh store: SQLite in a temp dir when url is "".
func openStore(t testing.TB, url string) *store.Store {
	t.Helper()
	if url == "" {
		url = "sqlite:" + filepath.Join(t.TempDir(), "store.db")
	}
	st, err := store.Open(context.Background(), url, store.Options{Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// fixture fills a fresh store the way the daemon would: received reports
// (ours, and the XSS corpus in testdata/xss) through the intake's import,
// resolved PTR names (one hostile), a stored health check, outcome
// counters and recorded rows of the milter, and a sent report with one
// failed destination and a suppression.
func fixture(t testing.TB, url string) *store.Store {
	t.Helper()
	st := openStore(t, url)
	ctx := context.Background()
	dir := t.TempDir()
	for _, f := range fixtureReports() {
		b, err := report.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.Metadata.ReportID+".xml"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in := intake.New(st, intake.Config{Domains: []string{"example.com", "example.org", "example.net"},
		Now: func() time.Time { return testNow }})
	im := &intake.Importer{In: in}
	sum, err := im.Import(ctx, []string{dir, filepath.Join("testdata", "xss")})
	if err != nil {
		t.Fatal(err)
	}
	// testdata/xss/03-policy-domain.xml names no domain of ours: the
	// intake refuses it, so hostile text never reaches a link's host part.
	if sum.Stored != 5 || sum.RefusedTotal() != 1 || sum.Refused[intake.ReasonNotOurDomain] != 1 {
		t.Fatalf("import: %+v, want 5 stored and 1 refused (not_our_domain)", sum)
	}
	must(t, st.SetSourcePTR(ctx, netip.MustParseAddr("192.0.2.10"), store.PTRFound, "mta1.esp.example", "esp.example", testNow))
	// A PTR name is attacker-controlled text too (whoever owns the
	// reverse zone writes it).
	must(t, st.SetSourcePTR(ctx, netip.MustParseAddr("198.51.100.66"), store.PTRFound,
		`<img src=x onerror="window.__pwned=7">.evil.example`, `<b onmouseover="window.__pwned=8">evil</b>`, testNow))
	saveHealth(t, st)
	recordInbound(t, st)
	sendReport(t, st)
	return st
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func fixtureReports() []*report.Feedback {
	s1 := report.DKIMAuth{Domain: "example.com", Selector: "s1", Result: report.DKIMPass}
	spf := func(d string, r report.SPFResult) *report.SPFAuth {
		return &report.SPFAuth{Domain: d, Scope: report.SPFScopeMailFrom, Result: r}
	}
	return []*report.Feedback{
		feedback("Receiver One", "r1-dec1", "example.com", dec(1),
			rec("192.0.2.10", 100, "example.com", report.DMARCPass, report.DMARCFail, []report.DKIMAuth{s1}, spf("bounce.esp.example", report.SPFPass)),
			rec("198.51.100.7", 20, "example.com", report.DMARCFail, report.DMARCFail, nil, spf("spoof.example", report.SPFFail))),
		feedback("Receiver Two", "r2-dec2", "example.com", dec(2),
			rec("192.0.2.10", 50, "example.com", report.DMARCPass, report.DMARCFail, []report.DKIMAuth{s1}, spf("bounce.esp.example", report.SPFPass))),
		feedback("Receiver One", "r1-dec3", "example.org", dec(3),
			rec("203.0.113.5", 30, "example.org", report.DMARCFail, report.DMARCPass, nil, spf("example.org", report.SPFPass))),
	}
}

func rec(ip string, n uint64, from string, dkim, spf report.DMARCResult, auth []report.DKIMAuth, s *report.SPFAuth) report.Record {
	disp := report.ActionNone
	if dkim != report.DMARCPass && spf != report.DMARCPass {
		disp = report.ActionReject
	}
	return report.Record{
		Row: report.Row{SourceIP: netip.MustParseAddr(ip), Count: n,
			PolicyEvaluated: report.PolicyEvaluated{Disposition: disp, DKIM: dkim, SPF: spf}},
		Identifiers: report.Identifiers{HeaderFrom: from},
		AuthResults: report.AuthResults{DKIM: auth, SPF: s},
	}
}

func feedback(org, id, domain string, d time.Time, records ...report.Record) *report.Feedback {
	return &report.Feedback{
		Metadata: report.Metadata{OrgName: org, Email: "dmarc@" + "receiver.example", ReportID: id,
			DateRange: report.DateRange{Begin: d, End: d.Add(24 * time.Hour)}},
		PolicyPublished: report.PolicyPublished{Domain: domain, P: report.DispositionReject, SP: report.DispositionQuarantine},
		Records:         records,
	}
}

func saveHealth(t testing.TB, st *store.Store) {
	rep := health.Report{Version: 1, Domain: "example.com", CheckedAt: testNow.Add(-time.Hour), Verdict: health.Warn,
		Summary: "DMARC p=reject; SPF close to its lookup limit", Counts: health.Counts{OK: 3, Warn: 1},
		Subdomains: []health.SubdomainResult{}, DKIM: []health.DKIMResult{}}
	b, err := json.Marshal(rep)
	must(t, err)
	must(t, st.SaveHealth(context.Background(), store.HealthCheck{Domain: "example.com", Checked: rep.CheckedAt,
		Verdict: string(rep.Verdict), Report: b}))
}

// recordInbound stores what the milter would have: outcome counters over
// two days (150 messages) and recorded rows, 12 of which failed DMARC for
// a p=reject domain, 3 with an override.
func recordInbound(t testing.TB, st *store.Store) {
	ctx := context.Background()
	c := func(d int, domain, result, action string, o store.Outcome, n int64) store.Counter {
		return store.Counter{Begin: dec(d), End: dec(d + 1), Domain: domain, Result: result, Action: action, Outcome: o, Count: n}
	}
	must(t, st.AddCounters(ctx, []store.Counter{
		c(1, "bank.example", "pass", "accept", store.OutcomeEvaluated, 80),
		c(1, "paypal.example", "fail", "reject", store.OutcomeReject, 15),
		c(1, "news.example", "fail", "quarantine", store.OutcomeQuarantine, 5),
		c(2, "bank.example", "pass", "accept", store.OutcomeEvaluated, 40),
		c(2, "", "", "accept", store.OutcomeBypassTrusted, 10),
	}))
	pol := store.Policy{Domain: "paypal.example", P: "reject", SP: "reject", NP: "reject", ADKIM: "r", ASPF: "r", FO: "0", Testing: "n", DiscoveryMethod: "treewalk"}
	row := func(ip string, n int64, reasons ...store.Reason) store.Row {
		return store.Row{Begin: dec(1), End: dec(2), Policy: pol, SourceIP: netip.MustParseAddr(ip), HeaderFrom: "paypal.example",
			EnvelopeFrom: "paypal.example", Disposition: "reject", DKIMAligned: "fail", SPFAligned: "fail", Reasons: reasons, Count: n,
			SPF: &store.SPFResult{Domain: "paypal.example", Scope: "mfrom", Result: "fail"}}
	}
	_, err := st.RecordRows(ctx, []store.Row{
		row("203.0.113.99", 9),
		row("203.0.113.98", 3, store.Reason{Type: "mailing_list", Comment: "List-Id present"}),
	})
	must(t, err)
}

// sendReport builds the report of the recorded rows and sends it to two
// destinations: one accepted, one failed for good and suppressed.
func sendReport(t testing.TB, st *store.Store) {
	ctx := context.Background()
	groups, err := st.Groups(ctx, dec(1), dec(2))
	must(t, err)
	if len(groups) != 1 {
		t.Fatalf("groups: %d, want 1", len(groups))
	}
	cl, err := st.ClaimReport(ctx, groups[0], "test", time.Minute)
	must(t, err)
	must(t, st.SaveBuilt(ctx, cl, store.Built{ReportID: "report-1", Filename: "r.xml.gz", Data: []byte("x"),
		Deliveries: []store.Delivery{{Address: "rua@paypal.example", State: store.DeliveryPending},
			{Address: "dmarc@gone.example", State: store.DeliveryPending}}}))
	must(t, st.MarkSent(ctx, cl, "rua@paypal.example"))
	must(t, st.MarkFailed(ctx, cl, "dmarc@gone.example", store.Failure{Err: "550 5.1.1 no such user",
		SuppressUntil: testNow.Add(30 * 24 * time.Hour)}))
}
