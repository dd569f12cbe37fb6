package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/dmarc-milter/dmarc-milter/internal/pgtest"
)

// TestOpenURL: the store URL forms, and the bad ones with a clear error.
func TestOpenURL(t *testing.T) {
	bad := []string{
		"",                     // no engine
		"sqlite:",              // no path
		"mysql://x/y",          // an engine we do not run
		"/var/lib/x.db",        // a bare path: say sqlite:
		"http://host=x/db?a=b", // a URL that is not PostgreSQL's
	}
	for _, u := range bad {
		if _, err := Open(context.Background(), u, Options{}); !errors.Is(err, ErrBadURL) {
			t.Errorf("Open(%q) = %v, want ErrBadURL", u, err)
		}
	}
	// A file name SQLite's URI syntax would misread.
	dir := t.TempDir()
	s := open(t, "sqlite:"+filepath.Join(dir, "a b?c#d%20.db"), nil)
	if s.Engine() != SQLite {
		t.Errorf("engine %s", s.Engine())
	}
	if _, err := os.Stat(filepath.Join(dir, "a b?c#d%20.db")); err != nil {
		t.Errorf("file not where named: %v", err)
	}
	// A directory that does not exist: an error, not a new directory.
	if _, err := Open(context.Background(), "sqlite:"+filepath.Join(dir, "no", "x.db"), Options{}); err == nil {
		t.Error("Open in a missing directory succeeded")
	}
	// PostgreSQL as a key=value string and as a URL.
	dsn := pgtest.Database(t)
	srv := pgtest.Require(t)
	name := dsn[strings.Index(dsn, "dbname=")+len("dbname="):]
	name = name[:strings.Index(name, " ")]
	for _, u := range []string{dsn, srv.URL(name), strings.Replace(srv.URL(name), "postgres://", "postgresql://", 1)} {
		s := open(t, u, nil)
		if s.Engine() != PostgreSQL {
			t.Errorf("%s: engine %s", u, s.Engine())
		}
	}
}

// TestMigrationLock: several processes opening a fresh database at once
// migrate it exactly once and all succeed.
func TestMigrationLock(t *testing.T) {
	forEngines(t, func(t *testing.T, url string) {
		const n = 4
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := Open(context.Background(), url, Options{})
				if err == nil {
					s.Close()
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("open %d: %v", i, err)
			}
		}
		s := open(t, url, nil)
		var v, rows int
		if err := s.db.QueryRow(`SELECT version, (SELECT count(*) FROM schema_version) FROM schema_version`).Scan(&v, &rows); err != nil {
			t.Fatal(err)
		}
		if v != SchemaVersion() || rows != 1 {
			t.Errorf("schema_version: version %d in %d rows, want %d in 1", v, rows, SchemaVersion())
		}
	})
}

// TestSchemaTooNew: a binary refuses a database a newer one migrated, and
// says which versions.
func TestSchemaTooNew(t *testing.T) {
	forEngines(t, func(t *testing.T, url string) {
		s := open(t, url, nil)
		newer := SchemaVersion() + 3
		if _, err := s.db.Exec(`UPDATE schema_version SET version = $1`, newer); err != nil {
			t.Fatal(err)
		}
		_, err := Open(context.Background(), url, Options{})
		if !errors.Is(err, ErrSchemaTooNew) {
			t.Fatalf("Open = %v, want ErrSchemaTooNew", err)
		}
		for _, v := range []int{newer, SchemaVersion()} {
			if !strings.Contains(err.Error(), fmt.Sprint(v)) {
				t.Errorf("error %q does not name version %d", err, v)
			}
		}
		// Untouched: the version is still the newer one.
		var v int
		if err := s.db.QueryRow(`SELECT version FROM schema_version`).Scan(&v); err != nil || v != newer {
			t.Errorf("version after refusal: %d, %v", v, err)
		}
	})
}

// TestCorruptFile: garbage where the SQLite file should be gives ErrCorrupt
// naming the file, and the file is left as it was.
func TestCorruptFile(t *testing.T) {
	cases := []struct {
		name string
		data []byte
	}{
		{"garbage", []byte(strings.Repeat("this is not a database\n", 300))},
		{"truncated header", []byte("SQLite format 3\x00\x10\x00")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "store.db")
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Open(context.Background(), "sqlite:"+path, Options{})
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Open = %v, want ErrCorrupt naming %s", err, path)
			}
			if got, _ := os.ReadFile(path); string(got) != string(tc.data) {
				t.Error("the corrupt file was changed")
			}
		})
	}
}

// TestFileOwnershipAsRoot: root (report send) creating the store in the
// daemon's directory leaves the database and its -wal and -shm files to the
// directory's owner, so that the daemon can open them.
func TestFileOwnershipAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root")
		}
		t.Skip("SKIPPING: needs root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "dmarc-milter.db")
	s := open(t, "sqlite:"+path, nil)
	record(t, s, row("example.com", "192.0.2.1", 1))
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != uid || int(st.Gid) != gid {
			t.Errorf("%s owned by %d:%d, want nobody %d:%d", p, st.Uid, st.Gid, uid, gid)
		}
		if fi.Mode().Perm()&0o007 != 0 {
			t.Errorf("%s mode %v: readable by others", p, fi.Mode())
		}
	}
}
