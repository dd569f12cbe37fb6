package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// migrationReceived is the schema step of the reports we receive: one row
// per report (its identity, the policy it states, what it holds), its
// records, each record's messages spread over UTC days (so that per-day
// views are exact), the sources (one per IP address, with what enrichment
// learned), the refusal counters of the intake, and stored health checks.
const migrationReceived = `
CREATE TABLE received_reports (
	id {id},
	report_key {bytes} NOT NULL UNIQUE,
	org_name TEXT NOT NULL,
	email TEXT NOT NULL,
	report_id TEXT NOT NULL,
	domain TEXT NOT NULL,
	period_begin BIGINT NOT NULL,
	period_end BIGINT NOT NULL,
	p TEXT NOT NULL,
	sp TEXT NOT NULL,
	np TEXT NOT NULL,
	adkim TEXT NOT NULL,
	aspf TEXT NOT NULL,
	fo TEXT NOT NULL,
	testing TEXT NOT NULL,
	discovery_method TEXT NOT NULL,
	errors TEXT NOT NULL,
	records BIGINT NOT NULL,
	messages BIGINT NOT NULL,
	origin TEXT NOT NULL,
	received BIGINT NOT NULL
);
CREATE INDEX received_reports_domain ON received_reports (domain, period_begin);
CREATE INDEX received_reports_end ON received_reports (period_end);

CREATE TABLE received_rows (
	id {id},
	report_ref BIGINT NOT NULL REFERENCES received_reports (id) ON DELETE CASCADE,
	source_ip TEXT NOT NULL,
	count BIGINT NOT NULL,
	disposition TEXT NOT NULL,
	dkim_aligned TEXT NOT NULL,
	spf_aligned TEXT NOT NULL,
	reasons TEXT NOT NULL,
	header_from TEXT NOT NULL,
	envelope_from TEXT NOT NULL,
	envelope_to TEXT NOT NULL,
	dkim TEXT NOT NULL,
	spf TEXT NOT NULL
);
CREATE INDEX received_rows_report ON received_rows (report_ref);
CREATE INDEX received_rows_ip ON received_rows (source_ip);

CREATE TABLE received_days (
	row_ref BIGINT NOT NULL REFERENCES received_rows (id) ON DELETE CASCADE,
	domain TEXT NOT NULL,
	day BIGINT NOT NULL,
	count BIGINT NOT NULL,
	PRIMARY KEY (row_ref, day)
);
CREATE INDEX received_days_domain ON received_days (domain, day);

CREATE TABLE sources (
	ip TEXT PRIMARY KEY,
	ptr TEXT NOT NULL DEFAULT '',
	ptr_org TEXT NOT NULL DEFAULT '',
	ptr_state TEXT NOT NULL DEFAULT 'pending',
	ptr_checked BIGINT NOT NULL DEFAULT 0,
	country TEXT NOT NULL DEFAULT '',
	asn BIGINT NOT NULL DEFAULT 0,
	as_org TEXT NOT NULL DEFAULT '',
	first_seen BIGINT NOT NULL,
	last_seen BIGINT NOT NULL
);
CREATE INDEX sources_pending ON sources (ptr_state, ptr_checked);

CREATE TABLE intake_refusals (
	day BIGINT NOT NULL,
	reason TEXT NOT NULL,
	count BIGINT NOT NULL,
	PRIMARY KEY (day, reason)
);

CREATE TABLE health_checks (
	domain TEXT NOT NULL,
	checked BIGINT NOT NULL,
	verdict TEXT NOT NULL,
	report TEXT NOT NULL,
	PRIMARY KEY (domain, checked)
);
`

// ReceivedReport is an aggregate report another receiver sent us, mapped
// by the caller onto plain values (text fields as written in the report,
// lower-cased enumeration values, domains normalized).
type ReceivedReport struct {
	// OrgName, Email, ReportID, Domain (the policy domain) and the
	// period [Begin, End) identify the report: some reporters reuse
	// report IDs across periods, so the key takes all of them.
	OrgName  string
	Email    string
	ReportID string
	Domain   string
	Begin    time.Time
	End      time.Time
	// Policy is policy_published (its Domain is the report's Domain).
	Policy Policy
	// Errors are the report's error elements.
	Errors []string
	// Origin says where the report came from ("milter", "file:PATH").
	Origin string
	Rows   []ReceivedRow
}

