package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Row is one aggregate-report row: the facts of a set of messages that had
// all of them in common, and how many messages that was (RFC 9990 "record").
// Text fields hold the values as they go into the report ("pass", "reject",
// "mfrom", ...); the caller maps its typed verdict onto them and normalizes
// case, since equal rows are recognized by exact equality.
type Row struct {
	// Begin and End are the UTC reporting period [Begin, End), aligned by
	// the caller.
	Begin time.Time
	End   time.Time
	// Policy is the policy configuration the message was evaluated under.
	Policy   Policy
	SourceIP netip.Addr
	// HeaderFrom is the RFC5322.From domain.
	HeaderFrom string
	// EnvelopeFrom is the RFC5321.MailFrom domain; empty for the null
	// sender.
	EnvelopeFrom string
	// EnvelopeTo is the recipient domain; empty unless the operator
	// chose to report it.
	EnvelopeTo string
	// Disposition is the policy actually applied: none, quarantine or
	// reject.
	Disposition string
	// DKIMAligned and SPFAligned are the aligned results: pass or fail.
	DKIMAligned string
	SPFAligned  string
	// Reasons are the policy overrides that applied, in order.
	Reasons []Reason
	// DKIM holds one result per signature tried, in order.
	DKIM []DKIMResult
	// SPF is the SPF result; nil when none was evaluated.
	SPF *SPFResult
	// Count is the number of messages (at least 1 when recording).
	Count int64
	// Late is set on rows read back that arrived after their period's
	// report was built: kept and counted, never sent. RecordRows ignores
	// it.
	Late bool
}

// Reason is one policy override reason: its RFC 9990 type and a comment.
type Reason struct {
	Type    string `json:"type"`
	Comment string `json:"comment,omitempty"`
}

// DKIMResult is the result of one DKIM signature.
type DKIMResult struct {
	Domain      string `json:"domain"`
	Selector    string `json:"selector,omitempty"`
	Result      string `json:"result"`
	HumanResult string `json:"human_result,omitempty"`
}

// SPFResult is the SPF result: the domain checked, its scope (mfrom) and the
// result.
type SPFResult struct {
	Domain string `json:"domain"`
	Scope  string `json:"scope"`
	Result string `json:"result"`
}

// RecordResult says what RecordRows stored.
type RecordResult struct {
	// Rows is the number of distinct rows in the batch.
	Rows int
	// Messages is the sum of the batch's counts.
	Messages int64
	// LateRows and LateMessages are the part of the batch whose period was
	// already reported: stored apart (never added to a sent report) and
	// counted as late.
	LateRows     int
	LateMessages int64
}

// validate checks what the store relies on.
func (r *Row) validate() error {
	switch {
	case r.Begin.IsZero() || !r.End.After(r.Begin):
		return fmt.Errorf("%w: row period [%v, %v)", ErrInvalid, r.Begin, r.End)
	case r.Policy.Domain == "":
		return fmt.Errorf("%w: row without a policy domain", ErrInvalid)
	case !r.SourceIP.IsValid():
		return fmt.Errorf("%w: row without a source IP", ErrInvalid)
	case r.Count < 1:
		return fmt.Errorf("%w: row count %d", ErrInvalid, r.Count)
	}
	return nil
}

// key is the canonical identity of the row's facts (everything but Count).
func (r *Row) key(policyKey [32]byte) [32]byte {
	var k keyWriter
	k.int(unix(r.Begin))
	k.int(unix(r.End))
	k.buf = append(k.buf, policyKey[:]...)
	k.strings(r.SourceIP.String(), r.HeaderFrom, r.EnvelopeFrom, r.EnvelopeTo,
		r.Disposition, r.DKIMAligned, r.SPFAligned)
	k.int(int64(len(r.Reasons)))
	for _, x := range r.Reasons {
		k.strings(x.Type, x.Comment)
	}
	k.int(int64(len(r.DKIM)))
	for _, x := range r.DKIM {
		k.strings(x.Domain, x.Selector, x.Result, x.HumanResult)
	}
	if r.SPF == nil {
		k.int(0)
	} else {
		k.int(1)
		k.strings(r.SPF.Domain, r.SPF.Scope, r.SPF.Result)
	}
	return k.sum()
}

