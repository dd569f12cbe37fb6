package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/pgtest"
)

// BenchmarkSimulatedDay feeds a simulated day of mail to the store as the
// recorder would (RecordRows, one message per row, in batches), then reports
// the store's size on disk and the time to read back the rows of every
// (domain, period) for report building (list the due groups, claim each and
// read its rows). One iteration is one day on a fresh database:
//
//	go test -run '^$' -bench BenchmarkSimulatedDay -benchtime 1x ./internal/store
//
// Knobs (environment): DMARC_BENCH_MESSAGES (default 100000), DMARC_BENCH_IPS
// (5000), DMARC_BENCH_DOMAINS (100), DMARC_BENCH_BATCH (messages per
// RecordRows, 1000), DMARC_BENCH_ENGINES (sqlite,postgresql). Issue 13's full
// size: 10000000 messages, 50000 IPs, 1000 domains. For write figures that
// mean something on PostgreSQL, set DMARC_PGTEST_DURABLE=1 (fsync on).
func BenchmarkSimulatedDay(b *testing.B) {
	sim := simulation{
		messages: envInt(b, "DMARC_BENCH_MESSAGES", 100_000),
		ips:      envInt(b, "DMARC_BENCH_IPS", 5_000),
		domains:  envInt(b, "DMARC_BENCH_DOMAINS", 100),
		batch:    envInt(b, "DMARC_BENCH_BATCH", 1000),
	}
	engines := os.Getenv("DMARC_BENCH_ENGINES")
	if engines == "" {
		engines = "sqlite,postgresql"
	}
	for _, eng := range strings.Split(engines, ",") {
		b.Run(eng, func(b *testing.B) {
			for range b.N {
				var url string
				switch Engine(eng) {
				case SQLite:
					url = "sqlite:" + filepath.Join(b.TempDir(), "day.db")
				case PostgreSQL:
					url = pgtest.Database(b)
				default:
					b.Fatalf("DMARC_BENCH_ENGINES: unknown engine %q", eng)
				}
				sim.run(b, url)
			}
		})
	}
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

type simulation struct {
	messages, ips, domains, batch int
}

// run records the day into a fresh store at url and measures it.
func (sim simulation) run(b *testing.B, url string) {
	ctx := context.Background()
	clk := newClock(day0.Add(12 * time.Hour))
	s := open(b, url, clk)
	rng := rand.New(rand.NewPCG(1, 2))
	// A few senders send most of the mail.
	zipf := rand.NewZipf(rng, 1.2, 1, uint64(sim.ips-1))

	b.ResetTimer()
	start := time.Now()
	var late int64
	batch := make([]Row, 0, sim.batch)
	for i := range sim.messages {
		batch = append(batch, sim.message(rng, zipf))
		if len(batch) == sim.batch || i == sim.messages-1 {
			res, err := s.RecordRows(ctx, batch)
			if err != nil {
				b.Fatal(err)
			}
			late += res.LateMessages
			batch = batch[:0]
		}
	}
	recordTime := time.Since(start)
	b.StopTimer()

	size, detail := storeSize(b, s, url)
	var rows, msgs int64
	st, err := s.Status(ctx, day0)
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range st {
		rows += d.Rows
		msgs += d.Messages
	}
	if msgs != int64(sim.messages) || late != 0 {
		b.Fatalf("stored %d messages (%d late), fed %d", msgs, late, sim.messages)
	}

	// Report building: the day closed, list the groups, claim each, read
	// its rows.
	clk.Set(day0.Add(25 * time.Hour))
	start = time.Now()
	groups, err := s.DueGroups(ctx, Window{Grace: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	listTime := time.Since(start)
	var read int64
	for _, g := range groups {
		c, err := s.ClaimReport(ctx, g, "bench", time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		rs, err := s.ReportRows(ctx, c)
		if err != nil {
			b.Fatal(err)
		}
		read += int64(len(rs))
	}
	buildTime := time.Since(start)
	if read != rows {
		b.Fatalf("read back %d rows, stored %d", read, rows)
	}
	b.ReportMetric(float64(sim.messages)/recordTime.Seconds(), "msgs/s")
	b.ReportMetric(recordTime.Seconds(), "record-s")
	b.ReportMetric(float64(rows), "rows")
	b.ReportMetric(float64(size)/1e6, "MB")
	b.ReportMetric(buildTime.Seconds(), "read-s")
	b.Logf("%s: %d messages from %d IPs over %d domains in batches of %d: %d distinct rows in %d reports; "+
		"recorded in %v (%.0f messages/s); store %.1f MB (%s); due list %v; claim and read of every report %v",
		s.Engine(), sim.messages, sim.ips, sim.domains, sim.batch, rows, len(groups), recordTime.Round(time.Millisecond),
		float64(sim.messages)/recordTime.Seconds(), float64(size)/1e6, detail, listTime.Round(time.Millisecond),
		buildTime.Round(time.Millisecond))
}

// message is one simulated evaluated message, as the recorder would give
// it.
func (sim simulation) message(rng *rand.Rand, zipf *rand.Zipf) Row {
	ip := zipf.Uint64()
	// Each source sends for about three domains.
	dom := (ip*7919 + uint64(rng.IntN(3))) % uint64(sim.domains)
	domain := fmt.Sprintf("d%04d.example", dom)
	var addr netip.Addr
	if ip%10 == 0 {
		addr = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(ip >> 8), 15: byte(ip)})
	} else {
		addr = netip.AddrFrom4([4]byte{10, byte(ip >> 16), byte(ip >> 8), byte(ip)})
	}
	p := Policy{Domain: domain, P: []string{"none", "quarantine", "reject"}[dom%3], ADKIM: "r", ASPF: "r",
		Testing: "n", DiscoveryMethod: "treewalk"}
	r := Row{Begin: day0, End: day0.Add(24 * time.Hour), Policy: p, SourceIP: addr, HeaderFrom: domain,
		EnvelopeFrom: domain, Disposition: "none", DKIMAligned: "pass", SPFAligned: "pass",
		DKIM:  []DKIMResult{{Domain: domain, Selector: "sel1", Result: "pass"}},
		SPF:   &SPFResult{Domain: domain, Scope: "mfrom", Result: "pass"},
		Count: 1}
	switch v := rng.IntN(100); {
	case v < 85:
	case v < 92: // forwarded: SPF fails, DKIM survives
		r.SPFAligned, r.SPF.Domain, r.SPF.Result = "fail", "forwarder.example", "fail"
	case v < 98: // forged
		r.DKIMAligned, r.SPFAligned, r.SPF.Result = "fail", "fail", "fail"
		r.DKIM = nil
		r.Disposition = p.P
	case v < 99: // forged, policy overridden
		r.DKIMAligned, r.SPFAligned, r.SPF.Result = "fail", "fail", "fail"
		r.DKIM = nil
		r.Reasons = []Reason{{Type: "local_policy", Comment: "monitor mode"}}
	default: // a bounce: null sender, SPF of the HELO name
		r.EnvelopeFrom = ""
		r.SPF = &SPFResult{Domain: "mx.sender.example", Scope: "helo", Result: "pass"}
		r.SPFAligned = "fail"
	}
	return r
}

// storeSize is the store's size on disk (SQLite: the file after a checkpoint;
// PostgreSQL: the database) and a word on what it holds.
func storeSize(b *testing.B, s *Store, url string) (int64, string) {
	ctx := context.Background()
	if s.Engine() == SQLite {
		if _, err := s.db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			b.Fatal(err)
		}
		fi, err := os.Stat(strings.TrimPrefix(url, "sqlite:"))
		if err != nil {
			b.Fatal(err)
		}
		return fi.Size(), "one file"
	}
	var db, rows int64
	if err := s.db.QueryRowContext(ctx, `SELECT pg_database_size(current_database()),
	pg_total_relation_size('agg_rows') + pg_total_relation_size('policies')`).Scan(&db, &rows); err != nil {
		b.Fatal(err)
	}
	return db, fmt.Sprintf("rows and indexes %.1f MB, the rest the empty database's catalog", float64(rows)/1e6)
}
