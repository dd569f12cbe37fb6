package store

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Group names one report: a policy domain's policy configuration and a
// period. Every report covers exactly the rows of one group.
type Group struct {
	Policy Policy
	Begin  time.Time
	End    time.Time
}

// ReportState is where a report stands.
type ReportState string

// The report states.
const (
	// ReportBuilding: claimed (its rows are sealed into it), not yet built.
	ReportBuilding ReportState = "building"
	// ReportBuilt: built; some destinations still to be tried.
	ReportBuilt ReportState = "built"
	// ReportDone: every destination sent, failed for good, suppressed or
	// skipped.
	ReportDone ReportState = "done"
)

// DeliveryState is where the report stands for one destination.
type DeliveryState string

// The delivery states.
const (
	DeliveryPending    DeliveryState = "pending"
	DeliverySent       DeliveryState = "sent"
	DeliveryFailedTemp DeliveryState = "failed-temp"
	DeliveryFailedPerm DeliveryState = "failed-perm"
	// DeliverySuppressed: the address was on the suppression list.
	DeliverySuppressed DeliveryState = "suppressed"
	// DeliverySkippedUnverified: an external destination that did not
	// authorize the reports (RFC 9990 external destination verification).
	DeliverySkippedUnverified DeliveryState = "skipped-unverified"
)

// final tells whether no further attempt is made in this state.
func (d DeliveryState) final() bool {
	return d != DeliveryPending && d != DeliveryFailedTemp
}

// Delivery is the state of a report for one destination address.
type Delivery struct {
	Address string
	State   DeliveryState
	// Attempts counts the sends tried.
	Attempts int
	// NextAttempt is when a temporarily failed send is due again.
	NextAttempt time.Time
	// Detail is the last error, or why the destination was suppressed or
	// skipped.
	Detail string
	// Sent is when the relay accepted the report.
	Sent time.Time
}

// Built is a report's stable identity and content, kept so that a resend
// (after a crash or a temporary failure) sends the very same report: same
// Report-ID, same file name, same bytes.
type Built struct {
	ReportID string
	Filename string
	// Data is the report as attached (the .xml.gz file).
	Data []byte
	// Deliveries are the destinations at build time, each pending,
	// suppressed or skipped-unverified (with a Detail saying why).
	Deliveries []Delivery
}

// Claim is one holder's exclusive right, for a lease, to build and send one
// report. Only the operations given the current claim succeed; one whose lease
// ran out and was taken over fails with ErrLeaseLost.
type Claim struct {
	Group  Group
	Holder string
	Until  time.Time
	// State is the report's state when claimed or after the last
	// operation.
	State ReportState
	// Rows is the number of rows sealed into the report.
	Rows int64
	// Built is nil until the report is built (SaveBuilt).
	Built *Built
	// Deliveries are the destinations and their states.
	Deliveries []Delivery

	ref   int64
	token string
}

// Window says which groups are due for a report.
type Window struct {
	// Grace is how long after a period's end its report waits: the
	// recorders' flush interval and the clock skew between hosts.
	Grace time.Duration
	// MaxAge: periods that ended longer ago are never reported (a
	// reporter switched on after a long pause does not send old data).
	// Zero means no limit.
	MaxAge time.Duration
}

