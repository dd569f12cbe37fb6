package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Suppression keeps reports from going to an address until a time, after a
// permanent delivery failure (so that a dead rua mailbox is not mailed every
// period) or by the operator's hand.
type Suppression struct {
	Address string
	Until   time.Time
	Reason  string
	Created time.Time
}

// Suppress puts an address on the suppression list, or moves its time.
func (s *Store) Suppress(ctx context.Context, sup Suppression) error {
	if sup.Address == "" || sup.Until.IsZero() {
		return fmt.Errorf("store: suppress: %w: %+v", ErrInvalid, sup)
	}
	now := unix(s.now())
	err := s.inTx(ctx, func(tx *sql.Tx) error { return suppress(ctx, tx, sup, now) })
	if err != nil {
		return fmt.Errorf("store: suppress: %w", err)
	}
	return nil
}

func suppress(ctx context.Context, q querier, sup Suppression, now int64) error {
	_, err := q.ExecContext(ctx, `INSERT INTO suppressions (address, until, reason, created) VALUES ($1, $2, $3, $4)
ON CONFLICT (address) DO UPDATE SET until = excluded.until, reason = excluded.reason`,
		sup.Address, unix(sup.Until), sup.Reason, now)
	return err
}

// Unsuppress takes an address off the suppression list.
func (s *Store) Unsuppress(ctx context.Context, address string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM suppressions WHERE address = $1`, address)
	return s.wrap(err)
}

// Suppressed tells whether address is suppressed now, and why.
func (s *Store) Suppressed(ctx context.Context, address string) (Suppression, bool, error) {
	sup := Suppression{Address: address}
	var until, created int64
	err := s.db.QueryRowContext(ctx, `SELECT until, reason, created FROM suppressions WHERE address = $1 AND until > $2`,
		address, unix(s.now())).Scan(&until, &sup.Reason, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Suppression{}, false, nil
	}
	if err != nil {
		return Suppression{}, false, s.wrap(err)
	}
	sup.Until, sup.Created = fromUnix(until), fromUnix(created)
	return sup, true, nil
}

// Suppressions lists the addresses suppressed now, by address.
func (s *Store) Suppressions(ctx context.Context) ([]Suppression, error) {
	rs, err := s.db.QueryContext(ctx, `SELECT address, until, reason, created FROM suppressions
WHERE until > $1 ORDER BY address`, unix(s.now()))
	if err != nil {
		return nil, s.wrap(err)
	}
	defer rs.Close()
	var out []Suppression
	for rs.Next() {
		var sup Suppression
		var until, created int64
		if err := rs.Scan(&sup.Address, &until, &sup.Reason, &created); err != nil {
			return nil, s.wrap(err)
		}
		sup.Until, sup.Created = fromUnix(until), fromUnix(created)
		out = append(out, sup)
	}
	return out, s.wrap(rs.Err())
}