// pendingRow is a batch row with its keys, equal rows of the batch merged.
type pendingRow struct {
	row       Row
	key       [32]byte
	policyKey [32]byte
}

// groupKey names a report group in one batch.
type groupKey struct {
	policy     [32]byte
	begin, end int64
}

// RecordRows adds a batch of rows in one transaction. A row equal to one
// already stored (every fact but the count) adds its count to it, so the
// store grows with distinct rows, not with messages. Rows whose period was
// already reported are kept apart as late rows and counted (also in the
// losses counters, kind late); they are never added to a built report.
// An invalid row fails the whole batch with ErrInvalid.
func (s *Store) RecordRows(ctx context.Context, rows []Row) (RecordResult, error) {
	batch, err := mergeRows(rows)
	if err != nil || len(batch) == 0 {
		return RecordResult{}, err
	}
	res := RecordResult{Rows: len(batch)}
	newPolicies := map[[32]byte]int64{}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		res.LateRows, res.LateMessages = 0, 0
		clear(newPolicies)
		ids, late, err := s.batchGroups(ctx, tx, batch, newPolicies)
		if err != nil {
			return err
		}
		if err := s.upsertRows(ctx, tx, batch, ids); err != nil {
			return err
		}
		d := newInboundDelta()
		for _, p := range batch {
			d.row(unix(p.row.Begin), p.row.Policy.Domain, p.row.DKIMAligned, p.row.SPFAligned, p.row.Policy.P, p.row.Count)
		}
		if err := s.applyInbound(ctx, tx, d); err != nil {
			return err
		}
		lateCount := map[lossKey]int64{}
		for _, p := range batch {
			g := groupKey{policy: p.policyKey, begin: unix(p.row.Begin), end: unix(p.row.End)}
			if late[g] {
				res.LateRows++
				res.LateMessages += p.row.Count
				lateCount[lossKey{begin: g.begin, end: g.end, domain: p.row.Policy.Domain, kind: LossLate}] += p.row.Count
			}
		}
		return addLosses(ctx, tx, lateCount)
	})
	if err != nil {
		return RecordResult{}, fmt.Errorf("store: record rows: %w", err)
	}
	for k, id := range newPolicies {
		s.rememberPolicy(k, id)
	}
	for _, p := range batch {
		res.Messages += p.row.Count
	}
	return res, nil
}

// mergeRows validates the batch, computes the keys and merges equal rows.
// The result is sorted by key, so that concurrent batches take row locks in
// one order (PostgreSQL) and cannot deadlock.
func mergeRows(rows []Row) ([]pendingRow, error) {
	byKey := map[[32]byte]int{}
	var out []pendingRow
	for i := range rows {
		r := rows[i]
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		r.Begin, r.End, r.Late = r.Begin.UTC(), r.End.UTC(), false
		pk := r.Policy.key()
		k := r.key(pk)
		if j, ok := byKey[k]; ok {
			out[j].row.Count += r.Count
			continue
		}
		byKey[k] = len(out)
		out = append(out, pendingRow{row: r, key: k, policyKey: pk})
	}
	slices.SortFunc(out, func(a, b pendingRow) int { return cmpKey(a.key, b.key) })
	return out, nil
}

