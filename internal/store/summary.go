package store

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// migrationSummaries is the schema step of the received reports' summaries,
// which the dashboard and `report senders`/`failures` read instead of the
// year of rows under them: a page then reads a few hundred rows, not tens
// of thousands (docs/performance.md). They are written in the transaction
// that stores a report and taken back in the one that expires it, so they
// always equal a sum over the stored rows and days.
//
//   - received_domain_days: messages and DMARC passes per policy domain and
//     UTC day (the domains page).
//   - received_facts: messages per domain, day and distinct row facts (the
//     source address and everything the senders and failures pages classify
//     on, without the reporter and envelope_to): fifty reporters telling of
//     the same sender collapse into one row. fact_key is a hash of the facts.
//   - received_overrides: messages per domain, day, reporter and policy
//     override the reporter applied (the failures page's override table).
//   - received_domain_sources: when each source address was first and last
//     seen in a report for a domain (the begin and end of those reports).
const migrationSummaries = `
CREATE TABLE received_domain_days (
	domain TEXT NOT NULL,
	day BIGINT NOT NULL,
	messages BIGINT NOT NULL,
	pass BIGINT NOT NULL,
	PRIMARY KEY (domain, day)
);
CREATE INDEX received_domain_days_day ON received_domain_days (day);

CREATE TABLE received_facts (
	domain TEXT NOT NULL,
	day BIGINT NOT NULL,
	fact_key {bytes} NOT NULL,
	source_ip TEXT NOT NULL,
	disposition TEXT NOT NULL,
	dkim_aligned TEXT NOT NULL,
	spf_aligned TEXT NOT NULL,
	reasons TEXT NOT NULL,
	header_from TEXT NOT NULL,
	envelope_from TEXT NOT NULL,
	dkim TEXT NOT NULL,
	spf TEXT NOT NULL,
	messages BIGINT NOT NULL,
	PRIMARY KEY (domain, day, fact_key)
);

CREATE TABLE received_overrides (
	domain TEXT NOT NULL,
	day BIGINT NOT NULL,
	override_key {bytes} NOT NULL,
	reporter TEXT NOT NULL,
	type TEXT NOT NULL,
	comment TEXT NOT NULL,
	messages BIGINT NOT NULL,
	PRIMARY KEY (domain, day, override_key)
);

CREATE TABLE received_domain_sources (
	domain TEXT NOT NULL,
	source_ip TEXT NOT NULL,
	first_seen BIGINT NOT NULL,
	last_seen BIGINT NOT NULL,
	PRIMARY KEY (domain, source_ip)
);
`

// fact is what the summaries keep of a received row: the columns the pages
// classify on, lists in their stored JSON form.
type fact struct {
	SourceIP, Disposition, DKIMAligned, SPFAligned string
	Reasons, HeaderFrom, EnvelopeFrom, DKIM, SPF   string
}

func (f *fact) key() [32]byte {
	var k keyWriter
	k.strings(f.SourceIP, f.Disposition, f.DKIMAligned, f.SPFAligned, f.Reasons, f.HeaderFrom, f.EnvelopeFrom, f.DKIM, f.SPF)
	return k.sum()
}

// pass: the row passed DMARC (aligned SPF or aligned DKIM).
func (f *fact) pass() bool { return f.DKIMAligned == "pass" || f.SPFAligned == "pass" }

type dayKey struct {
	domain string
	day    int64
}

type dayKeyed struct {
	dayKey
	key [32]byte
}

type daySum struct{ messages, pass int64 }

type factSum struct {
	fact     fact
	messages int64
}

type overrideSum struct {
	reporter string
	reason   Reason
	messages int64
}

type sourceKey struct{ domain, ip string }

type span struct{ first, last int64 }

// summaryDelta is what storing (sign +1) or expiring (sign -1) some received
// reports changes in the summaries, merged in memory so that each summary
// row is written once per transaction.
type summaryDelta struct {
	days      map[dayKey]*daySum
	facts     map[dayKeyed]*factSum
	overrides map[dayKeyed]*overrideSum
	sources   map[sourceKey]span
	// ips spans each address over every domain (the sources table).
	ips map[string]span
}

func newSummaryDelta() *summaryDelta {
	return &summaryDelta{days: map[dayKey]*daySum{}, facts: map[dayKeyed]*factSum{},
		overrides: map[dayKeyed]*overrideSum{}, sources: map[sourceKey]span{}, ips: map[string]span{}}
}

