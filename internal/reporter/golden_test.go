package reporter

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/dmarc-milter/dmarc-milter/internal/milter"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/report"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

// fixedRand samples pct= with a fixed draw.
type fixedRand int

func (r fixedRand) IntN(int) int { return int(r) }

// evaluation is one message of the golden set.
type evaluation struct {
	n        int // times sent
	ip       string
	helo     string
	mailFrom string
	rcpts    []string
	from     string
	record   string // the DMARC record of the From domain
	spf      verify.Result
	dkim     []verify.DKIMResult
	list     bool
	monitor  bool
	rand     int
}

// decide runs policy.Evaluate on e, as the milter would, and returns the
// milter's decision for the recorder.
func (e evaluation) decide(t *testing.T) *milter.Decision {
	t.Helper()
	author := policy.ParseFrom([]string{e.from})
	if len(author.Domains) != 1 {
		t.Fatalf("From %q", e.from)
	}
	dom := author.Domains[0]
	rec, err := policy.Parse(e.record)
	if err != nil {
		t.Fatal(err)
	}
	spfDomain := e.helo
	if _, d, ok := strings.Cut(e.mailFrom, "@"); ok {
		spfDomain = d
	}
	local := policy.LocalPolicy{}
	if e.monitor {
		local.Mode = policy.ModeMonitor
	}
	in := policy.Input{
		SourceIP: netip.MustParseAddr(e.ip), HELO: e.helo, MailFrom: e.mailFrom, RcptTo: e.rcpts,
		From: author, MailingList: e.list,
		SPF:  verify.SPFResult{Result: e.spf, Scope: verify.ScopeMailFrom, Domain: spfDomain},
		DKIM: e.dkim,
		Discoveries: map[string]*policy.Discovery{dom: {Domain: dom, Method: policy.MethodTreeWalk,
			PolicyDomain: dom, OrgDomain: dom, Record: rec}},
		// Relaxed alignment of an identifier in a subdomain needs its
		// Organizational Domain (Prepare looks it up in the milter).
		OrgDomains: map[string]policy.OrgResult{"mx.example.com": {Domain: "example.com"}},
		Local:      local.WithDefaults(),
		Rand:       fixedRand(e.rand),
	}
	v := policy.Evaluate(in)
	return &milter.Decision{Action: v.Action, Verdict: &v, Env: milter.Envelope{ClientIP: in.SourceIP, Helo: e.helo, MailFrom: e.mailFrom, Rcpts: e.rcpts}}
}

func dkimRes(d, s string, r verify.Result) verify.DKIMResult {
	return verify.DKIMResult{Domain: d, Selector: s, Result: r, Algorithm: "rsa-sha256"}
}

// goldenSet covers grouping and counts, several DKIM signatures, the null
// sender, IPv6, overrides (mailing list, monitor mode, pct sampling, test
// mode) and two policy configurations of one domain.
var goldenSet = []evaluation{
	{n: 3, ip: "192.0.2.1", helo: "mx.example.com", mailFrom: "bounce@example.com", rcpts: []string{"a@ours.example"},
		from: "news@example.com", record: "v=DMARC1; p=reject; rua=mailto:d@example.com", spf: verify.ResultPass,
		dkim: []verify.DKIMResult{dkimRes("example.com", "s1", verify.ResultPass), dkimRes("esp.example", "k2", verify.ResultPass), dkimRes("example.com", "old", verify.ResultFail)}},
	{n: 2, ip: "2001:db8::25", helo: "forger.example", mailFrom: "x@forger.example", rcpts: []string{"b@ours.example"},
		from: "ceo@example.com", record: "v=DMARC1; p=reject; rua=mailto:d@example.com", spf: verify.ResultPass},
	{n: 1, ip: "192.0.2.2", helo: "mx.example.com", mailFrom: "", rcpts: []string{"c@ours.example", "d@other.example"},
		from: "mailer-daemon@example.com", record: "v=DMARC1; p=reject; rua=mailto:d@example.com", spf: verify.ResultPass},
	{n: 4, ip: "198.51.100.7", helo: "lists.example.net", mailFrom: "list-bounces@lists.example.net", rcpts: []string{"e@ours.example"},
		from: "member@example.com", record: "v=DMARC1; p=reject; rua=mailto:d@example.com", spf: verify.ResultPass, list: true,
		dkim: []verify.DKIMResult{dkimRes("example.com", "s1", verify.ResultFail), dkimRes("lists.example.net", "l", verify.ResultPass)}},
	{n: 1, ip: "203.0.113.9", helo: "h.example", mailFrom: "a@h.example", from: "x@example.com",
		record: "v=DMARC1; p=quarantine; rua=mailto:d@example.com", spf: verify.ResultSoftFail},
	{n: 2, ip: "192.0.2.30", helo: "h.example", mailFrom: "a@h.example", from: "x@monitor.example",
		record: "v=DMARC1; p=reject; rua=mailto:d@monitor.example", spf: verify.ResultFail, monitor: true},
	{n: 2, ip: "192.0.2.31", helo: "h.example", mailFrom: "a@h.example", from: "x@sampled.example",
		record: "v=DMARC1; p=quarantine; pct=50; rua=mailto:d@sampled.example", spf: verify.ResultNone, rand: 99},
	{n: 1, ip: "192.0.2.32", helo: "h.example", mailFrom: "a@h.example", from: "x@testing.example",
		record: "v=DMARC1; p=reject; t=y; sp=none; np=reject; adkim=s; aspf=s; fo=1", spf: verify.ResultNeutral},
}

