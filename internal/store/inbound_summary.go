package store

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// migrationInbound is the schema step of the inbound summaries: the
// dashboard's inbound page over long ranges reads them instead of a year
// of counters and recorded rows (docs/performance.md). They are written in
// the transactions that add counters (AddCounters) and rows (RecordRows),
// and taken back in the ones that expire them, so they always equal a sum
// over the stored counters and rows. A period counts on the UTC day and in
// the UTC calendar month in which it begins.
//
//   - inbound_days: messages per day, DMARC result and action (the volume
//     chart).
//   - inbound_domain_days and _months: messages and DMARC failures per day
//     or month and sending domain (the top sending domains: the whole
//     months of a range from the months, the days around them from the
//     days, so that a year reads some 13 000 rows, not 1.1 million
//     counters, whatever the reporting interval).
//   - inbound_spoofed_days and _months: recorded messages per day or month
//     and policy domain that failed DMARC under p=reject or p=quarantine
//     (the top spoofed domains, read the same way).
const migrationInbound = `
CREATE TABLE inbound_days (
	day BIGINT NOT NULL,
	result TEXT NOT NULL,
	action TEXT NOT NULL,
	count BIGINT NOT NULL,
	PRIMARY KEY (day, result, action)
);

CREATE TABLE inbound_domain_days (
	day BIGINT NOT NULL,
	domain TEXT NOT NULL,
	messages BIGINT NOT NULL,
	fail BIGINT NOT NULL,
	PRIMARY KEY (day, domain)
);

CREATE TABLE inbound_spoofed_days (
	day BIGINT NOT NULL,
	domain TEXT NOT NULL,
	messages BIGINT NOT NULL,
	PRIMARY KEY (day, domain)
);

CREATE TABLE inbound_domain_months (
	month BIGINT NOT NULL,
	domain TEXT NOT NULL,
	messages BIGINT NOT NULL,
	fail BIGINT NOT NULL,
	PRIMARY KEY (month, domain)
);

CREATE TABLE inbound_spoofed_months (
	month BIGINT NOT NULL,
	domain TEXT NOT NULL,
	messages BIGINT NOT NULL,
	PRIMARY KEY (month, domain)
);
`

// monthOf is the Unix time of the first second of the UTC month of t.
func monthOf(t int64) int64 {
	u := time.Unix(t, 0).UTC()
	return time.Date(u.Year(), u.Month(), 1, 0, 0, 0, 0, time.UTC).Unix()
}

type inboundDayKey struct {
	day            int64
	result, action string
}

// periodDomain keys a day's or a month's sum for a domain (start is the
// period's first second).
type periodDomain struct {
	start  int64
	domain string
}

// inboundDelta is what adding (+) or expiring (-) counters and rows
// changes in the inbound summaries.
type inboundDelta struct {
	days                     map[inboundDayKey]int64
	domainDays, domainMonths map[periodDomain][2]int64 // messages, fail
	spoofedDays, spoofedMons map[periodDomain]int64
}

func newInboundDelta() *inboundDelta {
	return &inboundDelta{days: map[inboundDayKey]int64{}, domainDays: map[periodDomain][2]int64{}, domainMonths: map[periodDomain][2]int64{},
		spoofedDays: map[periodDomain]int64{}, spoofedMons: map[periodDomain]int64{}}
}

// counter adds n messages of a counter whose period begins at begin.
func (d *inboundDelta) counter(begin int64, domain, result, action string, n int64) {
	d.days[inboundDayKey{begin - begin%86400, result, action}] += n
	if domain == "" {
		return // not a sending domain (InboundTopDomains leaves it out)
	}
	fail := int64(0)
	if result == "fail" {
		fail = n
	}
	add := func(m map[periodDomain][2]int64, k periodDomain) {
		v := m[k]
		m[k] = [2]int64{v[0] + n, v[1] + fail}
	}
	add(d.domainDays, periodDomain{begin - begin%86400, domain})
	add(d.domainMonths, periodDomain{monthOf(begin), domain})
}

// spoofedRow tells whether a recorded row counts as spoofing: DMARC failed
// (neither aligned DKIM nor aligned SPF passed) under p=reject or
// p=quarantine.
func spoofedRow(dkimAligned, spfAligned, p string) bool {
	return dkimAligned != "pass" && spfAligned != "pass" && (p == "reject" || p == "quarantine")
}