// seen widens the span of a source of domain, and of the source over all
// domains, to a report's period.
func (d *summaryDelta) seen(domain, ip string, begin, end int64) {
	k := sourceKey{domain, ip}
	d.sources[k] = d.sources[k].widen(begin, end)
	d.ips[ip] = d.ips[ip].widen(begin, end)
}

// widen returns s widened to [begin, end) (the zero span is empty).
func (s span) widen(begin, end int64) span {
	if s == (span{}) {
		return span{begin, end}
	}
	return span{min(s.first, begin), max(s.last, end)}
}

// add counts n messages (negative to take them back) of a row with facts f
// and reasons, of a report by reporter for domain, on UTC day day.
func (d *summaryDelta) add(domain, reporter string, day int64, f *fact, reasons []Reason, n int64) {
	dk := dayKey{domain, day}
	ds := d.days[dk]
	if ds == nil {
		ds = &daySum{}
		d.days[dk] = ds
	}
	ds.messages += n
	if f.pass() {
		ds.pass += n
	}
	fk := dayKeyed{dk, f.key()}
	fs := d.facts[fk]
	if fs == nil {
		fs = &factSum{fact: *f}
		d.facts[fk] = fs
	}
	fs.messages += n
	for _, r := range reasons {
		var k keyWriter
		k.strings(reporter, r.Type, r.Comment)
		ok := dayKeyed{dk, k.sum()}
		os := d.overrides[ok]
		if os == nil {
			os = &overrideSum{reporter: reporter, reason: r}
			d.overrides[ok] = os
		}
		os.messages += n
	}
}

// sortedKeys orders the keys of a delta, so that two hosts writing the same
// summary rows lock them in the same order (no deadlock on PostgreSQL).
func sortedKeys[V any](m map[dayKeyed]V) []dayKeyed {
	out := make([]dayKeyed, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b dayKeyed) int {
		return cmp.Or(cmp.Compare(a.domain, b.domain), cmp.Compare(a.day, b.day), bytes.Compare(a.key[:], b.key[:]))
	})
	return out
}

// apply writes the delta into the summaries. Rows whose count comes down to
// zero are deleted, so that the summaries hold only what stored rows say.
func (s *Store) applySummary(ctx context.Context, tx *sql.Tx, d *summaryDelta) error {
	var days []dayKey
	for k := range d.days {
		days = append(days, k)
	}
	slices.SortFunc(days, func(a, b dayKey) int { return cmp.Or(cmp.Compare(a.domain, b.domain), cmp.Compare(a.day, b.day)) })
	if err := s.summaryUpsert(ctx, tx, upsertSpec{head: `
INSERT INTO received_domain_days (domain, day, messages, pass)`, width: 4, tail: `ON CONFLICT (domain, day) DO UPDATE SET messages = received_domain_days.messages + excluded.messages,
	pass = received_domain_days.pass + excluded.pass`,
		del: `DELETE FROM received_domain_days WHERE domain = $1 AND day = $2 AND messages <= 0`},
		len(days), func(i int) ([]any, []any, bool) {
			k, v := days[i], d.days[days[i]]
			return []any{k.domain, k.day, v.messages, v.pass}, []any{k.domain, k.day}, v.messages < 0
		}); err != nil {
		return fmt.Errorf("domain days: %w", err)
	}
	facts := sortedKeys(d.facts)
	if err := s.summaryUpsert(ctx, tx, upsertSpec{head: `
INSERT INTO received_facts (domain, day, fact_key, source_ip, disposition, dkim_aligned, spf_aligned, reasons,
	header_from, envelope_from, dkim, spf, messages)`, width: 13, tail: `ON CONFLICT (domain, day, fact_key) DO UPDATE SET messages = received_facts.messages + excluded.messages`,
		del: `DELETE FROM received_facts WHERE domain = $1 AND day = $2 AND fact_key = $3 AND messages <= 0`},
		len(facts), func(i int) ([]any, []any, bool) {
			k, v := facts[i], d.facts[facts[i]]
			f := &v.fact
			return []any{k.domain, k.day, k.key[:], f.SourceIP, f.Disposition, f.DKIMAligned, f.SPFAligned, f.Reasons,
				f.HeaderFrom, f.EnvelopeFrom, f.DKIM, f.SPF, v.messages}, []any{k.domain, k.day, k.key[:]}, v.messages < 0
		}); err != nil {
		return fmt.Errorf("facts: %w", err)
	}
	overrides := sortedKeys(d.overrides)
	if err := s.summaryUpsert(ctx, tx, upsertSpec{head: `
INSERT INTO received_overrides (domain, day, override_key, reporter, type, comment, messages)`, width: 7, tail: `ON CONFLICT (domain, day, override_key) DO UPDATE SET messages = received_overrides.messages + excluded.messages`,
		del: `DELETE FROM received_overrides WHERE domain = $1 AND day = $2 AND override_key = $3 AND messages <= 0`},
		len(overrides), func(i int) ([]any, []any, bool) {
			k, v := overrides[i], d.overrides[overrides[i]]
			return []any{k.domain, k.day, k.key[:], v.reporter, v.reason.Type, v.reason.Comment, v.messages},
				[]any{k.domain, k.day, k.key[:]}, v.messages < 0
		}); err != nil {
		return fmt.Errorf("overrides: %w", err)
	}
	return s.applySources(ctx, tx, d.sources)
}

