package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// The read-only queries of the web dashboard (internal/web). Each sums in
// SQL what a page shows, so that a page reads a few hundred rows, not the
// year of rows under them.

// DomainDay is the received messages of one of our domains on one UTC day.
type DomainDay struct {
	Domain string
	Day    time.Time
	// Messages were reported for the domain that day; Pass of them passed
	// DMARC (aligned SPF or aligned DKIM).
	Messages int64
	Pass     int64
}

// ReceivedDays returns the received messages by domain and UTC day over
// the days of [since, until), ordered by domain and day: the summary
// received_domain_days, a row per domain and day.
func (s *Store) ReceivedDays(ctx context.Context, since, until time.Time) ([]DomainDay, error) {
	var out []DomainDay
	err := s.each(ctx, `
SELECT domain, day, messages, pass FROM received_domain_days
WHERE day >= $1 AND day < $2 ORDER BY domain, day`, []any{unix(since), unix(until)}, func(rs *sql.Rows) error {
		var d DomainDay
		var day int64
		if err := rs.Scan(&d.Domain, &day, &d.Messages, &d.Pass); err != nil {
			return err
		}
		d.Day = fromUnix(day)
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: received days: %w", s.wrap(err))
	}
	return out, nil
}

// PublishedPolicy is the policy a domain published, as the latest received
// report for it states.
type PublishedPolicy struct {
	Domain string
	P      string
	SP     string
	// Begin is the begin of the report that said so.
	Begin time.Time
}

// LatestPolicies returns, for each of domains that has received reports,
// the policy stated by its latest report (by period begin): one indexed
// lookup per domain, where a correlated query over every report would read
// the whole year.
func (s *Store) LatestPolicies(ctx context.Context, domains []string) (map[string]PublishedPolicy, error) {
	out := map[string]PublishedPolicy{}
	for _, d := range domains {
		p := PublishedPolicy{Domain: d}
		var b int64
		err := s.db.QueryRowContext(ctx, `SELECT p, sp, period_begin FROM received_reports WHERE domain = $1
ORDER BY period_begin DESC, id DESC LIMIT 1`, d).Scan(&p.P, &p.SP, &b)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("store: latest policy of %q: %w", d, s.wrap(err))
		}
		p.Begin = fromUnix(b)
		out[d] = p
	}
	return out, nil
}