// DueGroups lists the groups that need work now, oldest first: groups with
// rows, closed (end + grace <= now) and never reported; and reports not
// finished whose lease is free and that are unbuilt (their builder gave up or
// died) or have a destination due (pending, or a temporary failure whose next
// attempt time came). Claim each with ClaimReport.
func (s *Store) DueGroups(ctx context.Context, w Window) ([]Group, error) {
	now := s.now()
	oldest := int64(0)
	if w.MaxAge > 0 {
		oldest = unix(now.Add(-w.MaxAge))
	}
	rs, err := s.db.QueryContext(ctx, `
SELECT p.domain, p.p, p.sp, p.np, p.adkim, p.aspf, p.fo, p.testing, p.discovery_method, g.period_begin, g.period_end
FROM (
	SELECT o.policy_id, o.period_begin, o.period_end FROM (
		SELECT policy_id, period_begin, period_end FROM agg_rows
		WHERE report_ref IS NULL AND period_end <= $1 AND period_end > $2
		GROUP BY policy_id, period_begin, period_end) o
	WHERE NOT EXISTS (SELECT 1 FROM reports x WHERE x.policy_id = o.policy_id
		AND x.period_begin = o.period_begin AND x.period_end = o.period_end)
	AND NOT EXISTS (SELECT 1 FROM agg_rows z WHERE z.policy_id = o.policy_id
		AND z.period_begin = o.period_begin AND z.period_end = o.period_end AND z.report_ref IS NOT NULL)
	UNION
	SELECT x.policy_id, x.period_begin, x.period_end FROM reports x
	WHERE x.state <> 'done' AND x.lease_until <= $3
	AND (x.state = 'building' OR EXISTS (SELECT 1 FROM deliveries d WHERE d.report_ref = x.id
		AND (d.state = 'pending' OR (d.state = 'failed-temp' AND d.next_attempt <= $3))))
) g JOIN policies p ON p.id = g.policy_id`,
		unix(now.Add(-w.Grace)), oldest, unix(now))
	if err != nil {
		return nil, s.wrap(err)
	}
	defer rs.Close()
	var out []Group
	for rs.Next() {
		var g Group
		var b, e int64
		p := &g.Policy
		if err := rs.Scan(&p.Domain, &p.P, &p.SP, &p.NP, &p.ADKIM, &p.ASPF, &p.FO, &p.Testing,
			&p.DiscoveryMethod, &b, &e); err != nil {
			return nil, s.wrap(err)
		}
		g.Begin, g.End = fromUnix(b), fromUnix(e)
		out = append(out, g)
	}
	if err := rs.Err(); err != nil {
		return nil, s.wrap(err)
	}
	slices.SortFunc(out, func(a, b Group) int {
		return cmp.Or(a.Begin.Compare(b.Begin), a.End.Compare(b.End), cmp.Compare(a.Policy.Domain, b.Policy.Domain))
	})
	return out, nil
}

// ClaimReport gives holder the report of group g for lease, or fails with
// ErrNotClaimed when another holder's lease runs or the report is done. Of
// several claimers at once, on one database, exactly one succeeds. The first
// claim seals the group's rows into the report: rows that arrive later are
// late rows, kept but never added to it. A later claim (the lease ran out)
// returns what the earlier holder saved, so that a resend is identical.
func (s *Store) ClaimReport(ctx context.Context, g Group, holder string, lease time.Duration) (*Claim, error) {
	id, ok, err := s.lookupPolicy(ctx, g.Policy)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("store: claim %s: %w: no such policy configuration", g.Policy.Domain, ErrNotFound)
	}
	now := s.now()
	c := &Claim{Group: g, Holder: holder, Until: now.Add(lease).Truncate(time.Second), token: newToken()}
	begin, end := unix(g.Begin), unix(g.End)
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `
INSERT INTO reports (policy_id, period_begin, period_end, state, created) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (policy_id, period_begin, period_end) DO NOTHING`,
			id, begin, end, string(ReportBuilding), unix(now)); err != nil {
			return err
		}
		// On PostgreSQL a second claimer waits here for the first one's
		// row lock, then sees its lease and updates nothing.
		res, err := tx.ExecContext(ctx, `
UPDATE reports SET holder = $1, claim_token = $2, lease_until = $3, claims = claims + 1
WHERE policy_id = $4 AND period_begin = $5 AND period_end = $6 AND state <> 'done' AND lease_until <= $7`,
			holder, c.token, unix(c.Until), id, begin, end, unix(now))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return ErrNotClaimed
		}
		var claims int64
		if err := tx.QueryRowContext(ctx, `SELECT id, claims FROM reports
WHERE policy_id = $1 AND period_begin = $2 AND period_end = $3`, id, begin, end).Scan(&c.ref, &claims); err != nil {
			return err
		}
		if claims == 1 {
			if err := sealRows(ctx, tx, c.ref, id, begin, end); err != nil {
				return err
			}
		}
		return loadClaim(ctx, tx, c)
	})
	if errors.Is(err, ErrNotClaimed) {
		return nil, fmt.Errorf("store: claim %s [%s, %s): %w", g.Policy.Domain,
			g.Begin.Format(time.RFC3339), g.End.Format(time.RFC3339), ErrNotClaimed)
	}
	if err != nil {
		return nil, fmt.Errorf("store: claim: %w", err)
	}
	return c, nil
}

