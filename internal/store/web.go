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
