// Package store keeps what DMARC reporting needs between messages and between
// processes: the aggregate-report rows the milter records (one row per
// distinct set of facts, with a count of messages), per-period counters of
// every outcome, and the state of the reports built from the rows and sent to
// the domain owners (who builds which report, its stable identity, and the
// delivery state of each destination, with a suppression list).
//
// One schema runs on two engines: SQLite (modernc.org/sqlite, pure Go, one
// file, the default for a single host) and PostgreSQL (jackc/pgx through
// database/sql, for several MX hosts sharing one store). The SQL is written
// out in the file of the thing it keeps (rows.go, counters.go, reports.go,
// ...) and is the same on both engines; what differs (connection strings,
// the migration lock, a few column types, error codes, file ownership) sits in
// sqlite.go and postgres.go. Migrations are one ordered list in migrations.go;
// the schema version is the list's length.
//
// Times are stored as Unix seconds (UTC); periods are half-open [Begin, End).
// The store does not know the milter's or the report's types: callers map
// their verdicts and reports onto the plain row types defined here.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Sentinel errors. Callers classify with errors.Is.
var (
	// ErrBadURL: the store URL names no engine we know.
	ErrBadURL = errors.New("store: bad store URL")
	// ErrSchemaTooNew: the database was migrated by a newer binary; this
	// one does not know its schema and refuses to touch it.
	ErrSchemaTooNew = errors.New("store: database schema is newer than this binary")
	// ErrCorrupt: the SQLite file is not a database or is damaged.
	ErrCorrupt = errors.New("store: database file is corrupt or not a database")
	// ErrInvalid: a row, counter or argument the caller passed is not
	// storable (a programming error on the caller's side).
	ErrInvalid = errors.New("store: invalid value")
	// ErrNotClaimed: another holder has the report, or it is finished.
	ErrNotClaimed = errors.New("store: report not claimed")
	// ErrLeaseLost: the claim is no longer the report's current claim
	// (its lease ran out and another holder took the report over).
	ErrLeaseLost = errors.New("store: report claim lost")
	// ErrNotFound: no such report or delivery.
	ErrNotFound = errors.New("store: not found")
)

// Engine names the database engine behind a Store.
type Engine string

// The engines.
const (
	SQLite     Engine = "sqlite"
	PostgreSQL Engine = "postgresql"
)

// Options tune Open. The zero value is fine.
type Options struct {
	// Logger receives one debug record per migration step; nil discards.
	Logger *slog.Logger
	// MaxConns bounds the connection pool. Default 4.
	MaxConns int
	// BusyTimeout is how long an SQLite writer waits for another
	// process's write transaction before giving up. Default 10 s.
	BusyTimeout time.Duration
	// Now is the clock for leases and record times. Default time.Now.
	Now func() time.Time
}

// Store is the report store over one database. It is safe for concurrent
// use; several Stores (in one process or several) may share one database.
type Store struct {
	db     *sql.DB
	engine Engine
	log    *slog.Logger
	now    func() time.Time

	// policyIDs caches the id of each policy configuration by its key.
	// Policy rows are never deleted, so a cached id cannot go stale.
	policyMu  sync.Mutex
	policyIDs map[[32]byte]int64
}

// Open connects to the store named by url and brings its schema up to date.
// url is "sqlite:PATH", a "postgres://" or "postgresql://" URL, or a
// PostgreSQL key=value connection string ("host=/run/postgresql dbname=x").
// Pending migrations run under a lock, so that of several processes opening
// one database at once exactly one migrates and the others wait for it.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	eng, err := engineFor(url)
	if err != nil {
		return nil, err
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 4
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	var db *sql.DB
	switch eng {
	case SQLite:
		db, err = openSQLite(ctx, strings.TrimPrefix(url, "sqlite:"), opts)
	default:
		db, err = openPostgres(ctx, url, opts)
	}
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, engine: eng, log: opts.Logger, now: opts.Now, policyIDs: map[[32]byte]int64{}}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// engineFor tells the engine from the store URL.
func engineFor(url string) (Engine, error) {
	switch {
	case strings.HasPrefix(url, "sqlite:"):
		if strings.TrimPrefix(url, "sqlite:") == "" {
			return "", fmt.Errorf("%w: %q has no file path", ErrBadURL, url)
		}
		return SQLite, nil
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return PostgreSQL, nil
	case strings.Contains(url, "=") && !strings.Contains(url, "://"):
		// A libpq key=value connection string.
		return PostgreSQL, nil
	}
	return "", fmt.Errorf("%w: %q (want sqlite:PATH, postgres://... or a key=value PostgreSQL connection string)", ErrBadURL, url)
}

// Engine tells which engine this store runs on.
func (s *Store) Engine() Engine { return s.engine }

// Close closes the database handle.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// inTx runs fn in one transaction (BEGIN IMMEDIATE on SQLite: the write lock
// is taken at the start, so two writers never deadlock upgrading a read lock)
// and commits it, or rolls it back when fn fails. On PostgreSQL, a transaction
// chosen as a deadlock victim or failing serialization is run again (twice at
// most): fn must be safe to repeat.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := s.tryTx(ctx, fn)
		if err == nil || attempt == 3 || !pgRetryable(err) {
			return s.wrap(err)
		}
		s.log.Debug("store transaction retried", "attempt", attempt, "err", err)
	}
}

func (s *Store) tryTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// wrap classifies engine errors (a corrupt SQLite file) into our sentinels.
func (s *Store) wrap(err error) error {
	if err == nil {
		return nil
	}
	if s.engine == SQLite && sqliteCorrupt(err) && !errors.Is(err, ErrCorrupt) {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

// unix is t as Unix seconds, the form every time takes in the database.
func unix(t time.Time) int64 { return t.Unix() }

// fromUnix is the UTC time of Unix seconds u.
func fromUnix(u int64) time.Time { return time.Unix(u, 0).UTC() }
