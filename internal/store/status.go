package store

import (
	"cmp"
	"context"
	"database/sql"
	"slices"
	"time"
)

// DomainStatus sums up one policy domain for `report status`.
type DomainStatus struct {
	Domain string
	// Rows is the number of distinct rows stored, Messages their counts.
	Rows     int64
	Messages int64
	// LateMessages came in after their period was reported;
	// DroppedMessages never reached the store.
	LateMessages    int64
	DroppedMessages int64
	// Reports is the number of reports made.
	Reports int64
	// LastSent is when a report of the domain was last accepted by the
	// relay (zero: never).
	LastSent time.Time
	// Pending counts destinations still to try; Failures destinations
	// that failed (temporarily, still retried, or for good).
	Pending  int64
	Failures int64
	// Suppressed lists the domain's report destinations that are on the
	// suppression list now.
	Suppressed []Suppression
}

// Status sums up every domain with data in the periods that end after since
// (rows) or begin at or after it (counters and reports), by domain.
func (s *Store) Status(ctx context.Context, since time.Time) ([]DomainStatus, error) {
	st := statusSet{by: map[string]*DomainStatus{}}
	steps := []func(context.Context, *statusSet, int64) error{s.statusRows, s.statusLosses, s.statusReports, s.statusSuppressed}
	for _, step := range steps {
		if err := step(ctx, &st, unix(since)); err != nil {
			return nil, s.wrap(err)
		}
	}
	out := make([]DomainStatus, 0, len(st.by))
	for _, d := range st.by {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b DomainStatus) int { return cmp.Compare(a.Domain, b.Domain) })
	return out, nil
}

type statusSet struct{ by map[string]*DomainStatus }

func (st *statusSet) get(domain string) *DomainStatus {
	d, ok := st.by[domain]
	if !ok {
		d = &DomainStatus{Domain: domain}
		st.by[domain] = d
	}
	return d
}

// each runs query and hands every result row to scan.
func (s *Store) each(ctx context.Context, query string, args []any, scan func(*sql.Rows) error) error {
	return eachRow(ctx, s.db, query, args, scan)
}

// eachRow runs query on q (the database or a transaction) and hands every
// result row to scan.
func eachRow(ctx context.Context, q querier, query string, args []any, scan func(*sql.Rows) error) error {
	rs, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rs.Close()
	for rs.Next() {
		if err := scan(rs); err != nil {
			return err
		}
	}
	return rs.Err()
}

func (s *Store) statusRows(ctx context.Context, st *statusSet, since int64) error {
	return s.each(ctx, `SELECT p.domain, count(*), sum(r.count) FROM agg_rows r JOIN policies p ON p.id = r.policy_id
WHERE r.period_end > $1 GROUP BY p.domain`, []any{since}, func(rs *sql.Rows) error {
		var domain string
		var n, m int64
		if err := rs.Scan(&domain, &n, &m); err != nil {
			return err
		}
		d := st.get(domain)
		d.Rows, d.Messages = n, m
		return nil
	})
}

func (s *Store) statusLosses(ctx context.Context, st *statusSet, since int64) error {
	return s.each(ctx, `SELECT domain, kind, sum(count) FROM losses WHERE period_begin >= $1 GROUP BY domain, kind`,
		[]any{since}, func(rs *sql.Rows) error {
			var domain, kind string
			var n int64
			if err := rs.Scan(&domain, &kind, &n); err != nil {
				return err
			}
			switch d := st.get(domain); LossKind(kind) {
			case LossLate:
				d.LateMessages += n
			case LossDropped:
				d.DroppedMessages += n
			}
			return nil
		})
}