// upsertSpec is an upsert of summary rows: head is "INSERT INTO t (columns)",
// width the number of columns, tail the ON CONFLICT clause, del the delete
// of one row by key when its count came down to zero.
type upsertSpec struct {
	head  string
	width int
	tail  string
	del   string
}

// summaryChunk is the number of summary rows one upsert statement carries
// on PostgreSQL (at most 13 columns each: well within its parameter limit),
// one round trip instead of 200. SQLite runs in process: there one
// prepared single-row statement is cheaper than parsing a long one
// (`report import` took 1.76 times the CPU with 200-row statements).
var summaryChunk = 200

// statement is the upsert of n rows.
func (u upsertSpec) statement(n int) string {
	var b strings.Builder
	b.WriteString(u.head)
	b.WriteString(" VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for j := range u.width {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "$%d", i*u.width+j+1)
		}
		b.WriteByte(')')
	}
	b.WriteString("\n")
	b.WriteString(u.tail)
	return b.String()
}

// summaryUpsert writes n summary rows, chunk to a statement (the
// rows' keys are distinct, as one INSERT ... ON CONFLICT needs), then
// deletes those whose delta was negative and that came down to zero.
func (s *Store) summaryUpsert(ctx context.Context, tx *sql.Tx, u upsertSpec, n int, row func(int) (args, key []any, neg bool)) error {
	chunk := summaryChunk
	if s.engine == SQLite {
		chunk = 1
	}
	var full *sql.Stmt
	var negKeys [][]any
	for start := 0; start < n; start += chunk {
		m := min(chunk, n-start)
		args := make([]any, 0, m*u.width)
		for i := start; i < start+m; i++ {
			a, key, neg := row(i)
			args = append(args, a...)
			if neg {
				negKeys = append(negKeys, key)
			}
		}
		var err error
		if m == chunk {
			if full == nil {
				if full, err = tx.PrepareContext(ctx, u.statement(m)); err != nil {
					return err
				}
				defer full.Close()
			}
			_, err = full.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, u.statement(m), args...)
		}
		if err != nil {
			return err
		}
	}
	if len(negKeys) == 0 {
		return nil
	}
	dl, err := tx.PrepareContext(ctx, u.del)
	if err != nil {
		return err
	}
	defer dl.Close()
	for _, key := range negKeys {
		if _, err := dl.ExecContext(ctx, key...); err != nil {
			return err
		}
	}
	return nil
}

// applySources widens the first and last seen of each (domain, source). An
// expired report does not narrow them: a sender seen a year ago is not new
// when it comes back (Expire deletes the entries not seen since the cutoff).
func (s *Store) applySources(ctx context.Context, tx *sql.Tx, src map[sourceKey]span) error {
	if len(src) == 0 {
		return nil
	}
	keys := make([]sourceKey, 0, len(src))
	for k := range src {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b sourceKey) int { return cmp.Or(cmp.Compare(a.domain, b.domain), cmp.Compare(a.ip, b.ip)) })
	err := s.summaryUpsert(ctx, tx, upsertSpec{head: `INSERT INTO received_domain_sources (domain, source_ip, first_seen, last_seen)`,
		width: 4, tail: `ON CONFLICT (domain, source_ip) DO UPDATE SET
	first_seen = CASE WHEN excluded.first_seen < received_domain_sources.first_seen THEN excluded.first_seen ELSE received_domain_sources.first_seen END,
	last_seen = CASE WHEN excluded.last_seen > received_domain_sources.last_seen THEN excluded.last_seen ELSE received_domain_sources.last_seen END`},
		len(keys), func(i int) ([]any, []any, bool) {
			k := keys[i]
			v := src[k]
			return []any{k.domain, k.ip, v.first, v.last}, nil, false
		})
	if err != nil {
		return fmt.Errorf("domain sources: %w", err)
	}
	return nil
}

