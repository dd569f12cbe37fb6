package store

import (
	"context"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// receivedOn is a received report of domain for one UTC day with rows
// (ip, count, passing).
func receivedOn(org, id, domain, p string, d time.Time, rows ...ReceivedRow) *ReceivedReport {
	for i := range rows {
		rows[i].Days = []DayCount{{Day: d, Count: rows[i].Count}}
		rows[i].HeaderFrom = domain
	}
	return &ReceivedReport{OrgName: org, Email: "r@" + org, ReportID: id, Domain: domain, Begin: d, End: d.Add(24 * time.Hour),
		Policy: Policy{Domain: domain, P: p, SP: "none"}, Origin: "test", Rows: rows}
}

func rrow(ip string, n int64, pass bool) ReceivedRow {
	r := ReceivedRow{SourceIP: netip.MustParseAddr(ip), Count: n, Disposition: "none", DKIMAligned: "fail", SPFAligned: "fail"}
	if pass {
		r.DKIMAligned = "pass"
	}
	return r
}

// TestWebQueries: the dashboard's sums, on both engines.
func TestWebQueries(t *testing.T) {
	forEngines(t, func(t *testing.T, url string) {
		s := open(t, url, newClock(day0.Add(72*time.Hour)))
		ctx := context.Background()
		d1, d2 := day0, day0.Add(24*time.Hour)
		for _, r := range []*ReceivedReport{
			receivedOn("a.example", "1", "example.com", "none", d1, rrow("192.0.2.1", 10, true), rrow("192.0.2.2", 5, false)),
			receivedOn("b.example", "2", "example.com", "reject", d2, rrow("192.0.2.1", 7, true)),
			receivedOn("a.example", "3", "example.org", "quarantine", d2, rrow("192.0.2.3", 4, false)),
		} {
			if _, err := s.StoreReceived(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		days, err := s.ReceivedDays(ctx, d1, d2.Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		want := []DomainDay{{"example.com", d1, 15, 10}, {"example.com", d2, 7, 7}, {"example.org", d2, 4, 0}}
		if diff := cmp.Diff(want, days); diff != "" {
			t.Errorf("ReceivedDays (-want +got):\n%s", diff)
		}
		if days, _ := s.ReceivedDays(ctx, d2, d2.Add(24*time.Hour)); len(days) != 2 {
			t.Errorf("ReceivedDays of the second day: %v", days)
		}
		pols, err := s.LatestPolicies(ctx, []string{"example.com", "example.org", "none.example"})
		if err != nil {
			t.Fatal(err)
		}
		if pols["example.com"].P != "reject" || pols["example.org"].P != "quarantine" || len(pols) != 2 {
			t.Errorf("LatestPolicies: %+v", pols)
		}

		for _, h := range []HealthCheck{{"example.com", d1, "fail", json.RawMessage(`{"v":1}`)}, {"example.com", d2, "ok", json.RawMessage(`{"v":2}`)}} {
			if err := s.SaveHealth(ctx, h); err != nil {
				t.Fatal(err)
			}
		}
		hs, err := s.LatestHealthAll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(hs) != 1 || hs["example.com"].Verdict != "ok" || !hs["example.com"].Checked.Equal(d2) {
			t.Errorf("LatestHealthAll: %+v", hs)
		}

		c := func(begin time.Time, domain, result, action string, n int64) Counter {
			return Counter{Begin: begin, End: begin.Add(time.Hour), Domain: domain, Result: result, Action: action, Outcome: OutcomeEvaluated, Count: n}
		}
		if err := s.AddCounters(ctx, []Counter{
			c(d1, "bank.example", "pass", "accept", 8), c(d1.Add(5*time.Hour), "bank.example", "pass", "accept", 2),
			c(d1, "spoofed.example", "fail", "reject", 3), c(d2, "spoofed.example", "fail", "reject", 4),
		}); err != nil {
			t.Fatal(err)
		}
		inb, err := s.InboundDays(ctx, d1, d2.Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		wantInb := []InboundDay{{d1, "fail", "reject", 3}, {d1, "pass", "accept", 10}, {d2, "fail", "reject", 4}}
		if diff := cmp.Diff(wantInb, inb); diff != "" {
			t.Errorf("InboundDays (-want +got):\n%s", diff)
		}
		top, err := s.InboundTopDomains(ctx, d1, d2.Add(24*time.Hour), 1)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]DomainTotal{{"bank.example", 10, 0}}, top); diff != "" {
			t.Errorf("InboundTopDomains (-want +got):\n%s", diff)
		}

		fail := row("spoofed.example", "203.0.113.1", 6)
		fail.DKIMAligned, fail.SPFAligned = "fail", "fail"
		fail.Reasons = []Reason{{Type: "mailing_list", Comment: "List-Id"}}
		none := row("weak.example", "203.0.113.2", 9)
		none.DKIMAligned, none.SPFAligned = "fail", "fail"
		none.Policy.P = "none"
		record(t, s, fail, none, row("spoofed.example", "203.0.113.3", 2))
		spoofed, err := s.InboundSpoofed(ctx, day0, day0.Add(24*time.Hour), 10)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]DomainTotal{{"spoofed.example", 6, 6}}, spoofed); diff != "" {
			t.Errorf("InboundSpoofed (-want +got):\n%s", diff)
		}
		ovr, err := s.InboundOverrides(ctx, day0, day0.Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]OverrideTotal{{Reason{"mailing_list", "List-Id"}, 6}}, ovr); diff != "" {
			t.Errorf("InboundOverrides (-want +got):\n%s", diff)
		}
		if ovr, _ := s.InboundOverrides(ctx, d2, d2.Add(24*time.Hour)); len(ovr) != 0 {
			t.Errorf("overrides outside the range: %v", ovr)
		}

		cl, err := s.ClaimReport(ctx, group("spoofed.example"), "h", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SaveBuilt(ctx, cl, Built{ReportID: "r1", Filename: "f", Data: []byte("x"), Deliveries: []Delivery{
			{Address: "a@spoofed.example", State: DeliveryPending}, {Address: "b@spoofed.example", State: DeliveryPending}}}); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkSent(ctx, cl, "a@spoofed.example"); err != nil {
			t.Fatal(err)
		}
		sent, err := s.SentReports(ctx, day0, day0.Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if len(sent) != 1 || sent[0].Domain != "spoofed.example" || sent[0].ReportID != "r1" || len(sent[0].Deliveries) != 2 ||
			sent[0].Deliveries[0].State != DeliverySent || sent[0].Deliveries[1].State != DeliveryPending {
			t.Errorf("SentReports: %+v", sent)
		}
		if sent, _ := s.SentReports(ctx, d2, d2.Add(24*time.Hour)); len(sent) != 0 {
			t.Errorf("SentReports outside the range: %+v", sent)
		}
	})
}
