package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestCounters: counters and losses add up per key, also for domains
// without a policy, and show in the status.
func TestCounters(t *testing.T) {
	forEngines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url, nil)
		end := day0.Add(24 * time.Hour)
		c := func(domain, result, action string, o Outcome, n int64) Counter {
			return Counter{Begin: day0, End: end, Domain: domain, Result: result, Action: action, Outcome: o, Count: n}
		}
		for range 2 {
			err := s.AddCounters(ctx, []Counter{
				c("example.com", "pass", "accept", OutcomeEvaluated, 3),
				c("example.com", "fail", "reject", OutcomeReject, 1),
				c("example.com", "pass", "accept", OutcomeEvaluated, 2),
				c("nodmarc.example", "none", "accept", OutcomeEvaluated, 1),
				c("", "", "accept", OutcomeBypassTrusted, 4),
				c("example.com", "temperror", "tempfail", OutcomeTempfail, 1),
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Counters(ctx, day0, end)
		if err != nil {
			t.Fatal(err)
		}
		want := []Counter{
			c("", "", "accept", OutcomeBypassTrusted, 8),
			c("example.com", "fail", "reject", OutcomeReject, 2),
			c("example.com", "pass", "accept", OutcomeEvaluated, 10),
			c("example.com", "temperror", "tempfail", OutcomeTempfail, 2),
			c("nodmarc.example", "none", "accept", OutcomeEvaluated, 2),
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("counters (-want +got):\n%s", diff)
		}
		if got, _ := s.Counters(ctx, end, end.Add(time.Hour)); len(got) != 0 {
			t.Errorf("counters of the next day: %v", got)
		}
		if err := s.AddCounters(ctx, []Counter{{Domain: "x", Outcome: OutcomeEvaluated, Count: 1}}); !errors.Is(err, ErrInvalid) {
			t.Errorf("counter without a period: %v, want ErrInvalid", err)
		}

		if err := s.AddLosses(ctx, []Loss{{Begin: day0, End: end, Domain: "example.com", Kind: LossDropped, Count: 7}}); err != nil {
			t.Fatal(err)
		}
		losses, err := s.Losses(ctx, day0, end)
		if err != nil || len(losses) != 1 || losses[0].Count != 7 {
			t.Errorf("Losses = %+v, %v", losses, err)
		}
		st, err := s.Status(ctx, day0)
		if err != nil || len(st) != 1 || st[0].DroppedMessages != 7 {
			t.Errorf("Status = %+v, %v; want example.com with 7 dropped", st, err)
		}
	})
}
