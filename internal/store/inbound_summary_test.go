package store

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// inboundData adds random counters (hourly and daily periods) and recorded
// rows (policies none/quarantine/reject, every aligned combination) from
// mid-October to mid-January, in several batches so that keys repeat.
func inboundData(t *testing.T, s *Store, seed uint64) {
	t.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 2))
	first := time.Date(2025, 10, 15, 0, 0, 0, 0, time.UTC)
	pick := func(ss ...string) string { return ss[rng.IntN(len(ss))] }
	for range 6 {
		var cs []Counter
		var rows []Row
		for range 150 {
			begin := first.Add(time.Duration(rng.IntN(90*24)) * time.Hour)
			length := time.Hour
			if rng.IntN(2) == 0 {
				begin, length = begin.Truncate(24*time.Hour), 24*time.Hour
			}
			cs = append(cs, Counter{Begin: begin, End: begin.Add(length), Domain: pick("a.example", "b.example", "c.example", ""),
				Result: pick("pass", "fail", "none"), Action: pick("accept", "reject", "quarantine"), Outcome: OutcomeEvaluated,
				Count: int64(1 + rng.IntN(9))})
			day := begin.Truncate(24 * time.Hour)
			r := row(pick("a.example", "b.example", "d.example"), fmt.Sprintf("192.0.2.%d", 1+rng.IntN(5)), int64(1+rng.IntN(9)))
			r.Begin, r.End = day, day.Add(24*time.Hour)
			r.Policy.P = pick("none", "quarantine", "reject")
			r.DKIMAligned, r.SPFAligned = pick("pass", "fail"), pick("pass", "fail")
			rows = append(rows, r)
		}
		if err := s.AddCounters(ctx, cs); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RecordRows(ctx, rows); err != nil {
			t.Fatal(err)
		}
	}
}