// ReceivedRow is one record of a received report.
type ReceivedRow struct {
	SourceIP     netip.Addr
	Count        int64
	Disposition  string
	DKIMAligned  string
	SPFAligned   string
	Reasons      []Reason
	HeaderFrom   string
	EnvelopeFrom string
	EnvelopeTo   string
	DKIM         []DKIMResult
	SPF          *SPFResult
	// Days spread Count over UTC days (pkg/report SpreadDays); their
	// counts add up to Count. Empty when Count is 0.
	Days []DayCount
}

// DayCount is a number of messages attributed to one UTC day (its 00:00).
type DayCount struct {
	Day   time.Time
	Count int64
}

// StoredReceived says what StoreReceived did.
type StoredReceived struct {
	// Duplicate: a report with the same key was already stored; nothing
	// was written.
	Duplicate bool
	// ID is the stored report's id (0 for a duplicate).
	ID int64
	// Rows and Messages are what was stored.
	Rows     int
	Messages int64
	// Unresolved are the report's source addresses whose reverse DNS
	// name is not known yet (new sources, or sources still pending).
	Unresolved []netip.Addr
}

// key is the report's identity (RFC 9990 §3.1.1.3 gives the report ID; the
// reporter, the domain and the period make it unique in practice).
func (r *ReceivedReport) key() [32]byte {
	var k keyWriter
	k.strings(r.OrgName, r.Email, r.ReportID, r.Domain)
	k.int(unix(r.Begin))
	k.int(unix(r.End))
	return k.sum()
}

func (r *ReceivedReport) validate() error {
	switch {
	case r.Domain == "" || r.ReportID == "":
		return fmt.Errorf("%w: received report without a domain or report ID", ErrInvalid)
	case r.Begin.IsZero() || !r.End.After(r.Begin):
		return fmt.Errorf("%w: received report period [%v, %v)", ErrInvalid, r.Begin, r.End)
	}
	for i := range r.Rows {
		row := &r.Rows[i]
		if !row.SourceIP.IsValid() || row.Count < 0 {
			return fmt.Errorf("%w: received row %d (ip %v, count %d)", ErrInvalid, i, row.SourceIP, row.Count)
		}
		var sum int64
		for _, d := range row.Days {
			sum += d.Count
		}
		if sum != row.Count {
			return fmt.Errorf("%w: received row %d: days add up to %d, not %d", ErrInvalid, i, sum, row.Count)
		}
	}
	return nil
}

// StoreReceived stores a received report with its rows, their per-day
// counts and their sources, in one transaction. A report already stored
// (same key) is a duplicate: nothing is written and Duplicate is set, so
// that importing the same report twice (mailed twice, from two MX hosts, or
// a re-import) counts it once.
func (s *Store) StoreReceived(ctx context.Context, rep *ReceivedReport) (StoredReceived, error) {
	out, err := s.StoreReceivedBatch(ctx, []*ReceivedReport{rep})
	if err != nil {
		return StoredReceived{}, err
	}
	return out[0], nil
}

// StoreReceivedBatch stores several reports in one transaction (an import
// commits far less often that way), each as StoreReceived would. A store
// error fails the whole batch: nothing of it is written. Rows shared with
// other writers (sources, summaries) are written last, in key order, so
// that hosts storing at once do not deadlock.
func (s *Store) StoreReceivedBatch(ctx context.Context, reps []*ReceivedReport) ([]StoredReceived, error) {
	for _, rep := range reps {
		if err := rep.validate(); err != nil {
			return nil, err
		}
	}
	out := make([]StoredReceived, len(reps))
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		d := newSummaryDelta()
		for i, rep := range reps {
			res := StoredReceived{}
			id, err := s.insertReceived(ctx, tx, rep)
			if errors.Is(err, sql.ErrNoRows) {
				res.Duplicate = true
				out[i] = res
				continue
			}
			if err != nil {
				return err
			}
			res.ID = id
			if err := s.insertReceivedRows(ctx, tx, id, rep, &res, d); err != nil {
				return err
			}
			out[i] = res
		}
		states, err := s.upsertSources(ctx, tx, d)
		if err != nil {
			return err
		}
		for i, rep := range reps {
			if !out[i].Duplicate {
				out[i].Unresolved = unresolved(rep, states)
			}
		}
		return s.applySummary(ctx, tx, d)
	})
	if err != nil {
		return nil, fmt.Errorf("store: received reports: %w", err)
	}
	return out, nil
}

