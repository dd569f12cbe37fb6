package store

import (
	"context"
	"fmt"
	"time"
)

// Retention says how long data is kept after its period ended. Zero keeps it
// for ever.
type Retention struct {
	// Rows: aggregate rows (a report that is still being built keeps its
	// rows whatever their age).
	Rows time.Duration
	// Counters: the outcome and loss counters.
	Counters time.Duration
	// SentReports: finished reports and their delivery records.
	SentReports time.Duration
	// Received: reports received from other receivers (with their rows),
	// intake refusal counters, stored health checks, and sources not seen
	// since.
	Received time.Duration
}

// Expired counts what Expire deleted.
type Expired struct {
	Rows     int64
	Counters int64
	Losses   int64
	Reports  int64
	// Received counts received reports; their rows go with them.
	Received int64
}

// expireBatch bounds one delete: each batch is its own short transaction, so
// that expiring a large backlog never holds the write lock for long.
var expireBatch int64 = 5000

// Expire deletes the data older than the retention, in bounded batches.
func (s *Store) Expire(ctx context.Context, now time.Time, r Retention) (Expired, error) {
	var ex Expired
	// Rows and counters leave the inbound summaries as they go
	// (inbound_summary.go).
	for _, st := range []struct {
		keep time.Duration
		n    *int64
		fn   func(context.Context, int64) (int64, error)
	}{{r.Rows, &ex.Rows, s.expireRows}, {r.Counters, &ex.Counters, s.expireCounters}} {
		if st.keep <= 0 {
			continue
		}
		n, err := st.fn(ctx, unix(now.Add(-st.keep)))
		*st.n = n
		if err != nil {
			return ex, fmt.Errorf("store: expire: %w", err)
		}
	}
	steps := []expiryStep{
		{r.Counters, &ex.Losses, `DELETE FROM losses WHERE (period_begin, period_end, domain, kind) IN
	(SELECT period_begin, period_end, domain, kind FROM losses WHERE period_end < $1 LIMIT $2)`},
		{r.SentReports, &ex.Reports, `DELETE FROM reports WHERE id IN (SELECT id FROM reports WHERE state = 'done'
	AND period_end < $1 LIMIT $2)`},
	}
	if r.Received > 0 {
		n, err := s.expireReceived(ctx, unix(now.Add(-r.Received)))
		ex.Received = n
		if err != nil {
			return ex, fmt.Errorf("store: expire received reports: %w", err)
		}
	}
	steps = append(steps, receivedExpiry(r.Received)...)
	for _, st := range steps {
		if st.keep <= 0 {
			continue
		}
		n, err := s.deleteBatches(ctx, st.query, unix(now.Add(-st.keep)))
		*st.n = n
		if err != nil {
			return ex, fmt.Errorf("store: expire: %w", err)
		}
	}
	return ex, nil
}

// deleteBatches runs a batched delete until a batch comes back short.
func (s *Store) deleteBatches(ctx context.Context, query string, cutoff int64) (int64, error) {
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		res, err := s.db.ExecContext(ctx, query, cutoff, expireBatch)
		if err != nil {
			return total, s.wrap(err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, err
		}
		total += n
		if n < expireBatch {
			return total, nil
		}
	}
}