func cmpKey(a, b [32]byte) int {
	for i := range a {
		if c := cmp.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return 0
}

// batchGroups resolves the batch's policy ids and tells which of its groups
// are already reported, with one query for the whole batch (a batch spans one
// or two periods, and reports exist only for closed ones, so the answer is
// short). Policies inserted here are noted in newPolicies for caching after
// commit.
func (s *Store) batchGroups(ctx context.Context, tx *sql.Tx, batch []pendingRow, newPolicies map[[32]byte]int64) (map[[32]byte]int64, map[groupKey]bool, error) {
	// Policies in key order: two batches inserting the same new policies
	// wait for each other in one order and cannot deadlock.
	policies := map[[32]byte]Policy{}
	minEnd, maxEnd := int64(math.MaxInt64), int64(math.MinInt64)
	for _, p := range batch {
		policies[p.policyKey] = p.row.Policy
		minEnd, maxEnd = min(minEnd, unix(p.row.End)), max(maxEnd, unix(p.row.End))
	}
	ids := map[[32]byte]int64{}
	for _, k := range slices.SortedFunc(maps.Keys(policies), cmpKey) {
		id, err := s.policyID(ctx, tx, policies[k])
		if err != nil {
			return nil, nil, err
		}
		ids[k] = id
		newPolicies[k] = id
	}
	type dbGroup struct{ policy, begin, end int64 }
	reported := map[dbGroup]bool{}
	rs, err := tx.QueryContext(ctx, `SELECT policy_id, period_begin, period_end FROM reports
WHERE period_end >= $1 AND period_end <= $2`, minEnd, maxEnd)
	if err != nil {
		return nil, nil, err
	}
	defer rs.Close()
	for rs.Next() {
		var g dbGroup
		if err := rs.Scan(&g.policy, &g.begin, &g.end); err != nil {
			return nil, nil, err
		}
		reported[g] = true
	}
	if err := rs.Err(); err != nil {
		return nil, nil, err
	}
	late := map[groupKey]bool{}
	for _, p := range batch {
		begin, end := unix(p.row.Begin), unix(p.row.End)
		if reported[dbGroup{ids[p.policyKey], begin, end}] {
			late[groupKey{policy: p.policyKey, begin: begin, end: end}] = true
		}
	}
	return ids, late, nil
}

// groupReported tells whether a report was made of the group: a report
// record exists, or rows were sealed into one (the record may have expired
// before the rows).
func groupReported(ctx context.Context, q querier, policyID, begin, end int64) (bool, error) {
	var n int64
	err := q.QueryRowContext(ctx, `
SELECT (SELECT count(*) FROM reports WHERE policy_id = $1 AND period_begin = $2 AND period_end = $3)
     + (SELECT count(*) FROM (SELECT 1 FROM agg_rows WHERE policy_id = $1 AND period_begin = $2
                              AND period_end = $3 AND report_ref IS NOT NULL LIMIT 1) sealed)`,
		policyID, begin, end).Scan(&n)
	return n > 0, err
}

// upsertChunk is the number of rows one upsert statement carries: 15
// parameters each, well within both engines' limits (SQLite 32766,
// PostgreSQL 65535), and one round trip instead of 200.
const upsertChunk = 200

// upsertRows adds the batch's rows or their counts, a chunk per statement.
// The unique index covers only open rows (report_ref IS NULL): a row already
// sealed into a report is never changed, and a late equal row starts a new
// open row beside it. The batch holds no two equal rows (mergeRows), which
// PostgreSQL requires of one INSERT ... ON CONFLICT DO UPDATE.
func (s *Store) upsertRows(ctx context.Context, tx *sql.Tx, batch []pendingRow, ids map[[32]byte]int64) error {
	for len(batch) > 0 {
		n := min(len(batch), upsertChunk)
		args := make([]any, 0, n*15)
		for _, p := range batch[:n] {
			r := &p.row
			reasons, dkim, spf, err := encodeLists(r)
			if err != nil {
				return err
			}
			args = append(args, p.key[:], ids[p.policyKey], unix(r.Begin), unix(r.End), r.SourceIP.String(),
				r.HeaderFrom, r.EnvelopeFrom, r.EnvelopeTo, r.Disposition, r.DKIMAligned, r.SPFAligned,
				reasons, dkim, spf, r.Count)
		}
		if _, err := tx.ExecContext(ctx, upsertRowsSQL(s.engine, n), args...); err != nil {
			return err
		}
		batch = batch[n:]
	}
	return nil
}

// upsertSQL caches the statement text by engine and number of rows.
var upsertSQL sync.Map

type upsertShape struct {
	engine Engine
	rows   int
}

// upsertRowsSQL is the upsert of n rows. SQLite gets anonymous "?"
// parameters: it resolves each "$N" by a linear search of the names seen so
// far, which for 3000 parameters cost more than the insert.
func upsertRowsSQL(e Engine, n int) string {
	if q, ok := upsertSQL.Load(upsertShape{e, n}); ok {
		return q.(string)
	}
	var b strings.Builder
	b.WriteString(`INSERT INTO agg_rows (row_key, policy_id, period_begin, period_end, source_ip, header_from,
	envelope_from, envelope_to, disposition, dkim_aligned, spf_aligned, reasons, dkim, spf, count) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(")
		for j := range 15 {
			if j > 0 {
				b.WriteString(", ")
			}
			if e == SQLite {
				b.WriteString("?")
			} else {
				fmt.Fprintf(&b, "$%d", i*15+j+1)
			}
		}
		b.WriteString(")")
	}
	b.WriteString(` ON CONFLICT (row_key) WHERE report_ref IS NULL DO UPDATE SET count = agg_rows.count + excluded.count`)
	q, _ := upsertSQL.LoadOrStore(upsertShape{e, n}, b.String())
	return q.(string)
}

// encodeLists encodes the row's lists as JSON text: read back only by this
// package (decodeLists), into the same typed values.
func encodeLists(r *Row) (reasons, dkim, spf string, err error) {
	b, err := json.Marshal(nonNil(r.Reasons))
	if err != nil {
		return "", "", "", err
	}
	c, err := json.Marshal(nonNil(r.DKIM))
	if err != nil {
		return "", "", "", err
	}
	if r.SPF != nil {
		d, err := json.Marshal(r.SPF)
		if err != nil {
			return "", "", "", err
		}
		spf = string(d)
	}
	return string(b), string(c), spf, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func decodeLists(r *Row, reasons, dkim, spf string) error {
	if err := json.Unmarshal([]byte(reasons), &r.Reasons); err != nil {
		return fmt.Errorf("store: row reasons: %w", err)
	}
	if err := json.Unmarshal([]byte(dkim), &r.DKIM); err != nil {
		return fmt.Errorf("store: row dkim: %w", err)
	}
	if len(r.Reasons) == 0 {
		r.Reasons = nil
	}
	if len(r.DKIM) == 0 {
		r.DKIM = nil
	}
	if spf != "" {
		r.SPF = new(SPFResult)
		if err := json.Unmarshal([]byte(spf), r.SPF); err != nil {
			return fmt.Errorf("store: row spf: %w", err)
		}
	}
	return nil
}

// querier is what *sql.DB and *sql.Tx share.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// rowColumns are the columns scanRows reads, joined with the policy.
const rowColumns = `r.period_begin, r.period_end, r.source_ip, r.header_from, r.envelope_from,
	r.envelope_to, r.disposition, r.dkim_aligned, r.spf_aligned, r.reasons, r.dkim, r.spf, r.count,
	r.report_ref, p.domain, p.p, p.sp, p.np, p.adkim, p.aspf, p.fo, p.testing, p.discovery_method`

// scanRows reads rows selected with rowColumns. reported tells whether the
// rows' group has a report, so that open rows in it are marked late.
func scanRows(rs *sql.Rows, reported bool) ([]Row, error) {
	defer rs.Close()
	var out []Row
	for rs.Next() {
		var r Row
		var begin, end int64
		var ip, reasons, dkim, spf string
		var ref sql.NullInt64
		p := &r.Policy
		if err := rs.Scan(&begin, &end, &ip, &r.HeaderFrom, &r.EnvelopeFrom, &r.EnvelopeTo,
			&r.Disposition, &r.DKIMAligned, &r.SPFAligned, &reasons, &dkim, &spf, &r.Count, &ref,
			&p.Domain, &p.P, &p.SP, &p.NP, &p.ADKIM, &p.ASPF, &p.FO, &p.Testing, &p.DiscoveryMethod); err != nil {
			return nil, err
		}
		r.Begin, r.End = fromUnix(begin), fromUnix(end)
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			return nil, fmt.Errorf("store: row source ip %q: %w", ip, err)
		}
		r.SourceIP = addr
		if err := decodeLists(&r, reasons, dkim, spf); err != nil {
			return nil, err
		}
		r.Late = reported && !ref.Valid
		out = append(out, r)
	}
	return out, rs.Err()
}

// GroupRows returns every row of a group, in a stable order: the rows of its
// report if one was made, and any rows that came in open (marked Late when the
// group was reported). It changes nothing: it serves previews (report build)
// and views.
func (s *Store) GroupRows(ctx context.Context, g Group) ([]Row, error) {
	id, ok, err := s.lookupPolicy(ctx, g.Policy)
	if err != nil || !ok {
		return nil, err
	}
	begin, end := unix(g.Begin), unix(g.End)
	reported, err := groupReported(ctx, s.db, id, begin, end)
	if err != nil {
		return nil, s.wrap(err)
	}
	rs, err := s.db.QueryContext(ctx, `SELECT `+rowColumns+`
FROM agg_rows r JOIN policies p ON p.id = r.policy_id
WHERE r.policy_id = $1 AND r.period_begin = $2 AND r.period_end = $3
ORDER BY r.id`, id, begin, end)
	if err != nil {
		return nil, s.wrap(err)
	}
	out, err := scanRows(rs, reported)
	return out, s.wrap(err)
}

// lookupPolicy finds the id of a stored policy configuration without adding
// it.
func (s *Store) lookupPolicy(ctx context.Context, p Policy) (int64, bool, error) {
	k := p.key()
	s.policyMu.Lock()
	id, ok := s.policyIDs[k]
	s.policyMu.Unlock()
	if ok {
		return id, true, nil
	}
	err := s.db.QueryRowContext(ctx, `SELECT id FROM policies WHERE policy_key = $1`, k[:]).Scan(&id)
	if err == sql.ErrNoRows {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, s.wrap(err)
	}
	s.rememberPolicy(k, id)
	return id, true, nil
}

// Groups lists the groups with rows whose period begins in [since, until),
// reported or not, oldest first: what `report build` previews.
func (s *Store) Groups(ctx context.Context, since, until time.Time) ([]Group, error) {
	var out []Group
	err := s.each(ctx, `SELECT p.domain, p.p, p.sp, p.np, p.adkim, p.aspf, p.fo, p.testing, p.discovery_method,
	g.period_begin, g.period_end
FROM (SELECT policy_id, period_begin, period_end FROM agg_rows
	WHERE period_end > $1 AND period_begin >= $1 AND period_begin < $2
	GROUP BY policy_id, period_begin, period_end) g
JOIN policies p ON p.id = g.policy_id
ORDER BY g.period_begin, g.period_end, p.domain, p.p, p.sp, p.np, p.adkim, p.aspf, p.fo, p.testing, p.discovery_method`, []any{unix(since), unix(until)}, func(rs *sql.Rows) error {
		var g Group
		var b, e int64
		p := &g.Policy
		if err := rs.Scan(&p.Domain, &p.P, &p.SP, &p.NP, &p.ADKIM, &p.ASPF, &p.FO, &p.Testing,
			&p.DiscoveryMethod, &b, &e); err != nil {
			return err
		}
		g.Begin, g.End = fromUnix(b), fromUnix(e)
		out = append(out, g)
		return nil
	})
	return out, s.wrap(err)
}