// loadSummary adds what the stored received reports ids hold to d, with
// sign: +1 to build the summaries of stored reports, -1 before deleting
// them. Sources are added only for +1 (see applySources).
func (s *Store) loadSummary(ctx context.Context, tx *sql.Tx, ids []int64, sign int64, d *summaryDelta) error {
	if len(ids) == 0 {
		return nil
	}
	in, args := idList(ids)
	lo, hi := slices.Min(ids), slices.Max(ids)
	// The range lets PostgreSQL read the reports by their key: for a long
	// IN list alone it scanned the whole table (213 ms a batch at full size).
	rs, err := tx.QueryContext(ctx, `
SELECT rr.domain, rr.org_name, rr.period_begin, rr.period_end, r.source_ip, r.disposition, r.dkim_aligned, r.spf_aligned,
	r.reasons, r.header_from, r.envelope_from, r.dkim, r.spf, COALESCE(d.day, 0), COALESCE(d.count, 0)
FROM received_reports rr JOIN received_rows r ON r.report_ref = rr.id LEFT JOIN received_days d ON d.row_ref = r.id
WHERE rr.id >= `+strconv.FormatInt(lo, 10)+` AND rr.id <= `+strconv.FormatInt(hi, 10)+` AND rr.id IN (`+in+`)`, args...)
	if err != nil {
		return err
	}
	defer rs.Close()
	for rs.Next() {
		var domain, reporter string
		var begin, end, day, n int64
		var f fact
		if err := rs.Scan(&domain, &reporter, &begin, &end, &f.SourceIP, &f.Disposition, &f.DKIMAligned, &f.SPFAligned,
			&f.Reasons, &f.HeaderFrom, &f.EnvelopeFrom, &f.DKIM, &f.SPF, &day, &n); err != nil {
			return err
		}
		if sign > 0 {
			d.seen(domain, f.SourceIP, begin, end)
		}
		if n == 0 {
			continue
		}
		var reasons []Reason
		if err := json.Unmarshal([]byte(f.Reasons), &reasons); err != nil {
			return fmt.Errorf("row reasons: %w", err)
		}
		d.add(domain, reporter, day, &f, reasons, sign*n)
	}
	return rs.Err()
}

// fillSummaries builds the summaries of the reports stored before they
// existed (migration step 3), a thousand reports at a time.
func (s *Store) fillSummaries(ctx context.Context, tx *sql.Tx) error {
	var after int64
	for {
		ids, err := queryIDs(ctx, tx, `SELECT id FROM received_reports WHERE id > $1 ORDER BY id LIMIT 1000`, after)
		if err != nil || len(ids) == 0 {
			return err
		}
		d := newSummaryDelta()
		if err := s.loadSummary(ctx, tx, ids, 1, d); err != nil {
			return err
		}
		if err := s.applySummary(ctx, tx, d); err != nil {
			return err
		}
		after = ids[len(ids)-1]
	}
}

// receivedExpiryBatch bounds the received reports expired in one
// transaction (their rows are read to take them out of the summaries).
var receivedExpiryBatch = 200

// expireReceived deletes the received reports whose period ended before
// cutoff, with their rows and days (ON DELETE CASCADE), taking them out of
// the summaries in the same transaction.
func (s *Store) expireReceived(ctx context.Context, cutoff int64) (int64, error) {
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		var ids []int64
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			var err error
			ids, err = queryIDs(ctx, tx, `SELECT id FROM received_reports WHERE period_end < $1 ORDER BY id LIMIT $2`,
				cutoff, receivedExpiryBatch)
			if err != nil || len(ids) == 0 {
				return err
			}
			d := newSummaryDelta()
			if err := s.loadSummary(ctx, tx, ids, -1, d); err != nil {
				return err
			}
			if err := s.applySummary(ctx, tx, d); err != nil {
				return err
			}
			in, args := idList(ids)
			_, err = tx.ExecContext(ctx, `DELETE FROM received_reports WHERE id IN (`+in+`)`, args...)
			return err
		})
		if err != nil {
			return total, err
		}
		total += int64(len(ids))
		if len(ids) < receivedExpiryBatch {
			return total, nil
		}
	}
}

// queryIDs runs a query of one integer column.
func queryIDs(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]int64, error) {
	rs, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var ids []int64
	for rs.Next() {
		var id int64
		if err := rs.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rs.Err()
}

// idList is the placeholders and arguments of an IN list of ids.
func idList(ids []int64) (string, []any) {
	ph := make([]string, len(ids))
	args := make([]any, len(ids))
	for i, id := range ids {
		ph[i], args[i] = fmt.Sprintf("$%d", i+1), id
	}
	return strings.Join(ph, ", "), args
}
