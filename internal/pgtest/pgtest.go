// Package pgtest runs a private PostgreSQL server for the tests of one test
// binary: Debian's server programs (package postgresql), initdb in a temporary
// directory, listening only on a unix socket in that directory, stopped when
// the tests end. Each test gets a database of its own.
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestX(t *testing.T) { dsn := pgtest.Database(t); ... }
//
// Without PostgreSQL installed, Database skips the test loudly, or fails it
// when CI=true. As root, the server runs as the "postgres" user (it refuses to
// run as root). DMARC_PGTEST_DURABLE=1 keeps fsync on (for benchmarks whose
// write figures should mean something); by default the test server does not
// sync to disk.
package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// ErrUnavailable: PostgreSQL's server programs are not installed here.
var ErrUnavailable = errors.New("pgtest: PostgreSQL server programs not found (Debian package postgresql; scripts/install-deps.sh installs it)")

// port names the socket file only: the server listens on no TCP port and
// its socket directory is private, so it cannot collide with another server.
const port = 5432

// Server is a running private PostgreSQL.
type Server struct {
	dir   string // socket directory; data in dir/data, log in dir/log
	bin   string
	asPG  bool // run the programs as the postgres user (we are root)
	admin *sql.DB
	seq   atomic.Int64
	// watchdog stops the server if the test binary dies without Stop (a
	// panic, a timeout, kill -9).
	watchdog *exec.Cmd
}

var (
	server   *Server
	startErr error
	mainRan  bool
)

// Main starts the server, runs the tests, stops the server and exits. Call
// it from TestMain. A server that cannot start is not an error here: each
// test that asks for a database then skips or fails.
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	mainRan = true
	server, startErr = Start()
	if server != nil {
		defer server.Stop()
	}
	return m.Run()
}

// Database creates an empty database for t, dropped when t ends, and returns
// its key=value connection string.
func Database(t testing.TB) string {
	t.Helper()
	s := Require(t)
	name := fmt.Sprintf("t%d_%d", os.Getpid(), s.seq.Add(1))
	if _, err := s.admin.Exec(`CREATE DATABASE ` + name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		if _, err := s.admin.Exec(`DROP DATABASE ` + name + ` WITH (FORCE)`); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return s.DSN(name)
}

// Require returns the running server, or ends t: a loud skip when PostgreSQL
// is not installed (a failure under CI=true), a failure when it is installed
// but did not start.
func Require(t testing.TB) *Server {
	t.Helper()
	switch {
	case !mainRan:
		t.Fatal("pgtest: the package's TestMain must call pgtest.Main")
	case server != nil:
		return server
	case errors.Is(startErr, ErrUnavailable) && os.Getenv("CI") != "true":
		t.Log(strings.Repeat("*", 72))
		t.Log("SKIPPING A POSTGRESQL TEST: " + startErr.Error())
		t.Skip(startErr)
	default:
		t.Fatal(startErr)
	}
	return nil
}

// DSN is the key=value connection string of database name.
func (s *Server) DSN(name string) string {
	return fmt.Sprintf("host=%s port=%d user=test dbname=%s sslmode=disable", s.dir, port, name)
}

// URL is the postgres:// URL of database name (the socket directory as the
// host query parameter).
func (s *Server) URL(name string) string {
	q := url.Values{"host": {s.dir}, "port": {strconv.Itoa(port)}, "sslmode": {"disable"}}
	return "postgres://test@/" + name + "?" + q.Encode()
}

// Start initializes and starts a server in a new temporary directory.
func Start() (*Server, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, asPG: os.Geteuid() == 0}
	if s.dir, err = os.MkdirTemp("", "pgtest-"); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if err := s.start(); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) start() error {
	if s.asPG {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("pgtest: running as root needs the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(s.dir, uid, gid); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
	}
	data := filepath.Join(s.dir, "data")
	if out, err := s.cmd("initdb", "-D", data, "-A", "trust", "-U", "test", "-E", "UTF8",
		"--locale=C", "--no-sync").CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	opts := fmt.Sprintf("-k %s -p %d -c listen_addresses= -c max_connections=200", s.dir, port)
	if os.Getenv("DMARC_PGTEST_DURABLE") != "1" {
		opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	}
	if out, err := s.cmd("pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(s.dir, "log"),
		"-w", "-t", "60", "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
		return fmt.Errorf("pgtest: pg_ctl start: %w\n%s\n%s", err, out, log)
	}
	db, err := sql.Open("pgx", s.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return fmt.Errorf("pgtest: connect: %w", err)
	}
	s.admin = db
	return s.startWatchdog()
}

// startWatchdog starts a shell that outlives a dying test binary: once our
// process is gone it stops the server and removes its directory. It runs as
// the server's user, and polls /proc (a signal test would fail across users).
func (s *Server) startWatchdog() error {
	script := fmt.Sprintf(`while [ -d /proc/%d ]; do sleep 1; done; %q -D %q -m immediate -w stop >/dev/null 2>&1; rm -rf %q`,
		os.Getpid(), filepath.Join(s.bin, "pg_ctl"), filepath.Join(s.dir, "data"), s.dir)
	c := s.cmd("/bin/sh", "-c", script)
	c.Path, c.Args = "/bin/sh", []string{"/bin/sh", "-c", script}
	if c.SysProcAttr == nil {
		c.SysProcAttr = &syscall.SysProcAttr{}
	}
	c.SysProcAttr.Setpgid = true // not killed with the test's process group
	if err := c.Start(); err != nil {
		return fmt.Errorf("pgtest: watchdog: %w", err)
	}
	s.watchdog = c
	return nil
}

// Stop stops the server and removes its directory.
func (s *Server) Stop() {
	if s.watchdog != nil {
		s.watchdog.Process.Kill()
		s.watchdog.Wait()
	}
	if s.admin != nil {
		s.admin.Close()
	}
	data := filepath.Join(s.dir, "data")
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err == nil {
		if out, err := s.cmd("pg_ctl", "-D", data, "-w", "-m", "fast", "stop").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: pg_ctl stop: %v\n%s\n", err, out)
		}
	}
	os.RemoveAll(s.dir)
}

// Dir is the server's directory (its socket, data and log).
func (s *Server) Dir() string { return s.dir }

// cmd runs one of the server programs, as the postgres user when we are
// root.
func (s *Server) cmd(prog string, args ...string) *exec.Cmd {
	c := exec.Command(filepath.Join(s.bin, prog), args...)
	c.Env = append(os.Environ(), "LC_ALL=C")
	if s.asPG {
		u, _ := user.Lookup("postgres")
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		c.Dir = s.dir
		c.Env = append(c.Env, "HOME="+s.dir)
	}
	return c
}

// findBin finds the directory of initdb and pg_ctl: Debian's
// /usr/lib/postgresql/VERSION/bin (the newest), else pg_config --bindir.
func findBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return versionOf(b) - versionOf(a) })
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", ErrUnavailable
}

func versionOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