func (s *Store) statusReports(ctx context.Context, st *statusSet, since int64) error {
	err := s.each(ctx, `SELECT p.domain, count(*) FROM reports x JOIN policies p ON p.id = x.policy_id
WHERE x.period_begin >= $1 GROUP BY p.domain`, []any{since}, func(rs *sql.Rows) error {
		var domain string
		var n int64
		if err := rs.Scan(&domain, &n); err != nil {
			return err
		}
		st.get(domain).Reports = n
		return nil
	})
	if err != nil {
		return err
	}
	return s.each(ctx, `SELECT p.domain, d.state, count(*), max(d.sent) FROM deliveries d
JOIN reports x ON x.id = d.report_ref JOIN policies p ON p.id = x.policy_id
WHERE x.period_begin >= $1 GROUP BY p.domain, d.state`, []any{since}, func(rs *sql.Rows) error {
		var domain, state string
		var n, sent int64
		if err := rs.Scan(&domain, &state, &n, &sent); err != nil {
			return err
		}
		d := st.get(domain)
		switch DeliveryState(state) {
		case DeliverySent:
			if sent > 0 && fromUnix(sent).After(d.LastSent) {
				d.LastSent = fromUnix(sent)
			}
		case DeliveryPending:
			d.Pending += n
		case DeliveryFailedTemp:
			d.Pending += n
			d.Failures += n
		case DeliveryFailedPerm:
			d.Failures += n
		}
		return nil
	})
}

func (s *Store) statusSuppressed(ctx context.Context, st *statusSet, since int64) error {
	return s.each(ctx, `SELECT DISTINCT p.domain, u.address, u.until, u.reason, u.created FROM suppressions u
JOIN deliveries d ON d.address = u.address JOIN reports x ON x.id = d.report_ref JOIN policies p ON p.id = x.policy_id
WHERE u.until > $1 AND x.period_begin >= $2 ORDER BY p.domain, u.address`, []any{unix(s.now()), since},
		func(rs *sql.Rows) error {
			var domain string
			var sup Suppression
			var until, created int64
			if err := rs.Scan(&domain, &sup.Address, &until, &sup.Reason, &created); err != nil {
				return err
			}
			sup.Until, sup.Created = fromUnix(until), fromUnix(created)
			d := st.get(domain)
			d.Suppressed = append(d.Suppressed, sup)
			return nil
		})
}

// ReportInfo describes one report for a status view.
type ReportInfo struct {
	Group      Group
	State      ReportState
	ReportID   string
	Filename   string
	Holder     string
	LeaseUntil time.Time
	Rows       int64
	Created    time.Time
	Built      time.Time
	Done       time.Time
	Deliveries []Delivery
}

// Reports lists the reports of the periods that begin at or after since,
// those of one policy domain when domain is not empty, oldest first.
func (s *Store) Reports(ctx context.Context, domain string, since time.Time) ([]ReportInfo, error) {
	var out []ReportInfo
	var refs []int64
	err := s.each(ctx, `SELECT x.id, x.period_begin, x.period_end, x.state, x.report_id, x.filename, x.holder,
	x.lease_until, x.rows_included, x.created, x.built, x.done,
	p.domain, p.p, p.sp, p.np, p.adkim, p.aspf, p.fo, p.testing, p.discovery_method
FROM reports x JOIN policies p ON p.id = x.policy_id
WHERE x.period_begin >= $1 AND ($2 = '' OR p.domain = $2)
ORDER BY x.period_begin, p.domain, x.id`, []any{unix(since), domain}, func(rs *sql.Rows) error {
		var ri ReportInfo
		var ref, b, e, lease, created, built, done int64
		p := &ri.Group.Policy
		if err := rs.Scan(&ref, &b, &e, &ri.State, &ri.ReportID, &ri.Filename, &ri.Holder, &lease, &ri.Rows,
			&created, &built, &done, &p.Domain, &p.P, &p.SP, &p.NP, &p.ADKIM, &p.ASPF, &p.FO, &p.Testing,
			&p.DiscoveryMethod); err != nil {
			return err
		}
		ri.Group.Begin, ri.Group.End, ri.Created = fromUnix(b), fromUnix(e), fromUnix(created)
		ri.LeaseUntil, ri.Built, ri.Done = optUnix(lease), optUnix(built), optUnix(done)
		out = append(out, ri)
		refs = append(refs, ref)
		return nil
	})
	if err != nil {
		return nil, s.wrap(err)
	}
	for i, ref := range refs {
		if out[i].Deliveries, err = loadDeliveries(ctx, s.db, ref); err != nil {
			return nil, s.wrap(err)
		}
	}
	return out, nil
}

// optUnix is fromUnix, with 0 meaning "never" (the zero time).
func optUnix(u int64) time.Time {
	if u == 0 {
		return time.Time{}
	}
	return fromUnix(u)
}
