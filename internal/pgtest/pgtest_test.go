package pgtest

import (
	"database/sql"
	"testing"
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