// LatestHealthAll returns the latest stored health check of every domain
// that has one.
func (s *Store) LatestHealthAll(ctx context.Context) (map[string]HealthCheck, error) {
	out := map[string]HealthCheck{}
	err := s.each(ctx, `
SELECT h.domain, h.checked, h.verdict, h.report FROM health_checks h
WHERE h.checked = (SELECT MAX(x.checked) FROM health_checks x WHERE x.domain = h.domain)`, nil, func(rs *sql.Rows) error {
		var h HealthCheck
		var checked int64
		var rep string
		if err := rs.Scan(&h.Domain, &checked, &h.Verdict, &rep); err != nil {
			return err
		}
		h.Checked, h.Report = fromUnix(checked), json.RawMessage(rep)
		out[h.Domain] = h
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: latest health checks: %w", s.wrap(err))
	}
	return out, nil
}

// InboundDay is what the milter decided on one UTC day for one (result,
// action): the sum of its outcome counters.
type InboundDay struct {
	Day      time.Time
	Result   string
	Action   string
	Messages int64
}

// InboundDays sums the outcome counters of the periods beginning in
// [since, until) by UTC day, result and action, ordered by those.
func (s *Store) InboundDays(ctx context.Context, since, until time.Time) ([]InboundDay, error) {
	var out []InboundDay
	err := s.each(ctx, `
SELECT period_begin - period_begin % 86400 AS day, result, action, SUM(count) FROM counters
WHERE period_begin >= $1 AND period_begin < $2
GROUP BY period_begin - period_begin % 86400, result, action ORDER BY 1, 2, 3`, []any{unix(since), unix(until)}, func(rs *sql.Rows) error {
		var d InboundDay
		var day int64
		if err := rs.Scan(&day, &d.Result, &d.Action, &d.Messages); err != nil {
			return err
		}
		d.Day = fromUnix(day)
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: inbound days: %w", s.wrap(err))
	}
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
// beginning in [since, until), most first.
func (s *Store) InboundTopDomains(ctx context.Context, since, until time.Time, limit int) ([]DomainTotal, error) {
	return s.domainTotals(ctx, "inbound top domains", `
SELECT domain, SUM(count) AS n, SUM(CASE WHEN result = 'fail' THEN count ELSE 0 END) FROM counters
WHERE period_begin >= $1 AND period_begin < $2 AND domain <> ''
GROUP BY domain ORDER BY n DESC, domain LIMIT $3`, since, until, limit)
}

// InboundSpoofed returns the limit policy domains with the most recorded
// messages that failed DMARC (neither aligned SPF nor aligned DKIM passed)
// while the domain published p=reject or p=quarantine, in the periods
// beginning in [since, until), most first. Messages and Fail are equal.
func (s *Store) InboundSpoofed(ctx context.Context, since, until time.Time, limit int) ([]DomainTotal, error) {
	return s.domainTotals(ctx, "inbound spoofed domains", `
SELECT p.domain, SUM(r.count) AS n, SUM(r.count) FROM agg_rows r JOIN policies p ON p.id = r.policy_id
WHERE r.period_end > $1 AND r.period_begin >= $1 AND r.period_begin < $2
	AND r.dkim_aligned <> 'pass' AND r.spf_aligned <> 'pass' AND p.p IN ('reject', 'quarantine')
GROUP BY p.domain ORDER BY n DESC, p.domain LIMIT $3`, since, until, limit)
}

func (s *Store) domainTotals(ctx context.Context, what, query string, since, until time.Time, limit int) ([]DomainTotal, error) {
	var out []DomainTotal
	err := s.each(ctx, query, []any{unix(since), unix(until), limit}, func(rs *sql.Rows) error {
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
	err := s.each(ctx, `
SELECT reasons, SUM(count) FROM agg_rows
WHERE period_end > $1 AND period_begin >= $1 AND period_begin < $2 AND reasons <> '[]'
GROUP BY reasons`, []any{unix(since), unix(until)}, func(rs *sql.Rows) error {
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

// SentReport is a report we built for a policy domain and period, with the
// state of each destination.
type SentReport struct {
	Domain     string
	Begin, End time.Time
	State      ReportState
	ReportID   string
	Rows       int64
	Built      time.Time
	Deliveries []Delivery
}

// SentReports lists the reports whose period overlaps [since, until) with
// their deliveries, in two queries (Reports loads the deliveries of each
// report apart, which a page of thousands of reports cannot afford), by
// period and domain.
func (s *Store) SentReports(ctx context.Context, since, until time.Time) ([]SentReport, error) {
	var out []SentReport
	index := map[int64]int{}
	err := s.each(ctx, `
SELECT x.id, p.domain, x.period_begin, x.period_end, x.state, x.report_id, x.rows_included, x.built
FROM reports x JOIN policies p ON p.id = x.policy_id
WHERE x.period_end > $1 AND x.period_begin < $2
ORDER BY x.period_begin, p.domain, x.id`, []any{unix(since), unix(until)}, func(rs *sql.Rows) error {
		var r SentReport
		var id, b, e, built int64
		if err := rs.Scan(&id, &r.Domain, &b, &e, &r.State, &r.ReportID, &r.Rows, &built); err != nil {
			return err
		}
		r.Begin, r.End, r.Built = fromUnix(b), fromUnix(e), optUnix(built)
		index[id] = len(out)
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: sent reports: %w", s.wrap(err))
	}
	err = s.each(ctx, `
SELECT d.report_ref, d.address, d.state, d.attempts, d.next_attempt, d.last_error, d.sent
FROM deliveries d JOIN reports x ON x.id = d.report_ref
WHERE x.period_end > $1 AND x.period_begin < $2
ORDER BY d.report_ref, d.address`, []any{unix(since), unix(until)}, func(rs *sql.Rows) error {
		var ref, next, sent int64
		var d Delivery
		if err := rs.Scan(&ref, &d.Address, &d.State, &d.Attempts, &next, &d.Detail, &sent); err != nil {
			return err
		}
		d.NextAttempt, d.Sent = optUnix(next), optUnix(sent)
		if i, ok := index[ref]; ok {
			out[i].Deliveries = append(out[i].Deliveries, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: sent report deliveries: %w", s.wrap(err))
	}
	return out, nil
}