// TestGoldenReports drives a fixed set of evaluations through
// policy.Evaluate, the recorder and the SQLite store, builds the reports of
// the closed day, compares them with the golden files and validates each
// with xmllint against the RFC 9990 XSD.
func TestGoldenReports(t *testing.T) {
	clk := &clock{t: day(2026, 12, 6, 10)}
	st := sqliteStore(t, clk.now)
	rec := NewRecorder(RecorderOptions{Open: func(context.Context) (Sink, error) { return st, nil },
		Interval: 24 * 60 * 60e9, QueueSize: 1000, FlushInterval: 3600e9, Now: clk.now,
		OwnAddresses: []string{"dmarc-reports@ours.example"}})
	defer rec.Close(context.Background())
	var messages int64
	for _, e := range goldenSet {
		for range e.n {
			rec.Record(e.decide(t))
			messages++
		}
	}
	// Not in any row: a trusted-network bypass, a tempfail, mail to our
	// reporting address.
	rec.Record(&milter.Decision{Action: policy.ActionAccept, Bypass: milter.BypassTrusted})
	tf := goldenSet[0].decide(t)
	tf.Action = policy.ActionTempFail
	rec.Record(tf)
	own := goldenSet[0]
	own.rcpts = []string{"DMARC-Reports@ours.example"}
	rec.Record(own.decide(t))
	if err := rec.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	clk.set(day(2026, 12, 7, 1))
	groups, err := st.DueGroups(context.Background(), store.Window{Grace: 15 * 60e9})
	if err != nil {
		t.Fatal(err)
	}
	id := &Identity{OrgName: "Ours Example", Email: "dmarc-reports@ours.example", From: "dmarc-reports@ours.example",
		Generator: "dmarc-milter/test"}
	var inReports int64
	var names []string
	for _, g := range groups {
		rows, err := st.GroupRows(context.Background(), g)
		if err != nil {
			t.Fatal(err)
		}
		f, err := BuildFile(id, g, rows, zeros{})
		if err != nil {
			t.Fatal(err)
		}
		validateXSD(t, f.XML)
		name := fmt.Sprintf("golden-%s-%s.xml", g.Policy.Domain, g.Policy.P)
		names = append(names, name)
		golden(t, name, f.XML)
		inReports += f.Messages
		back, err := report.ParseFile(strings.NewReader(string(f.Gzip)), report.Limits{})
		if err != nil || back.Metadata.ReportID != f.ReportID {
			t.Errorf("%s does not read back: %v", f.Filename, err)
		}
	}
	// Five configurations: example.com under p=reject and p=quarantine,
	// monitor, sampled, testing.
	if len(groups) != 5 {
		t.Errorf("%d reports (%v), want 5", len(groups), names)
	}
	// One row more than messages: the null-sender message had recipients
	// in two domains, but envelope_to is off, so it counts once.
	if inReports != messages {
		t.Errorf("reports count %d messages, %d were recorded", inReports, messages)
	}
	cs, err := st.Counters(context.Background(), day(2026, 12, 6, 0), day(2026, 12, 7, 0))
	if err != nil {
		t.Fatal(err)
	}
	var counted int64
	outcomes := map[store.Outcome]int64{}
	for _, c := range cs {
		counted += c.Count
		outcomes[c.Outcome] += c.Count
	}
	// Every message is counted: the rows' messages, the bypass, the
	// tempfail and the message to our reporting address.
	if counted != messages+3 || outcomes[store.OutcomeBypassTrusted] != 1 || outcomes[store.OutcomeTempfail] != 1 {
		t.Errorf("counters: %d messages %v, want %d with one bypass and one tempfail", counted, outcomes, messages+3)
	}
}
