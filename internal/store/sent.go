package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

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