// insertReceived inserts the report's row; sql.ErrNoRows means that the key
// was already there.
func (s *Store) insertReceived(ctx context.Context, tx *sql.Tx, rep *ReceivedReport) (int64, error) {
	k := rep.key()
	var messages int64
	for _, r := range rep.Rows {
		messages += r.Count
	}
	p := rep.Policy
	var id int64
	err := tx.QueryRowContext(ctx, `
INSERT INTO received_reports (report_key, org_name, email, report_id, domain, period_begin, period_end,
	p, sp, np, adkim, aspf, fo, testing, discovery_method, errors, records, messages, origin, received)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
ON CONFLICT (report_key) DO NOTHING RETURNING id`,
		k[:], rep.OrgName, rep.Email, rep.ReportID, rep.Domain, unix(rep.Begin), unix(rep.End),
		p.P, p.SP, p.NP, p.ADKIM, p.ASPF, p.FO, p.Testing, p.DiscoveryMethod,
		strings.Join(rep.Errors, "\n"), len(rep.Rows), messages, rep.Origin, unix(s.now())).Scan(&id)
	return id, err
}

// insertReceivedRows inserts the report's rows and their days, and adds
// them to the summaries' delta d.
func (s *Store) insertReceivedRows(ctx context.Context, tx *sql.Tx, id int64, rep *ReceivedReport, res *StoredReceived, d *summaryDelta) error {
	rowStmt, err := tx.PrepareContext(ctx, `
INSERT INTO received_rows (report_ref, source_ip, count, disposition, dkim_aligned, spf_aligned, reasons,
	header_from, envelope_from, envelope_to, dkim, spf)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id`)
	if err != nil {
		return err
	}
	defer rowStmt.Close()
	dayStmt, err := tx.PrepareContext(ctx, `INSERT INTO received_days (row_ref, domain, day, count) VALUES ($1, $2, $3, $4)`)
	if err != nil {
		return err
	}
	defer dayStmt.Close()
	for i := range rep.Rows {
		r := &rep.Rows[i]
		reasons, dkim, spf, err := encodeLists(&Row{Reasons: r.Reasons, DKIM: r.DKIM, SPF: r.SPF})
		if err != nil {
			return err
		}
		var rowID int64
		if err := rowStmt.QueryRowContext(ctx, id, r.SourceIP.String(), r.Count, r.Disposition, r.DKIMAligned, r.SPFAligned,
			reasons, r.HeaderFrom, r.EnvelopeFrom, r.EnvelopeTo, dkim, spf).Scan(&rowID); err != nil {
			return err
		}
		d.seen(rep.Domain, r.SourceIP.String(), unix(rep.Begin), unix(rep.End))
		f := fact{SourceIP: r.SourceIP.String(), Disposition: r.Disposition, DKIMAligned: r.DKIMAligned, SPFAligned: r.SPFAligned,
			Reasons: reasons, HeaderFrom: r.HeaderFrom, EnvelopeFrom: r.EnvelopeFrom, DKIM: dkim, SPF: spf}
		for _, dc := range r.Days {
			if dc.Count == 0 {
				continue
			}
			if _, err := dayStmt.ExecContext(ctx, rowID, rep.Domain, unix(dc.Day), dc.Count); err != nil {
				return err
			}
			d.add(rep.Domain, rep.OrgName, unix(dc.Day), &f, r.Reasons, dc.Count)
		}
		res.Rows++
		res.Messages += r.Count
	}
	return nil
}

// upsertSources adds the source addresses of the stored reports to
// sources, in address order, widening their first and last seen to the
// reports' periods, and returns each address's PTR state.
func (s *Store) upsertSources(ctx context.Context, tx *sql.Tx, d *summaryDelta) (map[string]PTRState, error) {
	stmt, err := tx.PrepareContext(ctx, `
INSERT INTO sources (ip, first_seen, last_seen) VALUES ($1, $2, $3)
ON CONFLICT (ip) DO UPDATE SET
	first_seen = CASE WHEN excluded.first_seen < sources.first_seen THEN excluded.first_seen ELSE sources.first_seen END,
	last_seen = CASE WHEN excluded.last_seen > sources.last_seen THEN excluded.last_seen ELSE sources.last_seen END
RETURNING ptr_state`)
	if err != nil {
		return nil, err
	}
	defer stmt.Close()
	ips := make([]string, 0, len(d.ips))
	for ip := range d.ips {
		ips = append(ips, ip)
	}
	slices.Sort(ips)
	states := make(map[string]PTRState, len(ips))
	for _, ip := range ips {
		sp := d.ips[ip]
		var state string
		if err := stmt.QueryRowContext(ctx, ip, sp.first, sp.last).Scan(&state); err != nil {
			return nil, err
		}
		states[ip] = PTRState(state)
	}
	return states, nil
}