// sealRows gives the group's open rows to the report. From here on, equal
// rows recorded for the group start new (late) rows: the unique index covers
// open rows only.
func sealRows(ctx context.Context, tx *sql.Tx, ref, policyID, begin, end int64) error {
	res, err := tx.ExecContext(ctx, `UPDATE agg_rows SET report_ref = $1
WHERE policy_id = $2 AND period_begin = $3 AND period_end = $4 AND report_ref IS NULL`, ref, policyID, begin, end)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE reports SET rows_included = $1 WHERE id = $2`, n, ref)
	return err
}

// loadClaim reads the report's state, identity and deliveries into c.
func loadClaim(ctx context.Context, q querier, c *Claim) error {
	var state, reportID, filename string
	var data []byte
	if err := q.QueryRowContext(ctx, `SELECT state, rows_included, report_id, filename, data FROM reports WHERE id = $1`,
		c.ref).Scan(&state, &c.Rows, &reportID, &filename, &data); err != nil {
		return err
	}
	c.State = ReportState(state)
	ds, err := loadDeliveries(ctx, q, c.ref)
	if err != nil {
		return err
	}
	c.Deliveries = ds
	c.Built = nil
	if c.State != ReportBuilding {
		c.Built = &Built{ReportID: reportID, Filename: filename, Data: data, Deliveries: ds}
	}
	return nil
}

func loadDeliveries(ctx context.Context, q querier, ref int64) ([]Delivery, error) {
	rs, err := q.QueryContext(ctx, `SELECT address, state, attempts, next_attempt, last_error, sent
FROM deliveries WHERE report_ref = $1 ORDER BY address`, ref)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []Delivery
	for rs.Next() {
		var d Delivery
		var next, sent int64
		if err := rs.Scan(&d.Address, &d.State, &d.Attempts, &next, &d.Detail, &sent); err != nil {
			return nil, err
		}
		if next != 0 {
			d.NextAttempt = fromUnix(next)
		}
		if sent != 0 {
			d.Sent = fromUnix(sent)
		}
		out = append(out, d)
	}
	return out, rs.Err()
}

// newToken is a random claim token: each claim is told apart from the
// holder's earlier ones.
func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ReportRows returns the rows sealed into the claimed report, in a stable
// order, for building it.
func (s *Store) ReportRows(ctx context.Context, c *Claim) ([]Row, error) {
	rs, err := s.db.QueryContext(ctx, `SELECT `+rowColumns+`
FROM agg_rows r JOIN policies p ON p.id = r.policy_id WHERE r.report_ref = $1 ORDER BY r.id`, c.ref)
	if err != nil {
		return nil, s.wrap(err)
	}
	out, err := scanRows(rs, true)
	return out, s.wrap(err)
}

// SaveBuilt keeps the built report and its destinations. From here on the
// report's identity is fixed: a later claim gets these bytes back.
func (s *Store) SaveBuilt(ctx context.Context, c *Claim, b Built) error {
	if b.ReportID == "" || b.Filename == "" {
		return fmt.Errorf("store: save report: %w: empty report ID or file name", ErrInvalid)
	}
	for _, d := range b.Deliveries {
		switch d.State {
		case DeliveryPending, DeliverySuppressed, DeliverySkippedUnverified:
		default:
			return fmt.Errorf("store: save report: %w: delivery %s in state %q", ErrInvalid, d.Address, d.State)
		}
	}
	now := unix(s.now())
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.fence(ctx, tx, c); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE reports SET state = $1, report_id = $2, filename = $3, data = $4, built = $5
WHERE id = $6 AND state = $7`, string(ReportBuilt), b.ReportID, b.Filename, b.Data, now, c.ref, string(ReportBuilding))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return fmt.Errorf("%w: report already built", ErrInvalid)
		}
		for _, d := range b.Deliveries {
			if _, err := tx.ExecContext(ctx, `INSERT INTO deliveries (report_ref, address, state, last_error, updated)
VALUES ($1, $2, $3, $4, $5)`, c.ref, d.Address, string(d.State), d.Detail, now); err != nil {
				return err
			}
		}
		return s.finish(ctx, tx, c)
	})
	if err != nil {
		return fmt.Errorf("store: save report: %w", err)
	}
	return nil
}

