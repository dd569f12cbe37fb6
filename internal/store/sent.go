package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
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
		ref, d, err := scanDelivery(rs)
		if err != nil {
			return err
		}
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

// SentSort is a column the reports page sorts by.
type SentSort string

// The orders of SentReportList. Rows of equal key keep the order of their
// period, policy domain and report id.
const (
	// SentByPeriod: by period end, then period begin.
	SentByPeriod SentSort = "period"
	SentByDomain SentSort = "domain"
	SentByState  SentSort = "state"
	SentByRows   SentSort = "rows"
	// SentByFailed: by the number of the report's destinations that
	// failed (DeliveryFailedTemp or DeliveryFailedPerm).
	SentByFailed SentSort = "failed"
)

// SentQuery selects a page of the reports whose period overlaps
// [Since, Until).
type SentQuery struct {
	Since, Until time.Time
	Sort         SentSort
	Desc         bool
	// Limit bounds the reports returned (1 or more).
	Limit int
}

// SentList is the first reports of a SentQuery and how many reports the
// range holds in all.
type SentList struct {
	Total   int
	Reports []SentReport
}

// sentOrder is the ORDER BY of each SentSort for the inner query (aliases
// x: reports, p: policies, f.n: failed destinations) ascending; desc
// reverses the key, not the tie-breakers.
func sentOrder(by SentSort, desc bool) (string, error) {
	dir := ""
	if desc {
		dir = " DESC"
	}
	switch by {
	case SentByPeriod:
		return "x.period_end" + dir + ", x.period_begin" + dir + ", p.domain, x.id", nil
	case SentByDomain:
		return "p.domain" + dir + ", x.period_begin, x.id", nil
	case SentByState:
		return "x.state" + dir + ", x.period_begin, p.domain, x.id", nil
	case SentByRows:
		return "x.rows_included" + dir + ", x.period_begin, p.domain, x.id", nil
	case SentByFailed:
		return "COALESCE(f.n, 0)" + dir + ", x.period_begin, p.domain, x.id", nil
	}
	return "", fmt.Errorf("store: sent reports: %w: sort %q", ErrInvalid, by)
}

// SentReportList returns the first q.Limit reports of the range in the
// asked order with their deliveries, and the number of reports in the
// range: SQL sorts and limits, so a page reads the ids of the range from
// an index and the rows and deliveries of the reports it shows only.
func (s *Store) SentReportList(ctx context.Context, q SentQuery) (SentList, error) {
	order, err := sentOrder(q.Sort, q.Desc)
	if err != nil {
		return SentList{}, err
	}
	if q.Limit < 1 {
		return SentList{}, fmt.Errorf("store: sent reports: %w: limit %d", ErrInvalid, q.Limit)
	}
	since, until := unix(q.Since), unix(q.Until)
	var list SentList
	// The count reads index entries of the range only (SQLite:
	// reports_when, which covers it; PostgreSQL: reports_period). It and
	// the list are two statements: a report stored between them can make
	// them differ by one, never a page's rows wrong.
	err = s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM reports WHERE period_end > $1 AND period_begin < $2`,
		since, until).Scan(&list.Total)
	if err != nil {
		return SentList{}, fmt.Errorf("store: sent reports: count: %w", s.wrap(err))
	}
	// The inner query picks the ids from the indexes alone; the outer one
	// reads those reports' rows. By period, "CROSS JOIN" makes SQLite walk
	// reports_when from the end of the range and stop after the limit
	// (PostgreSQL treats it as the inner join it is and does the same with
	// an incremental sort); by the other keys, SQLite walks the policies
	// and each one's reports by reports_listing.
	from := "reports x JOIN policies p ON p.id = x.policy_id WHERE"
	if q.Sort == SentByPeriod {
		from = "reports x CROSS JOIN policies p WHERE p.id = x.policy_id AND"
	}
	inner, outer := "x.id", order
	if q.Sort == SentByFailed {
		// deliveries_failed holds only the failed destinations; the states
		// are literals (DeliveryFailedTemp, DeliveryFailedPerm) because
		// PostgreSQL matches a partial index to a query's constants only.
		from = `reports x JOIN policies p ON p.id = x.policy_id
	LEFT JOIN (SELECT report_ref, COUNT(*) AS n FROM deliveries
		WHERE state IN ('failed-temp', 'failed-perm') GROUP BY report_ref) f ON f.report_ref = x.id WHERE`
		inner, outer = "x.id, COALESCE(f.n, 0) AS failed", strings.Replace(order, "COALESCE(f.n, 0)", "k.failed", 1)
	}
	query := fmt.Sprintf(`
SELECT x.id, p.domain, x.period_begin, x.period_end, x.state, x.report_id, x.rows_included, x.built
FROM (SELECT %s FROM %s x.period_end > $1 AND x.period_begin < $2 ORDER BY %s LIMIT $3) k
JOIN reports x ON x.id = k.id JOIN policies p ON p.id = x.policy_id
ORDER BY %s`, inner, from, order, outer)
	index := map[int64]int{}
	var ids []any
	err = s.each(ctx, query, []any{since, until, q.Limit}, func(rs *sql.Rows) error {
		var r SentReport
		var id, b, e, built int64
		if err := rs.Scan(&id, &r.Domain, &b, &e, &r.State, &r.ReportID, &r.Rows, &built); err != nil {
			return err
		}
		r.Begin, r.End, r.Built = fromUnix(b), fromUnix(e), optUnix(built)
		index[id] = len(list.Reports)
		ids = append(ids, id)
		list.Reports = append(list.Reports, r)
		return nil
	})
	if err != nil {
		return SentList{}, fmt.Errorf("store: sent reports: %w", s.wrap(err))
	}
	// The deliveries of the reports shown, a bounded number of ids per
	// query (SQLite binds at most 32 766 parameters, PostgreSQL 65 535).
	for chunk := range slices.Chunk(ids, 500) {
		marks := make([]string, len(chunk))
		for i := range chunk {
			marks[i] = fmt.Sprintf("$%d", i+1)
		}
		err = s.each(ctx, `
SELECT report_ref, address, state, attempts, next_attempt, last_error, sent FROM deliveries
WHERE report_ref IN (`+strings.Join(marks, ", ")+`) ORDER BY report_ref, address`, chunk, func(rs *sql.Rows) error {
			ref, d, err := scanDelivery(rs)
			if err != nil {
				return err
			}
			if i, ok := index[ref]; ok {
				list.Reports[i].Deliveries = append(list.Reports[i].Deliveries, d)
			}
			return nil
		})
		if err != nil {
			return SentList{}, fmt.Errorf("store: sent report deliveries: %w", s.wrap(err))
		}
	}
	return list, nil
}

// scanDelivery reads a row of (report_ref, address, state, attempts,
// next_attempt, last_error, sent).
func scanDelivery(rs *sql.Rows) (int64, Delivery, error) {
	var ref, next, sent int64
	var d Delivery
	if err := rs.Scan(&ref, &d.Address, &d.State, &d.Attempts, &next, &d.Detail, &sent); err != nil {
		return 0, Delivery{}, err
	}
	d.NextAttempt, d.Sent = optUnix(next), optUnix(sent)
	return ref, d, nil
}
