package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestExpire: retention deletes what is older, in batches, and keeps the
// rest, including the rows of a report still being built.
func TestExpire(t *testing.T) {
	old := expireBatch
	expireBatch = 3 // several batches per table
	t.Cleanup(func() { expireBatch = old })
	forEngines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		clk := newClock(day0.Add(40 * 24 * time.Hour))
		s := open(t, url, clk)
		// Ten old rows on day0, two recent ones 35 days later.
		var rows []Row
		for i := range 10 {
			rows = append(rows, row(fmt.Sprintf("d%d.example", i%2), fmt.Sprintf("192.0.2.%d", i), 1))
		}
		recent := row("d0.example", "192.0.2.1", 1)
		recent.Begin, recent.End = recent.Begin.Add(35*24*time.Hour), recent.End.Add(35*24*time.Hour)
		rows = append(rows, recent, row("building.example", "192.0.2.1", 1))
		record(t, s, rows...)
		var counters []Counter
		for i := range 7 {
			counters = append(counters, Counter{Begin: day0, End: day0.Add(24 * time.Hour), Domain: fmt.Sprint(i), Outcome: OutcomeEvaluated, Count: 1})
		}
		if err := s.AddCounters(ctx, counters); err != nil {
			t.Fatal(err)
		}
		// d1's report is done, building.example's is still building.
		c, err := s.ClaimReport(ctx, group("d1.example"), "mx", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SaveBuilt(ctx, c, Built{ReportID: "r", Filename: "f",
			Deliveries: []Delivery{{Address: "x@d1.example", State: DeliverySuppressed}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ClaimReport(ctx, group("building.example"), "mx", time.Hour); err != nil {
			t.Fatal(err)
		}

		ex, err := s.Expire(ctx, clk.Now(), Retention{Rows: 30 * 24 * time.Hour, Counters: 30 * 24 * time.Hour, SentReports: 30 * 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		want := Expired{Rows: 10, Counters: 7, Reports: 1}
		if ex != want {
			t.Errorf("Expire = %+v, want %+v", ex, want)
		}
		st, err := s.Status(ctx, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		left := map[string]int64{}
		for _, d := range st {
			left[d.Domain] = d.Rows
		}
		if len(left) != 2 || left["d0.example"] != 1 || left["building.example"] != 1 {
			t.Errorf("rows left by domain: %v, want the recent d0 row and building.example's", left)
		}
		// The report's delivery records went with it.
		var deliveries int
		if err := s.db.QueryRow(`SELECT count(*) FROM deliveries`).Scan(&deliveries); err != nil || deliveries != 0 {
			t.Errorf("%d delivery records left (%v), want 0", deliveries, err)
		}
		// Zero retention keeps everything.
		if ex, err := s.Expire(ctx, clk.Now().Add(1000*24*time.Hour), Retention{}); err != nil || ex != (Expired{}) {
			t.Errorf("Expire with no retention = %+v, %v", ex, err)
		}
	})
}