// unresolved lists the report's source addresses whose PTR name is still
// to be looked up, each once.
func unresolved(rep *ReceivedReport, states map[string]PTRState) []netip.Addr {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, r := range rep.Rows {
		if !seen[r.SourceIP] && states[r.SourceIP.String()] == PTRPending {
			out = append(out, r.SourceIP)
		}
		seen[r.SourceIP] = true
	}
	return out
}

// ReceivedCount counts the received reports, rows and messages stored for
// domain ("" = every domain).
func (s *Store) ReceivedCount(ctx context.Context, domain string) (reports, rows, messages int64, err error) {
	err = s.db.QueryRowContext(ctx, `
SELECT count(DISTINCT rr.id), count(r.id), COALESCE(SUM(r.count), 0)
FROM received_reports rr LEFT JOIN received_rows r ON r.report_ref = rr.id
WHERE $1 = '' OR rr.domain = $1`, domain).Scan(&reports, &rows, &messages)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("store: received count: %w", s.wrap(err))
	}
	return reports, rows, messages, nil
}

// AddRefusals adds to the intake's refusal counters of day (UTC, truncated
// to the day): reason → number of refused reports or files.
func (s *Store) AddRefusals(ctx context.Context, day time.Time, counts map[string]int64) error {
	if len(counts) == 0 {
		return nil
	}
	d := unix(day.UTC().Truncate(24 * time.Hour))
	return s.inTx(ctx, func(tx *sql.Tx) error {
		for reason, n := range counts {
			if _, err := tx.ExecContext(ctx, `
INSERT INTO intake_refusals (day, reason, count) VALUES ($1, $2, $3)
ON CONFLICT (day, reason) DO UPDATE SET count = intake_refusals.count + excluded.count`, d, reason, n); err != nil {
				return fmt.Errorf("store: refusals: %w", err)
			}
		}
		return nil
	})
}

// Refusals sums the refusal counters of the UTC days in [since, until) by
// reason.
func (s *Store) Refusals(ctx context.Context, since, until time.Time) (map[string]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT reason, SUM(count) FROM intake_refusals
WHERE day >= $1 AND day < $2 GROUP BY reason`, unix(since), unix(until))
	if err != nil {
		return nil, fmt.Errorf("store: refusals: %w", s.wrap(err))
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var reason string
		var n int64
		if err := rows.Scan(&reason, &n); err != nil {
			return nil, err
		}
		out[reason] = n
	}
	return out, rows.Err()
}

// expiryStep is one batched delete of Expire: the rows older than keep
// (query takes the cutoff and the batch size), counted into n.
type expiryStep struct {
	keep  time.Duration
	n     *int64
	query string
}

// receivedExpiry are Expire's batched deletes of what the intake keeps
// besides the reports themselves (expireReceived).
func receivedExpiry(keep time.Duration) []expiryStep {
	var ignored int64
	return []expiryStep{

		{keep, &ignored, `DELETE FROM intake_refusals WHERE (day, reason) IN (SELECT day, reason FROM intake_refusals WHERE day < $1 LIMIT $2)`},
		{keep, &ignored, `DELETE FROM health_checks WHERE (domain, checked) IN (SELECT domain, checked FROM health_checks WHERE checked < $1 LIMIT $2)`},
		{keep, &ignored, `DELETE FROM sources WHERE ip IN (SELECT ip FROM sources WHERE last_seen < $1 LIMIT $2)`},
		{keep, &ignored, `DELETE FROM received_domain_sources WHERE (domain, source_ip) IN
	(SELECT domain, source_ip FROM received_domain_sources WHERE last_seen < $1 LIMIT $2)`},
	}
}