// rawInbound answers the inbound questions from the counters and rows
// themselves, as the store did before it kept summaries.
func rawInbound(t *testing.T, s *Store, since, until time.Time) (days []InboundDay, top, spoofed []DomainTotal) {
	t.Helper()
	ctx := context.Background()
	a, b := unix(since), unix(until)
	err := s.each(ctx, `SELECT period_begin - period_begin % 86400, result, action, SUM(count) FROM counters
WHERE period_begin >= $1 AND period_begin < $2 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`, []any{a, b}, func(rs *sql.Rows) error {
		var d InboundDay
		var day int64
		if err := rs.Scan(&day, &d.Result, &d.Action, &d.Messages); err != nil {
			return err
		}
		d.Day = fromUnix(day)
		days = append(days, d)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	totals := func(q string) []DomainTotal {
		var out []DomainTotal
		err := s.each(ctx, q, []any{a, b}, func(rs *sql.Rows) error {
			var d DomainTotal
			if err := rs.Scan(&d.Domain, &d.Messages, &d.Fail); err != nil {
				return err
			}
			out = append(out, d)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	top = totals(`SELECT domain, SUM(count) AS n, SUM(CASE WHEN result = 'fail' THEN count ELSE 0 END) FROM counters
WHERE period_begin >= $1 AND period_begin < $2 AND domain <> '' GROUP BY domain ORDER BY n DESC, domain`)
	spoofed = totals(`SELECT p.domain, SUM(r.count) AS n, SUM(r.count) FROM agg_rows r JOIN policies p ON p.id = r.policy_id
WHERE r.period_begin >= $1 AND r.period_begin < $2 AND r.dkim_aligned <> 'pass' AND r.spf_aligned <> 'pass'
	AND p.p IN ('reject', 'quarantine') GROUP BY p.domain ORDER BY n DESC, p.domain`)
	return days, top, spoofed
}

// checkInbound compares the inbound answers with rawInbound over ranges of
// whole months, parts of months, and hours.
func checkInbound(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	d := func(y int, m time.Month, day, h int) time.Time { return time.Date(y, m, day, h, 0, 0, 0, time.UTC) }
	for _, r := range [][2]time.Time{
		{d(2025, 10, 20, 0), d(2026, 1, 5, 0)},   // two whole months and the days around them
		{d(2025, 11, 1, 0), d(2025, 12, 1, 0)},   // exactly a month
		{d(2025, 11, 3, 0), d(2025, 11, 20, 0)},  // no whole month
		{d(2025, 10, 1, 0), d(2026, 2, 1, 0)},    // everything, in whole months
		{d(2025, 11, 3, 5), d(2025, 12, 20, 13)}, // not whole days
	} {
		name := fmt.Sprintf("[%s, %s)", r[0].Format(time.DateTime), r[1].Format(time.DateTime))
		wantDays, wantTop, wantSpoofed := rawInbound(t, s, r[0], r[1])
		days, err := s.InboundDays(ctx, r[0], r[1])
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(wantDays, days); diff != "" {
			t.Errorf("InboundDays %s (-raw +got):\n%s", name, diff)
		}
		top, err := s.InboundTopDomains(ctx, r[0], r[1], 100)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(wantTop, top); diff != "" {
			t.Errorf("InboundTopDomains %s (-raw +got):\n%s", name, diff)
		}
		spoofed, err := s.InboundSpoofed(ctx, r[0], r[1], 100)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(wantSpoofed, spoofed); diff != "" {
			t.Errorf("InboundSpoofed %s (-raw +got):\n%s", name, diff)
		}
		if len(wantDays) == 0 || len(wantTop) == 0 || len(wantSpoofed) == 0 {
			t.Errorf("%s: nothing to compare (%d days, %d top, %d spoofed)", name, len(wantDays), len(wantTop), len(wantSpoofed))
		}
	}
	for _, q := range []string{`SELECT COUNT(*) FROM inbound_days WHERE count <= 0`,
		`SELECT COUNT(*) FROM inbound_domain_months WHERE messages <= 0`, `SELECT COUNT(*) FROM inbound_spoofed_months WHERE messages <= 0`,
		`SELECT COUNT(*) FROM inbound_domain_days WHERE messages <= 0`, `SELECT COUNT(*) FROM inbound_spoofed_days WHERE messages <= 0`} {
		var n int64
		if err := s.db.QueryRowContext(ctx, q).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s: %d (%v)", q, n, err)
		}
	}
}

// TestInboundSummaries: the inbound page's answers from the summaries equal
// the sums over the counters and rows, after adds, when migration 5 builds
// the summaries from older data, and after expiry took counters and rows
// out (in several batches).
func TestInboundSummaries(t *testing.T) {
	n := expireBatch
	t.Cleanup(func() { expireBatch = n })
	expireBatch = 40
	c := summaryChunk
	t.Cleanup(func() { summaryChunk = c })
	summaryChunk = 7 // several upsert statements per summary, the last one short
	forEngines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url, nil)
		inboundData(t, s, 5)
		checkInbound(t, s)

		for _, table := range []string{"inbound_days", "inbound_domain_days", "inbound_spoofed_days", "inbound_domain_months", "inbound_spoofed_months"} {
			if _, err := s.db.ExecContext(ctx, `DROP TABLE `+table); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.db.ExecContext(ctx, `UPDATE schema_version SET version = 4`); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s = open(t, url, nil)
		checkInbound(t, s)

		cutoff := time.Date(2025, 11, 10, 0, 0, 0, 0, time.UTC)
		ex, err := s.Expire(ctx, cutoff.Add(24*time.Hour), Retention{Rows: 24 * time.Hour, Counters: 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		var oldCounters, oldRows, leftCounters int64
		s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM counters WHERE period_end < $1`, unix(cutoff)).Scan(&oldCounters)
		s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM agg_rows WHERE period_end < $1`, unix(cutoff)).Scan(&oldRows)
		s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM counters`).Scan(&leftCounters)
		if ex.Counters <= expireBatch || ex.Rows <= expireBatch || oldCounters != 0 || oldRows != 0 || leftCounters == 0 {
			t.Fatalf("expired %d counters and %d rows; %d and %d older ones left, %d counters in all", ex.Counters, ex.Rows,
				oldCounters, oldRows, leftCounters)
		}
		checkInbound(t, s)
	})
}

// TestWholeMonths: the split of a range into whole UTC months and the rest.
func TestWholeMonths(t *testing.T) {
	u := func(y int, m time.Month, d int) int64 { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() }
	for _, c := range []struct{ since, until, m1, m2 int64 }{
		{u(2025, 10, 20), u(2026, 1, 5), u(2025, 11, 1), u(2026, 1, 1)},
		{u(2025, 11, 1), u(2025, 12, 1), u(2025, 11, 1), u(2025, 12, 1)},
		{u(2025, 11, 3), u(2025, 11, 20), u(2025, 11, 20), u(2025, 11, 20)},
		{u(2025, 11, 3), u(2025, 12, 2), u(2025, 12, 2), u(2025, 12, 2)},
		{u(2025, 12, 31), u(2026, 2, 1), u(2026, 1, 1), u(2026, 2, 1)},
	} {
		if m1, m2 := wholeMonths(c.since, c.until); m1 != c.m1 || m2 != c.m2 {
			t.Errorf("wholeMonths(%s, %s) = %s, %s; want %s, %s", fromUnix(c.since), fromUnix(c.until),
				fromUnix(m1), fromUnix(m2), fromUnix(c.m1), fromUnix(c.m2))
		}
	}
}

// TestRebuildSummaries: summaries damaged as an old binary's writes would
// leave them (rows missing, counts short) are built again equal to what
// the writes kept, while other hosts go on writing.
func TestRebuildSummaries(t *testing.T) {
	forEngines(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := open(t, url, newClock(day0.Add(30*24*time.Hour)))
		for _, r := range summaryReports(3, 30) {
			if _, err := s.StoreReceived(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		inboundData(t, s, 9)
		want := summaryDump(t, s) + inboundDump(t, s)
		for _, q := range []string{`DELETE FROM received_facts WHERE day = (SELECT MIN(day) FROM received_facts)`,
			`UPDATE received_domain_days SET messages = messages - 1`, `DELETE FROM inbound_domain_months`,
			`UPDATE inbound_days SET count = count + 5`, `DELETE FROM inbound_spoofed_days`} {
			if _, err := s.db.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		if summaryDump(t, s)+inboundDump(t, s) == want {
			t.Fatal("the damage changed nothing")
		}
		if err := s.RebuildSummaries(ctx); err != nil {
			t.Fatal(err)
		}
		if got := summaryDump(t, s) + inboundDump(t, s); got != want {
			t.Errorf("rebuilt summaries differ:\n%s\nwant:\n%s", got, want)
		}
		// A host that writes during a rebuild is counted once.
		other := open(t, url, nil)
		done := make(chan error, 1)
		go func() {
			done <- other.AddCounters(ctx, []Counter{{Begin: day0, End: day0.Add(time.Hour), Domain: "late.example", Result: "fail", Action: "reject", Outcome: OutcomeEvaluated, Count: 7}})
		}()
		if err := s.RebuildSummaries(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		top, err := s.InboundTopDomains(ctx, day0, day0.Add(24*time.Hour), 100)
		if err != nil {
			t.Fatal(err)
		}
		if i := slices.IndexFunc(top, func(d DomainTotal) bool { return d.Domain == "late.example" }); i < 0 || top[i].Messages != 7 {
			t.Errorf("the counter written beside the rebuild: %+v", top)
		}
	})
}

// inboundDump is every inbound summary row as text.
func inboundDump(t *testing.T, s *Store) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{
		`SELECT day, result, action, count FROM inbound_days ORDER BY day, result, action`,
		`SELECT day, domain, messages, fail FROM inbound_domain_days ORDER BY day, domain`,
		`SELECT month, domain, messages, fail FROM inbound_domain_months ORDER BY month, domain`,
		`SELECT day, domain, messages FROM inbound_spoofed_days ORDER BY day, domain`,
		`SELECT month, domain, messages FROM inbound_spoofed_months ORDER BY month, domain`,
	} {
		if err := s.each(context.Background(), q, nil, func(rs *sql.Rows) error {
			var a, c, d any
			var x any
			cols, _ := rs.Columns()
			dst := []any{&a, &x, &c, &d}[:len(cols)]
			if err := rs.Scan(dst...); err != nil {
				return err
			}
			fmt.Fprintln(&b, a, x, c, d)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}
