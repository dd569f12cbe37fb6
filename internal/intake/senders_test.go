package intake

import (
	"context"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/report"
)

// sendersZone: the reverse and forward names of the scenario's sources.
const sendersZone = `
10.2.0.192.in-addr.arpa. IN PTR o1.mailer.esp.example.
11.2.0.192.in-addr.arpa. IN PTR o2.mailer.esp.example.
o1.mailer.esp.example. IN A 192.0.2.10
o2.mailer.esp.example. IN A 192.0.2.11
5.100.51.198.in-addr.arpa. IN PTR mx.example.com.
mx.example.com. IN A 198.51.100.5
20.113.0.203.in-addr.arpa. IN PTR mail.google.example.
mail.google.example. IN A 192.0.2.99
50.2.0.192.in-addr.arpa. IN PTR mta.crm.example.
mta.crm.example. IN A 192.0.2.50
`

var (
	dec1 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	nov1 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
)

// rec builds a record.
func rec(ip string, n uint64, dkimAligned, spfAligned report.DMARCResult, dkim []report.DKIMAuth, spf *report.SPFAuth, reasons ...report.Reason) report.Record {
	disp := report.ActionNone
	if dkimAligned != report.DMARCPass && spfAligned != report.DMARCPass {
		disp = report.ActionReject
	}
	return report.Record{
		Row: report.Row{SourceIP: netip.MustParseAddr(ip), Count: n,
			PolicyEvaluated: report.PolicyEvaluated{Disposition: disp, DKIM: dkimAligned, SPF: spfAligned, Reasons: reasons}},
		Identifiers: report.Identifiers{HeaderFrom: "example.com"},
		AuthResults: report.AuthResults{DKIM: dkim, SPF: spf},
	}
}

func feedback(id string, day time.Time, records ...report.Record) *report.Feedback {
	return &report.Feedback{
		Metadata: report.Metadata{OrgName: "receiver.example", Email: "r@receiver.example", ReportID: id,
			DateRange: report.DateRange{Begin: day, End: day.Add(24 * time.Hour)}},
		PolicyPublished: report.PolicyPublished{Domain: "example.com", P: report.DispositionReject},
		Records:         records,
	}
}

// scenario stores the reports of the senders scenario: an ESP (two
// addresses, first seen in November, its own bounce domain), our own MX, a
// spoofer without PTR, a forwarder whose PTR does not confirm and which
// breaks our signature, a CRM with a selector that never verifies.
func scenario(t *testing.T, in *Intake) {
	t.Helper()
	s1pass := report.DKIMAuth{Domain: "example.com", Selector: "s1", Result: report.DKIMPass}
	s1fail := report.DKIMAuth{Domain: "example.com", Selector: "s1", Result: report.DKIMFail}
	crmFail := report.DKIMAuth{Domain: "example.com", Selector: "crm", Result: report.DKIMFail}
	spf := func(d string, r report.SPFResult) *report.SPFAuth {
		return &report.SPFAuth{Domain: d, Scope: report.SPFScopeMailFrom, Result: r}
	}
	reps := []*report.Feedback{
		feedback("nov", nov1, rec("192.0.2.10", 5, report.DMARCPass, report.DMARCFail, []report.DKIMAuth{s1pass}, spf("bounce.esp.example", report.SPFPass))),
		feedback("dec", dec1,
			rec("192.0.2.10", 100, report.DMARCPass, report.DMARCFail, []report.DKIMAuth{s1pass}, spf("bounce.esp.example", report.SPFPass)),
			rec("192.0.2.11", 50, report.DMARCPass, report.DMARCFail, []report.DKIMAuth{s1pass}, spf("bounce.esp.example", report.SPFPass)),
			rec("198.51.100.5", 70, report.DMARCPass, report.DMARCPass, []report.DKIMAuth{s1pass}, spf("example.com", report.SPFPass)),
			rec("203.0.113.9", 9, report.DMARCFail, report.DMARCFail, nil, spf("spoof.example", report.SPFFail)),
			rec("203.0.113.20", 3, report.DMARCFail, report.DMARCFail, []report.DKIMAuth{s1fail}, spf("forwarder.example", report.SPFNone)),
			rec("192.0.2.50", 8, report.DMARCFail, report.DMARCFail, []report.DKIMAuth{crmFail}, spf("crm.example", report.SPFPass)),
		),
	}
	for _, o := range in.Reports(context.Background(), reps, "test") {
		if o.Status != StatusStored {
			t.Fatalf("report %s: %s %s %s", o.ReportID, o.Status, o.Reason, o.Detail)
		}
	}
}

