package intake

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/pgtest"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/report"
)

// TestMain starts PostgreSQL for the tests that run on both engines; not
// in a fuzzing worker process (the fuzz targets use SQLite only, and a
// PostgreSQL start per worker would eat a short fuzzing run).
func TestMain(m *testing.M) {
	if slices.ContainsFunc(os.Args, func(a string) bool { return strings.HasPrefix(a, "-test.fuzzworker") }) {
		os.Exit(m.Run())
	}
	pgtest.Main(m)
}

// testNow is the clock of the tests: a year after the corpus's reports
// (December 2025), so that none is in the future.
var testNow = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// corpusDir holds pkg/report's corpus of incoming reports.
var corpusDir = filepath.Join("..", "..", "pkg", "report", "testdata", "incoming")

// openStore opens a fresh SQLite store, closed when t ends.
func openStore(t testing.TB, url string) *store.Store {
	t.Helper()
	if url == "" {
		url = "sqlite:" + filepath.Join(t.TempDir(), "store.db")
	}
	st, err := store.Open(context.Background(), url, store.Options{Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// forEngines runs fn on a fresh SQLite store and a fresh PostgreSQL one.
func forEngines(t *testing.T, fn func(t *testing.T, st *store.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, openStore(t, ""))
	})
	t.Run("postgresql", func(t *testing.T) {
		t.Parallel()
		fn(t, openStore(t, pgtest.Database(t)))
	})
}

// countingMetrics counts what the intake reports.
type countingMetrics struct {
	stored, rows, duplicates int
	refused                  map[Reason]int
}

func (m *countingMetrics) ReportStored(rows int) { m.stored++; m.rows += rows }
func (m *countingMetrics) ReportDuplicate()      { m.duplicates++ }
func (m *countingMetrics) ReportRefused(r Reason) {
	if m.refused == nil {
		m.refused = map[Reason]int{}
	}
	m.refused[r]++
}

func newIntake(st *store.Store, m Metrics, domains ...string) *Intake {
	return New(st, Config{Domains: domains, Now: func() time.Time { return testNow }, Metrics: m, Limits: report.Limits{}})
}
