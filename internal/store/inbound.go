package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// InboundDay is what the milter decided on one UTC day for one (result,
// action): the sum of its outcome counters.
type InboundDay struct {
	Day      time.Time
	Result   string
	Action   string
	Messages int64
}

// InboundDays sums the outcome counters of the periods beginning in
// [since, until) by UTC day, result and action, ordered by those. A range
// of whole days reads the summary inbound_days; another sums the counters
// by period (the order of counters_when, read without the table) and adds
// the periods of a day here: a period divides the day.
func (s *Store) InboundDays(ctx context.Context, since, until time.Time) ([]InboundDay, error) {
	type key struct {
		day            int64
		result, action string
	}
	sum := map[key]int64{}
	query := `
SELECT period_begin, result, action, SUM(count) FROM counters
WHERE period_begin >= {since} AND period_begin < {until}
GROUP BY period_begin, result, action`
	if dayAligned(since, until) {
		query = `SELECT day, result, action, count FROM inbound_days WHERE day >= {since} AND day < {until}`
	}
	err := s.each(ctx, rangeSQL(query, since, until), nil, func(rs *sql.Rows) error {
		var k key
		var begin, n int64
		if err := rs.Scan(&begin, &k.result, &k.action, &n); err != nil {
			return err
		}
		k.day = begin - begin%86400
		sum[k] += n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: inbound days: %w", s.wrap(err))
	}
	out := make([]InboundDay, 0, len(sum))
	for k, n := range sum {
		out = append(out, InboundDay{Day: fromUnix(k.day), Result: k.result, Action: k.action, Messages: n})
	}
	slices.SortFunc(out, func(a, b InboundDay) int {
		return cmp.Or(a.Day.Compare(b.Day), cmp.Compare(a.Result, b.Result), cmp.Compare(a.Action, b.Action))
	})
	return out, nil
}

// DomainTotal is a domain's messages in a range, and how many failed DMARC.
type DomainTotal struct {
	Domain   string
	Messages int64
	Fail     int64
}

// InboundTopDomains returns the limit sending domains (policy or From
// domains of the outcome counters) with the most messages in the periods
// beginning in [since, until), most first. A range of whole days reads the
// summaries: its whole months from inbound_domain_months, the days around
// them from inbound_domain_days; another range sums the counters.
func (s *Store) InboundTopDomains(ctx context.Context, since, until time.Time, limit int) ([]DomainTotal, error) {
	query := `
SELECT domain, SUM(n) AS total, SUM(f) FROM (
	SELECT domain, messages AS n, fail AS f FROM inbound_domain_months WHERE month >= {m1} AND month < {m2}
	UNION ALL
	SELECT domain, messages, fail FROM inbound_domain_days WHERE day >= {since} AND day < {m1}
	UNION ALL
	SELECT domain, messages, fail FROM inbound_domain_days WHERE day >= {m2} AND day < {until}
) x GROUP BY domain ORDER BY total DESC, domain LIMIT $1`
	if !dayAligned(since, until) {
		query = `
SELECT domain, SUM(count) AS n, SUM(CASE WHEN result = 'fail' THEN count ELSE 0 END) FROM counters
WHERE period_begin >= {since} AND period_begin < {until} AND domain <> ''
GROUP BY domain ORDER BY n DESC, domain LIMIT $1`
	}
	return s.domainTotals(ctx, "inbound top domains", monthsSQL(query, since, until), limit)
}

// InboundSpoofed returns the limit policy domains with the most recorded
// messages that failed DMARC (neither aligned SPF nor aligned DKIM passed)
// while the domain published p=reject or p=quarantine, in the periods
// beginning in [since, until), most first (read like InboundTopDomains,
// from inbound_spoofed_months and _days or the rows). Messages and Fail are
// equal.
func (s *Store) InboundSpoofed(ctx context.Context, since, until time.Time, limit int) ([]DomainTotal, error) {
	query := `
SELECT domain, SUM(n) AS total, SUM(n) FROM (
	SELECT domain, messages AS n FROM inbound_spoofed_months WHERE month >= {m1} AND month < {m2}
	UNION ALL
	SELECT domain, messages FROM inbound_spoofed_days WHERE day >= {since} AND day < {m1}
	UNION ALL
	SELECT domain, messages FROM inbound_spoofed_days WHERE day >= {m2} AND day < {until}
) x GROUP BY domain ORDER BY total DESC, domain LIMIT $1`
	if !dayAligned(since, until) {
		query = `
SELECT p.domain, SUM(r.count) AS n, SUM(r.count) FROM agg_rows r JOIN policies p ON p.id = r.policy_id
WHERE r.period_end > {since} AND r.period_begin >= {since} AND r.period_begin < {until}
	AND r.dkim_aligned <> 'pass' AND r.spf_aligned <> 'pass' AND p.p IN ('reject', 'quarantine')
GROUP BY p.domain ORDER BY n DESC, p.domain LIMIT $1`
	}
	return s.domainTotals(ctx, "inbound spoofed domains", monthsSQL(query, since, until), limit)
}

func (s *Store) domainTotals(ctx context.Context, what, query string, limit int) ([]DomainTotal, error) {
	var out []DomainTotal
	err := s.each(ctx, query, []any{limit}, func(rs *sql.Rows) error {
		var d DomainTotal
		if err := rs.Scan(&d.Domain, &d.Messages, &d.Fail); err != nil {
			return err
		}
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, s.wrap(err))
	}
	return out, nil
}

// OverrideTotal is how many recorded messages had one policy override
// (RFC 9990 reason type and comment) in a range.
type OverrideTotal struct {
	Reason   Reason
	Messages int64
}

// InboundOverrides sums the recorded messages whose rows carry policy
// overrides, by override, in the periods beginning in [since, until), most
// first.
func (s *Store) InboundOverrides(ctx context.Context, since, until time.Time) ([]OverrideTotal, error) {
	sum := map[Reason]int64{}
	err := s.each(ctx, rangeSQL(`
SELECT reasons, SUM(count) FROM agg_rows
WHERE period_end > {since} AND period_begin >= {since} AND period_begin < {until} AND reasons <> '[]'
GROUP BY reasons`, since, until), nil, func(rs *sql.Rows) error {
		var text string
		var n int64
		if err := rs.Scan(&text, &n); err != nil {
			return err
		}
		var list []Reason
		if err := json.Unmarshal([]byte(text), &list); err != nil {
			return fmt.Errorf("row reasons: %w", err)
		}
		for _, r := range list {
			sum[r] += n
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: inbound overrides: %w", s.wrap(err))
	}
	out := make([]OverrideTotal, 0, len(sum))
	for r, n := range sum {
		out = append(out, OverrideTotal{Reason: r, Messages: n})
	}
	sortOverrides(out)
	return out, nil
}

func sortOverrides(out []OverrideTotal) {
	slices.SortFunc(out, func(a, b OverrideTotal) int {
		return cmp.Or(cmp.Compare(b.Messages, a.Messages), cmp.Compare(a.Reason.Type, b.Reason.Type),
			cmp.Compare(a.Reason.Comment, b.Reason.Comment))
	})
}

// rangeSQL writes the Unix seconds of [since, until) into query's {since}
// and {until} as integer literals. With parameters, PostgreSQL settles
// after five runs of a prepared statement on a generic plan that takes any
// range for a sliver: a year of counters (1.1 million rows) was then read
// through an index, 350 ms, where the planner that sees the range scans
// the table in parallel, 180 ms (bench_test.go's data).
func rangeSQL(query string, since, until time.Time) string {
	return strings.NewReplacer("{since}", strconv.FormatInt(unix(since), 10),
		"{until}", strconv.FormatInt(unix(until), 10)).Replace(query)
}