func enrich(t *testing.T, st *store.Store, srv *dnstest.Server) *Enricher {
	t.Helper()
	r, err := cache.New(cache.Config{Nameservers: []string{srv.Addr}, Timeout: 300 * time.Millisecond, Attempts: 1, ErrTTL: -1, StaleTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	e := NewEnricher(st, r, EnrichConfig{LookupTimeout: time.Second, Now: func() time.Time { return testNow }})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go e.Run(ctx)
	if !e.Drain(10*time.Second, cancel) {
		t.Fatal("enrichment did not finish within 10 s")
	}
	return e
}

// TestSendersFailuresNew: the scenario's sources group into senders by the
// organizational domain of their confirmed PTR names; authorization,
// counts, dispositions and first seen are right; the failures name their
// cause and fix; only the senders first seen in December are new.
func TestSendersFailuresNew(t *testing.T) {
	forEngines(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		srv := dnstest.New(t, sendersZone)
		in := newIntake(st, nil, "example.com")
		scenario(t, in)
		if e := enrich(t, st, srv); e.Resolved() != 6 {
			t.Errorf("resolved %d sources, want 6", e.Resolved())
		}
		rep, err := Senders(ctx, st, "example.com", dec1, dec1.Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		type brief struct {
			Org        string
			Identified bool
			Authorized bool
			Messages   int64
			SPF, DKIM  int64
			IPs        int
			FirstSeen  time.Time
		}
		var got []brief
		for _, s := range rep.Senders {
			got = append(got, brief{s.Org, s.Identified, s.Authorized, s.Messages, s.SPFAlignedPass, s.DKIMAlignedPass, len(s.IPs), s.FirstSeen})
		}
		want := []brief{
			{"esp.example", true, true, 150, 0, 150, 2, nov1},
			{"example.com", true, true, 70, 70, 70, 1, dec1},
			{"203.0.113.9", false, false, 9, 0, 0, 1, dec1},
			{"crm.example", true, false, 8, 0, 0, 1, dec1},
			{"203.0.113.20", false, false, 3, 0, 0, 1, dec1},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("senders (-want +got):\n%s", diff)
		}
		if rep.Messages != 240 || rep.Senders[0].IPs[0].PTR != "o1.mailer.esp.example" || rep.Senders[4].IPs[0].PTRState != "unconfirmed" {
			t.Errorf("report: %d messages, ips %+v, %+v", rep.Messages, rep.Senders[0].IPs, rep.Senders[4].IPs)
		}
		if d := rep.Senders[2].Dispositions; d["reject"] != 9 {
			t.Errorf("spoofer dispositions %v", d)
		}

		fails, err := Failures(ctx, st, "example.com", dec1, dec1.Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		type fbrief struct {
			Cause          Cause
			Sender, Detail string
			Messages, Fail int64
		}
		var gotF []fbrief
		for _, f := range fails.Failures {
			gotF = append(gotF, fbrief{f.Cause, f.Sender, f.Detail, f.Messages, f.DMARCFail})
			if f.Fix == "" {
				t.Errorf("%s: no fix", f.Cause)
			}
		}
		wantF := []fbrief{
			{CauseUnauthenticated, "203.0.113.9", "example.com", 9, 9},
			{CauseDKIMSelectorFailing, "crm.example", "crm._domainkey.example.com", 8, 8},
			{CauseSPFUnaligned, "crm.example", "crm.example", 8, 8},
			{CauseForwarded, "203.0.113.20", "s1._domainkey.example.com broke in transit", 3, 3},
			{CauseSPFUnaligned, "esp.example", "bounce.esp.example", 150, 0},
		}
		if diff := cmp.Diff(wantF, gotF); diff != "" {
			t.Errorf("failures (-want +got):\n%s", diff)
		}
		if fails.Messages != 240 || fails.DMARCFail != 20 {
			t.Errorf("failures: %d messages, %d failing DMARC", fails.Messages, fails.DMARCFail)
		}

		fresh, err := NewSenders(ctx, st, "example.com", dec1, dec1.Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		var orgs []string
		for _, s := range fresh.Senders {
			orgs = append(orgs, s.Org)
		}
		if diff := cmp.Diff([]string{"example.com", "203.0.113.9", "crm.example", "203.0.113.20"}, orgs); diff != "" {
			t.Errorf("new senders (-want +got):\n%s", diff)
		}
		// The JSON shape the dashboard reads.
		b, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		var shape map[string]any
		json.Unmarshal(b, &shape)
		s0 := shape["senders"].([]any)[0].(map[string]any)
		for _, k := range []string{"org", "authorized", "first_seen", "last_seen", "messages", "spf_aligned_pass", "dkim_aligned_pass", "dispositions", "ips"} {
			if _, ok := s0[k]; !ok {
				t.Errorf("sender JSON lacks %q: %s", k, b)
			}
		}
		if shape["version"] != float64(1) {
			t.Errorf("version %v", shape["version"])
		}
	})
}

// TestEnrichBudget: with a DNS server that never answers, enrichment stops
// at its budget, the import itself never waited, and the sources stay
// pending (to be tried again later).
func TestEnrichBudget(t *testing.T) {
	st := openStore(t, "")
	srv := dnstest.New(t, sendersZone)
	srv.SetFaultAll(dnstest.FaultDrop)
	r, err := cache.New(cache.Config{Nameservers: []string{srv.Addr}, Timeout: 2 * time.Second, Attempts: 1, ErrTTL: -1, StaleTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	e := NewEnricher(st, r, EnrichConfig{LookupTimeout: 10 * time.Second, Now: func() time.Time { return testNow }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.Run(ctx)
	in := New(st, Config{Domains: []string{"example.com"}, Now: func() time.Time { return testNow }, Enricher: e})
	start := time.Now()
	scenario(t, in)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("import took %v with a dead DNS", d)
	}
	start = time.Now()
	if e.Drain(300*time.Millisecond, cancel) {
		t.Error("Drain finished although DNS never answers")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Drain took %v over a 300ms budget", d)
	}
	pending, err := st.PendingSources(context.Background(), testNow.Add(time.Hour), 100)
	if err != nil || len(pending) != 6 {
		t.Errorf("pending = %v, %v; want all 6", pending, err)
	}
}
