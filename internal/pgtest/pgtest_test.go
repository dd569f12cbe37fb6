package pgtest

import (
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

// TestDatabase: each test gets its own empty database, reachable through
// both connection-string forms.
func TestDatabase(t *testing.T) {
	dsn := Database(t)
	db := open(t, dsn)
	var name string
	var tables int
	if err := db.QueryRow(`SELECT current_database(), (SELECT count(*) FROM pg_tables WHERE schemaname = 'public')`).Scan(&name, &tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Errorf("%d tables in a new database", tables)
	}
	if _, err := db.Exec(`CREATE TABLE x (y int)`); err != nil {
		t.Fatal(err)
	}
	// The URL form reaches the same database.
	var n int
	if err := open(t, Require(t).URL(name)).QueryRow(`SELECT count(*) FROM x`).Scan(&n); err != nil {
		t.Fatalf("through the URL: %v", err)
	}
	if other := Database(t); other == dsn {
		t.Fatalf("two databases with one name: %s", dsn)
	}
}

func open(t *testing.T, conn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestWatchdog: a test binary that dies without stopping its server (here
// os.Exit in the middle of a test) leaves no server behind.
func TestWatchdog(t *testing.T) {
	if os.Getenv("PGTEST_DIE") == "1" {
		fmt.Println("DIR", Require(t).Dir())
		os.Exit(3)
	}
	Require(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestWatchdog$")
	cmd.Env = append(os.Environ(), "PGTEST_DIE=1")
	out, _ := cmd.Output()
	var dir string
	for _, line := range strings.Split(string(out), "\n") {
		if d, ok := strings.CutPrefix(line, "DIR "); ok {
			dir = d
		}
	}
	if dir == "" {
		t.Fatalf("the child printed no server directory:\n%s", out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := os.Stat(dir)
		if os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server directory %s still there 30 s after its test binary died", dir)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
