package store

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Outcome is the kind of outcome a counter counts.
type Outcome string

// The outcomes the milter produces.
const (
	OutcomeEvaluated     Outcome = "evaluated"
	OutcomeBypassTrusted Outcome = "bypass-trusted"
	OutcomeBypassAuth    Outcome = "bypass-auth"
	OutcomeTempfail      Outcome = "tempfail"
	OutcomeHold          Outcome = "hold"
	OutcomeReject        Outcome = "reject"
	OutcomeQuarantine    Outcome = "quarantine"
	OutcomeAccept        Outcome = "accept"
)

// Counter counts messages of one outcome in one period, also for domains
// without a DMARC record, so that an overview can be drawn without the logs.
type Counter struct {
	Begin time.Time
	End   time.Time
	// Domain is the policy domain, or the RFC5322.From domain when there
	// is no policy (empty when not even that is known).
	Domain string
	// Result is the DMARC result (pass, fail, none, temperror, ...).
	Result string
	// Action is the action taken (accept, reject, ...).
	Action  string
	Outcome Outcome
	Count   int64
}

// counterKey is a Counter without its count.
type counterKey struct {
	begin, end                    int64
	domain, result, action, outcm string
}

// AddCounters adds the counts to the stored counters, in one transaction.
func (s *Store) AddCounters(ctx context.Context, cs []Counter) error {
	sum := map[counterKey]int64{}
	for i, c := range cs {
		if c.Begin.IsZero() || !c.End.After(c.Begin) || c.Outcome == "" || c.Count < 0 {
			return fmt.Errorf("store: counter %d: %w: %+v", i, ErrInvalid, c)
		}
		sum[counterKey{unix(c.Begin), unix(c.End), c.Domain, c.Result, c.Action, string(c.Outcome)}] += c.Count
	}
	// Sorted: concurrent writers lock the rows in one order.
	keys := slices.SortedFunc(maps.Keys(sum), func(a, b counterKey) int {
		return cmp.Or(cmp.Compare(a.begin, b.begin), cmp.Compare(a.end, b.end), cmp.Compare(a.domain, b.domain),
			cmp.Compare(a.result, b.result), cmp.Compare(a.action, b.action), cmp.Compare(a.outcm, b.outcm))
	})
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for _, k := range keys {
			if _, err := tx.ExecContext(ctx, `
INSERT INTO counters (period_begin, period_end, domain, result, action, outcome, count)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (period_begin, period_end, domain, result, action, outcome)
DO UPDATE SET count = counters.count + excluded.count`,
				k.begin, k.end, k.domain, k.result, k.action, k.outcm, sum[k]); err != nil {
				return err
			}
		}
		d := newInboundDelta()
		for _, k := range keys {
			d.counter(k.begin, k.domain, k.result, k.action, sum[k])
		}
		return s.applyInbound(ctx, tx, d)
	})
	if err != nil {
		return fmt.Errorf("store: add counters: %w", err)
	}
	return nil
}

// Counters returns the counters of the periods that begin in [since, until),
// ordered by period, domain, result, action and outcome.
func (s *Store) Counters(ctx context.Context, since, until time.Time) ([]Counter, error) {
	rs, err := s.db.QueryContext(ctx, `
SELECT period_begin, period_end, domain, result, action, outcome, count FROM counters
WHERE period_begin >= $1 AND period_begin < $2
ORDER BY period_begin, period_end, domain, result, action, outcome`, unix(since), unix(until))
	if err != nil {
		return nil, s.wrap(err)
	}
	defer rs.Close()
	var out []Counter
	for rs.Next() {
		var c Counter
		var b, e int64
		if err := rs.Scan(&b, &e, &c.Domain, &c.Result, &c.Action, &c.Outcome, &c.Count); err != nil {
			return nil, s.wrap(err)
		}
		c.Begin, c.End = fromUnix(b), fromUnix(e)
		out = append(out, c)
	}
	return out, s.wrap(rs.Err())
}

// LossKind says how recorded messages fell short of a report.
type LossKind string

// The kinds of loss.
const (
	// LossDropped: the recorder's queue was full or the store was down
	// past its bound; the messages are not in any row.
	LossDropped LossKind = "dropped"
	// LossLate: the messages' rows came in after their period was
	// reported; they are kept as late rows but in no report.
	LossLate LossKind = "late"
)

// Loss counts messages lost to reporting in one period.
type Loss struct {
	Begin  time.Time
	End    time.Time
	Domain string
	Kind   LossKind
	Count  int64
}

type lossKey struct {
	begin, end int64
	domain     string
	kind       LossKind
}

// AddLosses adds to the loss counters (the recorder counts its dropped rows
// here once the store answers again; RecordRows counts late rows itself).
func (s *Store) AddLosses(ctx context.Context, ls []Loss) error {
	sum := map[lossKey]int64{}
	for i, l := range ls {
		if l.Begin.IsZero() || !l.End.After(l.Begin) || l.Kind == "" || l.Count < 0 {
			return fmt.Errorf("store: loss %d: %w: %+v", i, ErrInvalid, l)
		}
		sum[lossKey{unix(l.Begin), unix(l.End), l.Domain, l.Kind}] += l.Count
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error { return addLosses(ctx, tx, sum) })
	if err != nil {
		return fmt.Errorf("store: add losses: %w", err)
	}
	return nil
}

func addLosses(ctx context.Context, tx *sql.Tx, sum map[lossKey]int64) error {
	keys := slices.SortedFunc(maps.Keys(sum), func(a, b lossKey) int {
		return cmp.Or(cmp.Compare(a.begin, b.begin), cmp.Compare(a.end, b.end),
			cmp.Compare(a.domain, b.domain), cmp.Compare(a.kind, b.kind))
	})
	for _, k := range keys {
		if _, err := tx.ExecContext(ctx, `
INSERT INTO losses (period_begin, period_end, domain, kind, count) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (period_begin, period_end, domain, kind) DO UPDATE SET count = losses.count + excluded.count`,
			k.begin, k.end, k.domain, string(k.kind), sum[k]); err != nil {
			return err
		}
	}
	return nil
}

// Losses returns the loss counters of the periods that begin in
// [since, until).
func (s *Store) Losses(ctx context.Context, since, until time.Time) ([]Loss, error) {
	rs, err := s.db.QueryContext(ctx, `
SELECT period_begin, period_end, domain, kind, count FROM losses
WHERE period_begin >= $1 AND period_begin < $2
ORDER BY period_begin, period_end, domain, kind`, unix(since), unix(until))
	if err != nil {
		return nil, s.wrap(err)
	}
	defer rs.Close()
	var out []Loss
	for rs.Next() {
		var l Loss
		var b, e int64
		if err := rs.Scan(&b, &e, &l.Domain, &l.Kind, &l.Count); err != nil {
			return nil, s.wrap(err)
		}
		l.Begin, l.End = fromUnix(b), fromUnix(e)
		out = append(out, l)
	}
	return out, s.wrap(rs.Err())
}
