package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
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

// ReceivedDays sums the received reports' messages by domain and UTC day
// over the days of [since, until), counting only reports whose id is at
// most upto (ReceivedIDs), ordered by domain and day.
func (s *Store) ReceivedDays(ctx context.Context, since, until time.Time, upto int64) ([]DomainDay, error) {
	return s.domainDays(ctx, `
SELECT d.domain, d.day, SUM(d.count),
	SUM(CASE WHEN r.dkim_aligned = 'pass' OR r.spf_aligned = 'pass' THEN d.count ELSE 0 END)
FROM received_days d JOIN received_rows r ON r.id = d.row_ref
WHERE d.day >= $1 AND d.day < $2 AND r.report_ref <= $3
GROUP BY d.domain, d.day ORDER BY d.domain, d.day`, unix(since), unix(until), upto)
}

// ReceivedDaysOf sums the messages of the received reports with ids in
// (after, upto] by domain and UTC day: what reports stored since an earlier
// ReceivedDays added (the dashboard keeps the days it summed and adds only
// the new reports).
func (s *Store) ReceivedDaysOf(ctx context.Context, after, upto int64) ([]DomainDay, error) {
	return s.domainDays(ctx, `
SELECT d.domain, d.day, SUM(d.count),
	SUM(CASE WHEN r.dkim_aligned = 'pass' OR r.spf_aligned = 'pass' THEN d.count ELSE 0 END)
FROM received_rows r JOIN received_days d ON d.row_ref = r.id
WHERE r.report_ref > $1 AND r.report_ref <= $2
GROUP BY d.domain, d.day ORDER BY d.domain, d.day`, after, upto)
}

func (s *Store) domainDays(ctx context.Context, query string, args ...any) ([]DomainDay, error) {
	var out []DomainDay
	err := s.each(ctx, query, args, func(rs *sql.Rows) error {
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

// ReceivedIDs returns the lowest and highest id of the stored received
// reports (0, 0 when there is none). Ids only grow: a higher high means new
// reports, a higher low means that old ones expired.
func (s *Store) ReceivedIDs(ctx context.Context) (low, high int64, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT COALESCE(MIN(id), 0), COALESCE(MAX(id), 0) FROM received_reports`).Scan(&low, &high)
	if err != nil {
		return 0, 0, fmt.Errorf("store: received ids: %w", s.wrap(err))
	}
	return low, high, nil
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