// row adds n messages of a recorded row whose period begins at begin.
func (d *inboundDelta) row(begin int64, policyDomain, dkimAligned, spfAligned, p string, n int64) {
	if spoofedRow(dkimAligned, spfAligned, p) {
		d.spoofedDays[periodDomain{begin - begin%86400, policyDomain}] += n
		d.spoofedMons[periodDomain{monthOf(begin), policyDomain}] += n
	}
}

func compareMonthDomain(a, b periodDomain) int {
	return cmp.Or(cmp.Compare(a.start, b.start), cmp.Compare(a.domain, b.domain))
}

// apply writes the delta in key order (concurrent writers lock summary rows
// in one order) and deletes the rows that came down to zero.
func (s *Store) applyInbound(ctx context.Context, tx *sql.Tx, d *inboundDelta) error {
	days := slices.SortedFunc(maps.Keys(d.days), func(a, b inboundDayKey) int {
		return cmp.Or(cmp.Compare(a.day, b.day), cmp.Compare(a.result, b.result), cmp.Compare(a.action, b.action))
	})
	if err := s.summaryUpsert(ctx, tx, upsertSpec{head: `
INSERT INTO inbound_days (day, result, action, count)`, width: 4, tail: `ON CONFLICT (day, result, action) DO UPDATE SET count = inbound_days.count + excluded.count`,
		del: `DELETE FROM inbound_days WHERE day = $1 AND result = $2 AND action = $3 AND count <= 0`},
		len(days), func(i int) ([]any, []any, bool) {
			k, n := days[i], d.days[days[i]]
			return []any{k.day, k.result, k.action, n}, []any{k.day, k.result, k.action}, n < 0
		}); err != nil {
		return fmt.Errorf("inbound days: %w", err)
	}
	for _, t := range []struct {
		table, key string
		m          map[periodDomain][2]int64
	}{{"inbound_domain_days", "day", d.domainDays}, {"inbound_domain_months", "month", d.domainMonths}} {
		keys := slices.SortedFunc(maps.Keys(t.m), compareMonthDomain)
		if err := s.summaryUpsert(ctx, tx, upsertSpec{head: `
INSERT INTO ` + t.table + ` (` + t.key + `, domain, messages, fail)`, width: 4, tail: `ON CONFLICT (` + t.key + `, domain) DO UPDATE SET messages = ` + t.table + `.messages + excluded.messages,
	fail = ` + t.table + `.fail + excluded.fail`,
			del: `DELETE FROM ` + t.table + ` WHERE ` + t.key + ` = $1 AND domain = $2 AND messages <= 0`},
			len(keys), func(i int) ([]any, []any, bool) {
				k, v := keys[i], t.m[keys[i]]
				return []any{k.start, k.domain, v[0], v[1]}, []any{k.start, k.domain}, v[0] < 0
			}); err != nil {
			return fmt.Errorf("%s: %w", t.table, err)
		}
	}
	for _, t := range []struct {
		table, key string
		m          map[periodDomain]int64
	}{{"inbound_spoofed_days", "day", d.spoofedDays}, {"inbound_spoofed_months", "month", d.spoofedMons}} {
		keys := slices.SortedFunc(maps.Keys(t.m), compareMonthDomain)
		if err := s.summaryUpsert(ctx, tx, upsertSpec{head: `
INSERT INTO ` + t.table + ` (` + t.key + `, domain, messages)`, width: 3, tail: `ON CONFLICT (` + t.key + `, domain) DO UPDATE SET messages = ` + t.table + `.messages + excluded.messages`,
			del: `DELETE FROM ` + t.table + ` WHERE ` + t.key + ` = $1 AND domain = $2 AND messages <= 0`},
			len(keys), func(i int) ([]any, []any, bool) {
				k, n := keys[i], t.m[keys[i]]
				return []any{k.start, k.domain, n}, []any{k.start, k.domain}, n < 0
			}); err != nil {
			return fmt.Errorf("%s: %w", t.table, err)
		}
	}
	return nil
}