// fence checks, with the report's row locked, that c is its current claim.
func (s *Store) fence(ctx context.Context, tx *sql.Tx, c *Claim) error {
	var token string
	err := tx.QueryRowContext(ctx, `SELECT claim_token FROM reports WHERE id = $1`+s.forUpdate(), c.ref).Scan(&token)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	if token != c.token {
		return ErrLeaseLost
	}
	return nil
}

// finish marks the report done once no destination is left to try, and
// reloads c.
func (s *Store) finish(ctx context.Context, tx *sql.Tx, c *Claim) error {
	if _, err := tx.ExecContext(ctx, `UPDATE reports SET state = $1, done = $2
WHERE id = $3 AND state = $4 AND NOT EXISTS (SELECT 1 FROM deliveries
	WHERE report_ref = $3 AND state IN ('pending', 'failed-temp'))`,
		string(ReportDone), unix(s.now()), c.ref, string(ReportBuilt)); err != nil {
		return err
	}
	return loadClaim(ctx, tx, c)
}

// MarkSent records that the relay accepted the report for address.
func (s *Store) MarkSent(ctx context.Context, c *Claim, address string) error {
	now := unix(s.now())
	return s.updateDelivery(ctx, c, address, nil, `UPDATE deliveries
SET state = 'sent', attempts = attempts + 1, sent = $1, updated = $1, last_error = ''
WHERE report_ref = $2 AND address = $3 AND state IN ('pending', 'failed-temp')`, now, c.ref, address)
}

// Failure describes a failed send.
type Failure struct {
	// Temporary: try again at Next. Otherwise the destination failed for
	// good (a 5xx reply, or temporary failures for too long).
	Temporary bool
	Err       string
	Next      time.Time
	// SuppressUntil, for a permanent failure, puts the address on the
	// suppression list until then (zero: not suppressed).
	SuppressUntil time.Time
}

// MarkFailed records a failed send to address.
func (s *Store) MarkFailed(ctx context.Context, c *Claim, address string, f Failure) error {
	now := unix(s.now())
	state, next := DeliveryFailedPerm, int64(0)
	if f.Temporary {
		state, next = DeliveryFailedTemp, unix(f.Next)
	}
	var also func(*sql.Tx) error
	if !f.Temporary && !f.SuppressUntil.IsZero() {
		sup := Suppression{Address: address, Until: f.SuppressUntil, Reason: f.Err}
		also = func(tx *sql.Tx) error { return suppress(ctx, tx, sup, now) }
	}
	return s.updateDelivery(ctx, c, address, also, `UPDATE deliveries
SET state = $1, attempts = attempts + 1, next_attempt = $2, last_error = $3, updated = $4
WHERE report_ref = $5 AND address = $6 AND state IN ('pending', 'failed-temp')`,
		string(state), next, f.Err, now, c.ref, address)
}

// updateDelivery runs one delivery update (and also, when not nil) under c's
// claim in one transaction, and finishes the report when nothing is left to
// try.
func (s *Store) updateDelivery(ctx context.Context, c *Claim, address string, also func(*sql.Tx) error, query string, args ...any) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.fence(ctx, tx, c); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return fmt.Errorf("%w: no open delivery to %s", ErrNotFound, address)
		}
		if also != nil {
			if err := also(tx); err != nil {
				return err
			}
		}
		return s.finish(ctx, tx, c)
	})
	if err != nil {
		return fmt.Errorf("store: delivery %s: %w", address, err)
	}
	return nil
}

// Renew extends the claim's lease.
func (s *Store) Renew(ctx context.Context, c *Claim, lease time.Duration) error {
	until := s.now().Add(lease).Truncate(time.Second)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.fence(ctx, tx, c); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE reports SET lease_until = $1 WHERE id = $2`, unix(until), c.ref)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: renew claim: %w", err)
	}
	c.Until = until
	return nil
}

// Release gives the report up before the lease ends (its remaining
// destinations are due again at their next attempt time, for any holder).
func (s *Store) Release(ctx context.Context, c *Claim) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.fence(ctx, tx, c); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `UPDATE reports SET holder = '', claim_token = '', lease_until = 0 WHERE id = $1`, c.ref)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: release claim: %w", err)
	}
	return nil
}
