package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// migrations is the schema's history, oldest first; the schema version of a
// database is the number of steps applied to it. Append new steps at the end
// (received reports, dashboard settings); never edit or reorder an applied
// one. A step is plain SQL with two engine words filled in: {id} (an integer
// primary key the database numbers) and {bytes} (a binary column). Statements
// are split at ";", so a step holds no semicolon inside a literal.
var migrations = []string{
	// 1: aggregate rows, counters, reports and their deliveries, suppressions.
	`
CREATE TABLE policies (
	id {id},
	policy_key {bytes} NOT NULL UNIQUE,
	domain TEXT NOT NULL,
	p TEXT NOT NULL,
	sp TEXT NOT NULL,
	np TEXT NOT NULL,
	adkim TEXT NOT NULL,
	aspf TEXT NOT NULL,
	fo TEXT NOT NULL,
	testing TEXT NOT NULL,
	discovery_method TEXT NOT NULL
);
CREATE INDEX policies_domain ON policies (domain);

CREATE TABLE agg_rows (
	id {id},
	row_key {bytes} NOT NULL,
	policy_id BIGINT NOT NULL REFERENCES policies (id),
	period_begin BIGINT NOT NULL,
	period_end BIGINT NOT NULL,
	source_ip TEXT NOT NULL,
	header_from TEXT NOT NULL,
	envelope_from TEXT NOT NULL,
	envelope_to TEXT NOT NULL,
	disposition TEXT NOT NULL,
	dkim_aligned TEXT NOT NULL,
	spf_aligned TEXT NOT NULL,
	reasons TEXT NOT NULL,
	dkim TEXT NOT NULL,
	spf TEXT NOT NULL,
	count BIGINT NOT NULL,
	report_ref BIGINT
);
CREATE UNIQUE INDEX agg_rows_open ON agg_rows (row_key) WHERE report_ref IS NULL;
CREATE INDEX agg_rows_group ON agg_rows (policy_id, period_begin, period_end, report_ref);
CREATE INDEX agg_rows_period ON agg_rows (period_end);
CREATE INDEX agg_rows_report ON agg_rows (report_ref) WHERE report_ref IS NOT NULL;

CREATE TABLE counters (
	period_begin BIGINT NOT NULL,
	period_end BIGINT NOT NULL,
	domain TEXT NOT NULL,
	result TEXT NOT NULL,
	action TEXT NOT NULL,
	outcome TEXT NOT NULL,
	count BIGINT NOT NULL,
	PRIMARY KEY (period_begin, period_end, domain, result, action, outcome)
);
CREATE INDEX counters_domain ON counters (domain, period_begin);

CREATE TABLE losses (
	period_begin BIGINT NOT NULL,
	period_end BIGINT NOT NULL,
	domain TEXT NOT NULL,
	kind TEXT NOT NULL,
	count BIGINT NOT NULL,
	PRIMARY KEY (period_begin, period_end, domain, kind)
);

CREATE TABLE reports (
	id {id},
	policy_id BIGINT NOT NULL REFERENCES policies (id),
	period_begin BIGINT NOT NULL,
	period_end BIGINT NOT NULL,
	state TEXT NOT NULL,
	holder TEXT NOT NULL DEFAULT '',
	claim_token TEXT NOT NULL DEFAULT '',
	lease_until BIGINT NOT NULL DEFAULT 0,
	claims BIGINT NOT NULL DEFAULT 0,
	report_id TEXT NOT NULL DEFAULT '',
	filename TEXT NOT NULL DEFAULT '',
	data {bytes},
	rows_included BIGINT NOT NULL DEFAULT 0,
	created BIGINT NOT NULL,
	built BIGINT NOT NULL DEFAULT 0,
	done BIGINT NOT NULL DEFAULT 0,
	UNIQUE (policy_id, period_begin, period_end)
);
CREATE INDEX reports_period ON reports (period_end);
CREATE INDEX reports_state ON reports (state);

CREATE TABLE deliveries (
	report_ref BIGINT NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
	address TEXT NOT NULL,
	state TEXT NOT NULL,
	attempts BIGINT NOT NULL DEFAULT 0,
	next_attempt BIGINT NOT NULL DEFAULT 0,
	last_error TEXT NOT NULL DEFAULT '',
	sent BIGINT NOT NULL DEFAULT 0,
	updated BIGINT NOT NULL,
	PRIMARY KEY (report_ref, address)
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt);

CREATE TABLE suppressions (
	address TEXT PRIMARY KEY,
	until BIGINT NOT NULL,
	reason TEXT NOT NULL,
	created BIGINT NOT NULL
);
`,
	// 2: reports received from other receivers (received.go), their
	// sources (senders.go), intake refusals, stored health checks.
	migrationReceived,
	// 3: summaries of the received reports for the dashboard (summary.go),
	// built from the reports already stored by fillSummaries.
	migrationSummaries,
	// 4: the dashboard's indexes of sent reports and inbound counters
	// (migration_sent.go).
	migrationDashboard,
	// 5: summaries of the counters and recorded rows for the inbound page
	// (inbound_summary.go), built from those stored by fillInbound.
	migrationInbound,
}

// migrationFills are Go steps run right after the SQL of the migration of
// the same number, in its transaction: filling a new table from old ones.
var migrationFills = map[int]func(*Store, context.Context, *sql.Tx) error{
	3: (*Store).fillSummaries,
	5: (*Store).fillInbound,
}

// SchemaVersion is the schema version this binary writes and understands.
func SchemaVersion() int { return len(migrations) }

// migrate brings the schema up to date under a lock: SQLite's write lock
// (the transaction is BEGIN IMMEDIATE), PostgreSQL's transaction-scoped
// advisory lock. Whoever gets the lock first migrates; the others then find
// the work done. A database newer than this binary is refused untouched.
func (s *Store) migrate(ctx context.Context) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if s.engine == PostgreSQL {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockKey); err != nil {
				return fmt.Errorf("store: migration lock: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)`); err != nil {
			return fmt.Errorf("store: schema version: %w", err)
		}
		var v int
		err := tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			_, err = tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`)
		}
		if err != nil {
			return fmt.Errorf("store: schema version: %w", err)
		}
		if v > len(migrations) {
			return fmt.Errorf("%w: the database has schema version %d, this binary knows versions up to %d; "+
				"run the newer dmarc-milter on this host too", ErrSchemaTooNew, v, len(migrations))
		}
		for i := v; i < len(migrations); i++ {
			if err := s.execScript(ctx, tx, migrations[i]); err != nil {
				return fmt.Errorf("store: migration %d: %w", i+1, err)
			}
			if fill := migrationFills[i+1]; fill != nil {
				if err := fill(s, ctx, tx); err != nil {
					return fmt.Errorf("store: migration %d: %w", i+1, err)
				}
			}
			s.log.Debug("store migration applied", "version", i+1, "engine", s.engine)
		}
		if v == len(migrations) {
			return nil
		}
		_, err = tx.ExecContext(ctx, `UPDATE schema_version SET version = $1`, len(migrations))
		return err
	})
}

// execScript runs the statements of a migration one by one (neither driver
// promises to run several statements in one Exec).
func (s *Store) execScript(ctx context.Context, tx *sql.Tx, script string) error {
	r := postgresDDL
	if s.engine == SQLite {
		r = sqliteDDL
	}
	for _, stmt := range strings.Split(r.Replace(script), ";") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%w\n%s", err, strings.TrimSpace(stmt))
		}
	}
	return nil
}