// fillInbound builds the inbound summaries of the counters and rows stored
// before them (migration step 5).
func (s *Store) fillInbound(ctx context.Context, tx *sql.Tx) error {
	d := newInboundDelta()
	err := eachRow(ctx, tx, `SELECT period_begin, domain, result, action, SUM(count) FROM counters
GROUP BY period_begin, domain, result, action`, nil, func(rs *sql.Rows) error {
		var begin, n int64
		var domain, result, action string
		if err := rs.Scan(&begin, &domain, &result, &action, &n); err != nil {
			return err
		}
		d.counter(begin, domain, result, action, n)
		return nil
	})
	if err != nil {
		return fmt.Errorf("counters: %w", err)
	}
	err = eachRow(ctx, tx, `SELECT r.period_begin, p.domain, r.dkim_aligned, r.spf_aligned, p.p, SUM(r.count)
FROM agg_rows r JOIN policies p ON p.id = r.policy_id
GROUP BY r.period_begin, p.domain, r.dkim_aligned, r.spf_aligned, p.p`, nil, func(rs *sql.Rows) error {
		var begin, n int64
		var domain, dkim, spf, p string
		if err := rs.Scan(&begin, &domain, &dkim, &spf, &p, &n); err != nil {
			return err
		}
		d.row(begin, domain, dkim, spf, p, n)
		return nil
	})
	if err != nil {
		return fmt.Errorf("rows: %w", err)
	}
	return s.applyInbound(ctx, tx, d)
}

// expireCounters deletes the counters whose period ended before cutoff, a
// batch per transaction, taking them out of the inbound summaries.
func (s *Store) expireCounters(ctx context.Context, cutoff int64) (int64, error) {
	return s.expireInBatches(ctx, func(tx *sql.Tx) (int, error) {
		type key struct {
			begin, end                     int64
			domain, result, action, outcme string
		}
		var keys []key
		d := newInboundDelta()
		err := eachRow(ctx, tx, `SELECT period_begin, period_end, domain, result, action, outcome, count FROM counters
WHERE period_end < $1 LIMIT $2`+s.forUpdate(), []any{cutoff, expireBatch}, func(rs *sql.Rows) error {
			var k key
			var n int64
			if err := rs.Scan(&k.begin, &k.end, &k.domain, &k.result, &k.action, &k.outcme, &n); err != nil {
				return err
			}
			keys = append(keys, k)
			d.counter(k.begin, k.domain, k.result, k.action, -n)
			return nil
		})
		if err != nil || len(keys) == 0 {
			return 0, err
		}
		if err := s.applyInbound(ctx, tx, d); err != nil {
			return 0, err
		}
		del, err := tx.PrepareContext(ctx, `DELETE FROM counters WHERE period_begin = $1 AND period_end = $2 AND domain = $3
	AND result = $4 AND action = $5 AND outcome = $6`)
		if err != nil {
			return 0, err
		}
		defer del.Close()
		for _, k := range keys {
			if _, err := del.ExecContext(ctx, k.begin, k.end, k.domain, k.result, k.action, k.outcme); err != nil {
				return 0, err
			}
		}
		return len(keys), nil
	})
}

// expireRows deletes the recorded rows whose period ended before cutoff
// (but not those of a report being built), a batch per transaction, taking
// them out of the inbound summaries.
func (s *Store) expireRows(ctx context.Context, cutoff int64) (int64, error) {
	return s.expireInBatches(ctx, func(tx *sql.Tx) (int, error) {
		var ids []int64
		d := newInboundDelta()
		lock := ""
		if s.engine == PostgreSQL {
			lock = " FOR UPDATE OF r"
		}
		err := eachRow(ctx, tx, `SELECT r.id, r.period_begin, p.domain, r.dkim_aligned, r.spf_aligned, p.p, r.count
FROM agg_rows r JOIN policies p ON p.id = r.policy_id
WHERE r.period_end < $1 AND (r.report_ref IS NULL OR r.report_ref NOT IN (SELECT id FROM reports WHERE state = 'building'))
LIMIT $2`+lock, []any{cutoff, expireBatch}, func(rs *sql.Rows) error {
			var id, begin, n int64
			var domain, dkim, spf, p string
			if err := rs.Scan(&id, &begin, &domain, &dkim, &spf, &p, &n); err != nil {
				return err
			}
			ids = append(ids, id)
			d.row(begin, domain, dkim, spf, p, -n)
			return nil
		})
		if err != nil || len(ids) == 0 {
			return 0, err
		}
		if err := s.applyInbound(ctx, tx, d); err != nil {
			return 0, err
		}
		for chunk := range slices.Chunk(ids, 500) {
			in, args := idList(chunk)
			if _, err := tx.ExecContext(ctx, `DELETE FROM agg_rows WHERE id IN (`+in+`)`, args...); err != nil {
				return 0, err
			}
		}
		return len(ids), nil
	})
}

