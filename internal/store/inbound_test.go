package store

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestInboundSums: the inbound page's sums over hourly and daily periods
// on both engines: the periods of a day add up (InboundDays sums by period
// in SQL and by day here), a period beginning at the range's end is out,
// the domain-less counters count in the days but not among the domains,
// and only the rows with overrides count as overrides.
func TestInboundSums(t *testing.T) {
	forEngines(t, func(t *testing.T, url string) {
		s := open(t, url, newClock(day0.Add(72*time.Hour)))
		ctx := context.Background()
		d1, d2, d3 := day0.Add(-48*time.Hour), day0.Add(-24*time.Hour), day0
		c := func(begin time.Time, period time.Duration, domain, result, action string, o Outcome, n int64) Counter {
			return Counter{Begin: begin, End: begin.Add(period), Domain: domain, Result: result, Action: action, Outcome: o, Count: n}
		}
		h := time.Hour
		if err := s.AddCounters(ctx, []Counter{
			// d1: hourly periods.
			c(d1, h, "a.example", "pass", "accept", OutcomeEvaluated, 5),
			c(d1.Add(h), h, "a.example", "pass", "accept", OutcomeEvaluated, 7),
			c(d1.Add(23*h), h, "b.example", "fail", "reject", OutcomeReject, 4),
			c(d1.Add(23*h), h, "b.example", "fail", "quarantine", OutcomeQuarantine, 1),
			// Two outcomes of one (result, action).
			c(d1.Add(2*h), h, "b.example", "fail", "accept", OutcomeAccept, 2),
			c(d1.Add(2*h), h, "b.example", "fail", "accept", OutcomeHold, 3),
			c(d1.Add(3*h), h, "", "", "accept", OutcomeBypassTrusted, 100),
			// d2: one daily period.
			c(d2, 24*h, "b.example", "fail", "reject", OutcomeReject, 6),
			// d3: outside a range ending at d3.
			c(d3, 24*h, "a.example", "pass", "accept", OutcomeEvaluated, 50),
		}); err != nil {
			t.Fatal(err)
		}
		days, err := s.InboundDays(ctx, d1, d3)
		if err != nil {
			t.Fatal(err)
		}
		want := []InboundDay{
			{d1, "", "accept", 100}, {d1, "fail", "accept", 5}, {d1, "fail", "quarantine", 1}, {d1, "fail", "reject", 4},
			{d1, "pass", "accept", 12}, {d2, "fail", "reject", 6},
		}
		if diff := cmp.Diff(want, days); diff != "" {
			t.Errorf("InboundDays (-want +got):\n%s", diff)
		}
		if days, err := s.InboundDays(ctx, d3.Add(24*time.Hour), d3.Add(48*time.Hour)); err != nil || len(days) != 0 {
			t.Errorf("InboundDays of an empty range: %v %v", days, err)
		}
		top, err := s.InboundTopDomains(ctx, d1, d3, 10)
		if err != nil {
			t.Fatal(err)
		}
		// b.example: 4+1+2+3+6 = 16, all fail; a.example 12 (d3 is out).
		if diff := cmp.Diff([]DomainTotal{{"b.example", 16, 16}, {"a.example", 12, 0}}, top); diff != "" {
			t.Errorf("InboundTopDomains (-want +got):\n%s", diff)
		}

		list := Reason{Type: "mailing_list", Comment: "List-Id"}
		fwd := Reason{Type: "forwarded", Comment: ""}
		r1 := row("a.example", "203.0.113.1", 3)
		r1.Begin, r1.End, r1.Reasons = d1, d2, []Reason{list}
		r2 := row("b.example", "203.0.113.2", 4)
		r2.Begin, r2.End, r2.Reasons = d2, d3, []Reason{list, fwd}
		r3 := row("b.example", "203.0.113.3", 9) // no override
		r3.Begin, r3.End = d2, d3
		r4 := row("a.example", "203.0.113.4", 20) // d3: out of the range
		r4.Begin, r4.End, r4.Reasons = d3, d3.Add(24*time.Hour), []Reason{fwd}
		record(t, s, r1, r2, r3, r4)
		ovr, err := s.InboundOverrides(ctx, d1, d3)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]OverrideTotal{{list, 7}, {fwd, 4}}, ovr); diff != "" {
			t.Errorf("InboundOverrides (-want +got):\n%s", diff)
		}
	})
}
