package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteDDL fills the engine-specific words of the migrations for SQLite:
// an INTEGER PRIMARY KEY is the rowid, which SQLite numbers itself.
var sqliteDDL = strings.NewReplacer("{id}", "INTEGER PRIMARY KEY", "{bytes}", "BLOB")

// openSQLite opens (creating when missing) the SQLite file at path in WAL
// mode, with foreign keys on, a busy timeout, and every transaction begun
// IMMEDIATE (the write lock taken first, so that two writers queue on the
// busy timeout instead of one failing to upgrade its read lock).
func openSQLite(ctx context.Context, path string, opts Options) (*sql.DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite path %q: %w", path, err)
	}
	if err := createOwned(abs); err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Set("_txlock", "immediate")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", opts.BusyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	// A 32 MiB page cache per connection (SQLite's default is 2 MiB): the
	// row upserts land at random places of the key index, and a day of a
	// large receiver's rows is tens of MB (docs/performance.md).
	q.Add("_pragma", "cache_size(-32768)")
	// The path is escaped: a "?" or "#" in a file name must not start
	// SQLite's URI query.
	dsn := "file:" + (&url.URL{Path: abs}).EscapedPath() + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite %s: %w", abs, err)
	}
	db.SetMaxOpenConns(opts.MaxConns)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		if sqliteCorrupt(err) {
			return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, abs, err)
		}
		return nil, fmt.Errorf("store: sqlite %s: %w", abs, err)
	}
	// Reading the schema makes SQLite check the file header: a file that is
	// not a database fails here, with a clear error, not at the first write.
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master`).Scan(&n); err != nil {
		db.Close()
		if sqliteCorrupt(err) {
			return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, abs, err)
		}
		return nil, fmt.Errorf("store: sqlite %s: %w", abs, err)
	}
	// The first read created the -wal and -shm files; as root, hand them to
	// the directory's owner as well (SQLite does so for the files it
	// creates later).
	for _, side := range []string{abs + "-wal", abs + "-shm"} {
		if err := chownRootFile(side); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// createOwned creates the database file when it does not exist yet. As root,
// it gives the new file to the owner of its directory: a command run as root
// (report send) must not leave a file the daemon's user cannot open.
func createOwned(path string) error {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("store: sqlite directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: sqlite %s: %w", path, err)
	}
	f.Close()
	return chownRootFile(path)
}

// sqliteCorrupt tells whether err is SQLite saying that the file is not a
// database or is damaged.
func sqliteCorrupt(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		return true
	}
	return false
}