// expireInBatches runs batch, each in its own transaction, until one
// deletes fewer than expireBatch.
func (s *Store) expireInBatches(ctx context.Context, batch func(*sql.Tx) (int, error)) (int64, error) {
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		var n int
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			var err error
			n, err = batch(tx)
			return err
		})
		if err != nil {
			return total, s.wrap(err)
		}
		total += int64(n)
		if int64(n) < expireBatch {
			return total, nil
		}
	}
}

// wholeMonths splits [since, until) into the whole UTC months it holds,
// [m1, m2), and the rest, [since, m1) and [m2, until). Without a whole
// month, m1 = m2 = until: the rest is all of it.
func wholeMonths(since, until int64) (m1, m2 int64) {
	m1 = monthOf(since)
	if m1 < since {
		m1 = time.Unix(m1, 0).UTC().AddDate(0, 1, 0).Unix()
	}
	m2 = monthOf(until)
	if m1 >= m2 {
		return until, until
	}
	return m1, m2
}

// monthsSQL writes the bounds of wholeMonths into query's {since}, {m1},
// {m2} and {until} as integers (rangeSQL says why not as parameters).
func monthsSQL(query string, since, until time.Time) string {
	a, b := unix(since), unix(until)
	m1, m2 := wholeMonths(a, b)
	return strings.NewReplacer("{since}", fmt.Sprint(a), "{m1}", fmt.Sprint(m1), "{m2}", fmt.Sprint(m2),
		"{until}", fmt.Sprint(b)).Replace(query)
}

// dayAligned: both bounds are UTC midnights, so that inbound_days answers
// for exactly the periods that begin in the range.
func dayAligned(since, until time.Time) bool {
	return unix(since)%86400 == 0 && unix(until)%86400 == 0
}

// receivedSummaries and inboundSummaries are the summaries the store keeps
// beside the data they sum (summary.go; this file).
var (
	receivedSummaries = []string{"received_domain_days", "received_facts", "received_overrides", "received_domain_sources"}
	inboundSummaries  = []string{"inbound_days", "inbound_domain_days", "inbound_spoofed_days", "inbound_domain_months",
		"inbound_spoofed_months"}
)

// RebuildSummaries deletes every summary and builds it again from the
// stored data: those of the received reports in one transaction, then
// those of the counters and rows in another, so that the recorders wait
// only for the second (the intake, which stores a few reports an hour,
// waits for the first). It mends what a binary older than the summaries
// wrote into a shared store during a rolling upgrade (docs/reports.md).
// First and last seen per domain and source then start at the oldest
// stored report.
func (s *Store) RebuildSummaries(ctx context.Context) error {
	for _, part := range []struct {
		lock   string
		tables []string
		fill   func(*Store, context.Context, *sql.Tx) error
	}{
		{"received_reports, received_rows, received_days", receivedSummaries, (*Store).fillSummaries},
		{"counters, agg_rows", inboundSummaries, (*Store).fillInbound},
	} {
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			if s.engine == PostgreSQL {
				// Writers of the summed tables wait for the rebuild, so that
				// none is counted twice or not at all (SQLite's write lock
				// does that).
				if _, err := tx.ExecContext(ctx, `LOCK TABLE `+part.lock+` IN SHARE MODE`); err != nil {
					return err
				}
			}
			for _, t := range part.tables {
				if _, err := tx.ExecContext(ctx, `DELETE FROM `+t); err != nil {
					return fmt.Errorf("%s: %w", t, err)
				}
			}
			return part.fill(s, ctx, tx)
		})
		if err != nil {
			return fmt.Errorf("store: rebuild summaries: %w", err)
		}
	}
	return nil
}
