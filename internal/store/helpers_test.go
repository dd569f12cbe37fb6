package store

import (
	"context"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// forEngines runs fn once on a fresh SQLite file and once on a fresh
// PostgreSQL database; url opens the same database again.
func forEngines(t *testing.T, fn func(t *testing.T, url string)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, "sqlite:"+filepath.Join(t.TempDir(), "store.db"))
	})
	t.Run("postgresql", func(t *testing.T) {
		t.Parallel()
		fn(t, pgtest.Database(t))
	})
}

// clock is a settable clock for leases and due times.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *clock) Add(d time.Duration) { c.Set(c.Now().Add(d)) }

// open opens url with clk, closed when t ends.
func open(t testing.TB, url string, clk *clock) *Store {
	t.Helper()
	opts := Options{}
	if clk != nil {
		opts.Now = clk.Now
	}
	s, err := Open(context.Background(), url, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", url, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// day0 is the period the tests record into.
var day0 = time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)

func policy(domain string) Policy {
	return Policy{Domain: domain, P: "reject", SP: "quarantine", ADKIM: "r", ASPF: "r", FO: "0",
		Testing: "n", DiscoveryMethod: "treewalk"}
}

// row is a typical passing row of domain from ip on day0.
func row(domain, ip string, count int64) Row {
	return Row{
		Begin: day0, End: day0.Add(24 * time.Hour), Policy: policy(domain),
		SourceIP: netip.MustParseAddr(ip), HeaderFrom: domain, EnvelopeFrom: domain,
		Disposition: "none", DKIMAligned: "pass", SPFAligned: "pass",
		DKIM:  []DKIMResult{{Domain: domain, Selector: "s1", Result: "pass"}},
		SPF:   &SPFResult{Domain: domain, Scope: "mfrom", Result: "pass"},
		Count: count,
	}
}

func group(domain string) Group {
	return Group{Policy: policy(domain), Begin: day0, End: day0.Add(24 * time.Hour)}
}

func record(t testing.TB, s *Store, rows ...Row) RecordResult {
	t.Helper()
	res, err := s.RecordRows(context.Background(), rows)
	if err != nil {
		t.Fatalf("RecordRows: %v", err)
	}
	return res
}
