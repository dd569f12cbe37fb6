package web

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/pgtest"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
)

// TestWebBench measures the server time of every page over a year of
// generated data (scripts/webbench.sh; not in CI: it runs only with
// WEBBENCH=1). The size comes from the environment:
//
//	WEBBENCH_DOMAINS    our domains (100)
//	WEBBENCH_DAYS       days (365)
//	WEBBENCH_REPORTERS  reports per domain and day (50)
//	WEBBENCH_SOURCES    records per report (20)
//	WEBBENCH_SENDING    sending domains of the inbound data (1000)
//	WEBBENCH_LOADS      loads per page (30)
//	WEBBENCH_ENGINES    "sqlite,postgresql"
//	WEBBENCH_PLANS      file to write the query plans to
//	WEBBENCH_DIR        where the SQLite file goes (a temp dir)
//	WEBBENCH_REUSE      1: measure the SQLite file in WEBBENCH_DIR (and the
//	                    database of WEBBENCH_PG_URL) again
//	WEBBENCH_PG_URL     an empty PostgreSQL database to use (one the test
//	                    starts by default)
//
// The rows are written with set-based SQL straight into the store's
// tables (the intake would take hours for 36 million records); their
// shape is the intake's and the recorder's.
func TestWebBench(t *testing.T) {
	if os.Getenv("WEBBENCH") != "1" {
		t.Skip("WEBBENCH=1 runs the dashboard benchmark (scripts/webbench.sh)")
	}
	sz := benchSize{
		domains: envInt("WEBBENCH_DOMAINS", 100), days: envInt("WEBBENCH_DAYS", 365),
		reporters: envInt("WEBBENCH_REPORTERS", 50), sources: envInt("WEBBENCH_SOURCES", 20),
		sending: envInt("WEBBENCH_SENDING", 1000),
	}
	engines := strings.Split(envStr("WEBBENCH_ENGINES", "sqlite,postgresql"), ",")
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			var url, dsn, driver string
			reuse := false
			switch eng {
			case "sqlite":
				p := filepath.Join(envStr("WEBBENCH_DIR", t.TempDir()), "bench.db")
				if os.Getenv("WEBBENCH_REUSE") == "1" {
					reuse = true // measure the file of an earlier run again
				} else {
					os.Remove(p)
				}
				url, dsn, driver = "sqlite:"+p, "file:"+p+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(60000)", "sqlite"
			case "postgresql":
				if url = os.Getenv("WEBBENCH_PG_URL"); url == "" {
					url = pgtest.Database(t)
				} else {
					reuse = os.Getenv("WEBBENCH_REUSE") == "1"
				}
				dsn, driver = url, "pgx"
			default:
				t.Fatalf("engine %q", eng)
			}
			st, err := store.Open(context.Background(), url, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			db, err := sql.Open(driver, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if !reuse {
				start := time.Now()
				generate(t, db, sz)
				t.Logf("%s: generated %s in %s", eng, sz, time.Since(start).Round(time.Second))
				mustExec(t, db, "ANALYZE")
				checkGenerated(t, db)
			}
			measure(t, st, sz, eng)
			if p := os.Getenv("WEBBENCH_PLANS"); p != "" {
				plans(t, db, eng, p)
			}
		})
	}
}

type benchSize struct{ domains, days, reporters, sources, sending int }

func (s benchSize) String() string {
	return fmt.Sprintf("%d domains × %d days × %d reporters × %d sources = %d received records; %d sending domains",
		s.domains, s.days, s.reporters, s.sources, s.domains*s.days*s.reporters*s.sources, s.sending)
}

func envInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v > 0 {
		return v
	}
	return def
}

func envStr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func mustExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%v\n%s", err, q)
	}
}

// benchEnd is the end of the generated year (exclusive) and the clock of
// the measured pages.
var benchEnd = time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)

// series is a recursive CTE of the integers 0..n-1 (both engines).
func series(n int) string {
	return fmt.Sprintf("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < %d)", n-1)
}

// generate writes the year, one day at a time (bounded transactions).
func generate(t *testing.T, db *sql.DB, sz benchSize) {
	first := benchEnd.AddDate(0, 0, -sz.days).Unix()
	perDay := sz.domains * sz.reporters
	mustExec(t, db, fmt.Sprintf(`INSERT INTO sources (ip, ptr, ptr_org, ptr_state, ptr_checked, first_seen, last_seen)
%s SELECT '10.' || (i / %d / 256) || '.' || (i / %d %% 256) || '.' || (i %% %d), 'mx' || (i %% %d) || '.sender' || (i %% 7) || '.example',
	'sender' || (i %% 7) || '.example', 'found', 1, %d, %d FROM n`,
		series(sz.domains*sz.sources*2), sz.sources*2, sz.sources*2, sz.sources*2, sz.sources*2, first, benchEnd.Unix()))
	for d := range sz.days {
		day := first + int64(d)*86400
		base := d * perDay
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		exec := func(q string) {
			if _, err := tx.Exec(q); err != nil {
				t.Fatalf("%v\n%s", err, q)
			}
		}
		// Report id = base + i; domain i / reporters, reporter i % reporters.
		exec(fmt.Sprintf(`INSERT INTO received_reports (id, report_key, org_name, email, report_id, domain, period_begin, period_end,
	p, sp, np, adkim, aspf, fo, testing, discovery_method, errors, records, messages, origin, received)
%s SELECT %d + i, %s, 'reporter' || (i %% %d) || '.example', 'r@x.example', 'id' || (%d + i), 'd' || (i / %d) || '.example',
	%d, %d, 'reject', 'none', '', 'r', 'r', '', 'n', '', '', %d, %d, 'bench', %d FROM n`,
			series(perDay), base, keyExpr(db, fmt.Sprintf("%d + i", base)), sz.reporters, base, sz.reporters,
			day, day+86400, sz.sources, sz.sources*10, day+86400))
		// Row id = report id * sources + s; a tenth of the sources fail.
		exec(fmt.Sprintf(`INSERT INTO received_rows (id, report_ref, source_ip, count, disposition, dkim_aligned, spf_aligned, reasons,
	header_from, envelope_from, envelope_to, dkim, spf)
%s SELECT r * %d + s, r, '10.' || (dom / 256) || '.' || (dom %% 256) || '.' || (s + (r %% 2) * %d), 10, 'none',
	CASE WHEN s %% 10 = 0 THEN 'fail' ELSE 'pass' END, CASE WHEN s %% 3 = 0 THEN 'fail' ELSE 'pass' END,
	CASE WHEN s %% 20 = 19 THEN '[{"type":"forwarded","comment":"arc"}]' ELSE '[]' END,
	'd' || dom || '.example', 'd' || dom || '.example', '',
	'[{"domain":"d' || dom || '.example","selector":"s' || (s %% 3) || '","result":"' || CASE WHEN s %% 10 = 0 THEN 'fail' ELSE 'pass' END || '"}]',
	'{"domain":"bounce' || (s %% 5) || '.example","scope":"mfrom","result":"pass"}'
FROM (SELECT %d + i / %d AS r, (i / %d) / %d AS dom, i %% %d AS s FROM (%s SELECT i FROM n) x) y`,
			series(perDay*sz.sources), sz.sources, sz.sources,
			base, sz.sources, sz.sources, sz.reporters, sz.sources, series(perDay*sz.sources)))
		exec(fmt.Sprintf(`INSERT INTO received_days (row_ref, domain, day, count)
SELECT r.id, rr.domain, %d, r.count FROM received_rows r JOIN received_reports rr ON rr.id = r.report_ref WHERE rr.id >= %d AND rr.id < %d`,
			day, base, base+perDay))
		generateSummaries(exec, db, base, base+perDay)
		generateInbound(exec, db, sz, d, day)
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if d%30 == 29 {
			t.Logf("day %d of %d", d+1, sz.days)
		}
	}
}

// generateSummaries fills the received reports' summaries for the reports
// with ids in [from, to) as the store's intake would (store/summary.go);
// fact and override keys are the facts' text (any unique key will do).
func generateSummaries(exec func(string), db *sql.DB, from, to int) {
	rng := fmt.Sprintf("r.report_ref >= %d AND r.report_ref < %d", from, to)
	exec(fmt.Sprintf(`INSERT INTO received_domain_days (domain, day, messages, pass)
SELECT d.domain, d.day, SUM(d.count), SUM(CASE WHEN r.dkim_aligned = 'pass' OR r.spf_aligned = 'pass' THEN d.count ELSE 0 END)
FROM received_days d JOIN received_rows r ON r.id = d.row_ref WHERE %s GROUP BY d.domain, d.day`, rng))
	exec(fmt.Sprintf(`INSERT INTO received_facts (domain, day, fact_key, source_ip, disposition, dkim_aligned, spf_aligned, reasons,
	header_from, envelope_from, dkim, spf, messages)
SELECT d.domain, d.day, %s, r.source_ip, r.disposition, r.dkim_aligned, r.spf_aligned, r.reasons,
	r.header_from, r.envelope_from, r.dkim, r.spf, SUM(d.count)
FROM received_days d JOIN received_rows r ON r.id = d.row_ref WHERE %s
GROUP BY d.domain, d.day, r.source_ip, r.disposition, r.dkim_aligned, r.spf_aligned, r.reasons, r.header_from, r.envelope_from, r.dkim, r.spf`,
		keyExpr(db, "r.source_ip || r.disposition || r.dkim_aligned || r.spf_aligned || r.reasons || r.header_from || r.envelope_from || r.dkim || r.spf"), rng))
	exec(fmt.Sprintf(`INSERT INTO received_overrides (domain, day, override_key, reporter, type, comment, messages)
SELECT d.domain, d.day, %s, rr.org_name, 'forwarded', 'arc', SUM(d.count)
FROM received_days d JOIN received_rows r ON r.id = d.row_ref JOIN received_reports rr ON rr.id = r.report_ref
WHERE %s AND r.reasons <> '[]' GROUP BY d.domain, d.day, rr.org_name`, keyExpr(db, "rr.org_name"), rng))
	exec(fmt.Sprintf(`INSERT INTO received_domain_sources (domain, source_ip, first_seen, last_seen)
SELECT rr.domain, r.source_ip, MIN(rr.period_begin), MAX(rr.period_end)
FROM received_rows r JOIN received_reports rr ON rr.id = r.report_ref WHERE %s GROUP BY rr.domain, r.source_ip
ON CONFLICT (domain, source_ip) DO UPDATE SET last_seen = excluded.last_seen`, rng))
}

// checkGenerated compares the summaries with the rows they sum: the
// dashboard reads only the former.
func checkGenerated(t *testing.T, db *sql.DB) {
	var rows, days, facts int64
	for q, v := range map[string]*int64{`SELECT COALESCE(SUM(count), 0) FROM received_days`: &rows,
		`SELECT COALESCE(SUM(messages), 0) FROM received_domain_days`: &days, `SELECT COALESCE(SUM(messages), 0) FROM received_facts`: &facts} {
		if err := db.QueryRow(q).Scan(v); err != nil {
			t.Fatal(err)
		}
	}
	if rows == 0 || days != rows || facts != rows {
		t.Fatalf("generated summaries: %d messages per domain and day, %d in facts, %d in rows", days, facts, rows)
	}
	var counters, inDays, inMonths int64
	for q, v := range map[string]*int64{`SELECT COALESCE(SUM(count), 0) FROM counters`: &counters,
		`SELECT COALESCE(SUM(count), 0) FROM inbound_days`: &inDays, `SELECT COALESCE(SUM(messages), 0) FROM inbound_domain_months`: &inMonths} {
		if err := db.QueryRow(q).Scan(v); err != nil {
			t.Fatal(err)
		}
	}
	if counters == 0 || inDays != counters || inMonths != counters {
		t.Fatalf("generated inbound summaries: %d messages by day, %d by month, %d in counters", inDays, inMonths, counters)
	}
}

// keyExpr is a unique report key from an integer expression.
func keyExpr(db *sql.DB, e string) string {
	if strings.Contains(fmt.Sprintf("%T", db.Driver()), "sqlite") {
		return "CAST(CAST(" + e + " AS TEXT) AS BLOB)"
	}
	return "convert_to((" + e + ")::text, 'UTF8')"
}

// generateInbound writes a day of the milter's data: per sending domain
// three counters (pass/accept, fail/reject, none/accept), two recorded rows
// (one failing under its p=), and one sent report with its delivery.
func generateInbound(exec func(string), db *sql.DB, sz benchSize, d int, day int64) {
	if d == 0 {
		exec(fmt.Sprintf(`INSERT INTO policies (id, policy_key, domain, p, sp, np, adkim, aspf, fo, testing, discovery_method)
%s SELECT i + 1, %s, 's' || i || '.example', CASE WHEN i %% 3 = 0 THEN 'none' ELSE 'reject' END, '', '', 'r', 'r', '', 'n', 'treewalk' FROM n`,
			series(sz.sending), keyExpr(db, "i")))
	}
	exec(fmt.Sprintf(`INSERT INTO counters (period_begin, period_end, domain, result, action, outcome, count)
%s SELECT %d, %d, 's' || (i / 3) || '.example', CASE i %% 3 WHEN 0 THEN 'pass' WHEN 1 THEN 'fail' ELSE 'none' END,
	CASE i %% 3 WHEN 1 THEN 'reject' ELSE 'accept' END, CASE i %% 3 WHEN 1 THEN 'reject' ELSE 'evaluated' END, 1 + i %% 50 FROM n`,
		series(sz.sending*3), day, day+86400))
	rowBase := d * sz.sending * 2
	exec(fmt.Sprintf(`INSERT INTO agg_rows (id, row_key, policy_id, period_begin, period_end, source_ip, header_from, envelope_from, envelope_to,
	disposition, dkim_aligned, spf_aligned, reasons, dkim, spf, count, report_ref)
%s SELECT %d + i + 1, %s, i / 2 + 1, %d, %d, '192.0.2.' || (i %% 250), 's' || (i / 2) || '.example', '', '', 'none',
	CASE WHEN i %% 2 = 0 THEN 'pass' ELSE 'fail' END, 'fail',
	CASE WHEN i %% 20 = 1 THEN '[{"type":"mailing_list","comment":"List-Id"}]' ELSE '[]' END, '[]', '', 1 + i %% 30, NULL FROM n`,
		series(sz.sending*2), rowBase, keyExpr(db, fmt.Sprintf("%d + i", rowBase)), day, day+86400))
	repBase := d * sz.sending
	exec(fmt.Sprintf(`INSERT INTO reports (id, policy_id, period_begin, period_end, state, report_id, filename, rows_included, created, built, done)
%s SELECT %d + i + 1, i + 1, %d, %d, 'done', 'rep' || (%d + i), 'f.xml.gz', 2, %d, %d, %d FROM n`,
		series(sz.sending), repBase, day, day+86400, repBase, day+86400, day+86400, day+86400))
	exec(fmt.Sprintf(`INSERT INTO deliveries (report_ref, address, state, attempts, updated, sent)
%s SELECT %d + i + 1, 'rua@s' || i || '.example', CASE WHEN i %% 50 = 0 THEN 'failed-perm' ELSE 'sent' END, 1, %d, %d FROM n`,
		series(sz.sending), repBase, day+86400, day+86400))
	generateInboundSummaries(exec, day)
}

// generateInboundSummaries adds a day of counters and rows to the inbound
// summaries as the store would (store/inbound_summary.go): the day's
// totals, and the month's per sending domain and spoofed policy domain.
func generateInboundSummaries(exec func(string), day int64) {
	t := time.Unix(day, 0).UTC()
	month := time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC).Unix()
	exec(fmt.Sprintf(`INSERT INTO inbound_days (day, result, action, count)
SELECT %d, result, action, SUM(count) FROM counters WHERE period_begin = %d GROUP BY result, action`, day, day))
	exec(fmt.Sprintf(`INSERT INTO inbound_domain_days (day, domain, messages, fail)
SELECT %d, domain, SUM(count), SUM(CASE WHEN result = 'fail' THEN count ELSE 0 END) FROM counters
WHERE period_begin = %d AND domain <> '' GROUP BY domain`, day, day))
	exec(fmt.Sprintf(`INSERT INTO inbound_spoofed_days (day, domain, messages)
SELECT %d, p.domain, SUM(r.count) FROM agg_rows r JOIN policies p ON p.id = r.policy_id
WHERE r.period_begin = %d AND r.dkim_aligned <> 'pass' AND r.spf_aligned <> 'pass' AND p.p IN ('reject', 'quarantine')
GROUP BY p.domain`, day, day))
	exec(fmt.Sprintf(`INSERT INTO inbound_domain_months (month, domain, messages, fail)
SELECT %d, domain, SUM(count), SUM(CASE WHEN result = 'fail' THEN count ELSE 0 END) FROM counters
WHERE period_begin = %d AND domain <> '' GROUP BY domain
ON CONFLICT (month, domain) DO UPDATE SET messages = inbound_domain_months.messages + excluded.messages,
	fail = inbound_domain_months.fail + excluded.fail`, month, day))
	exec(fmt.Sprintf(`INSERT INTO inbound_spoofed_months (month, domain, messages)
SELECT %d, p.domain, SUM(r.count) FROM agg_rows r JOIN policies p ON p.id = r.policy_id
WHERE r.period_begin = %d AND r.dkim_aligned <> 'pass' AND r.spf_aligned <> 'pass' AND p.p IN ('reject', 'quarantine')
GROUP BY p.domain
ON CONFLICT (month, domain) DO UPDATE SET messages = inbound_spoofed_months.messages + excluded.messages`, month, day))
}

// measure loads every page WEBBENCH_LOADS times (after one warm-up load)
// in process and reports the handler's time, p50 and p99.
func measure(t *testing.T, st *store.Store, sz benchSize, eng string) {
	srv, err := New(st, Options{Now: func() time.Time { return benchEnd.Add(-time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	loads := envInt("WEBBENCH_LOADS", 30)
	for _, path := range []string{"/", "/senders?domain=d0.example", "/failures?domain=d0.example", "/inbound", "/reports",
		"/?from=2025-12-07&to=2026-12-06", "/senders?domain=d0.example&from=2025-12-07&to=2026-12-06",
		"/failures?domain=d0.example&from=2025-12-07&to=2026-12-06", "/senders?domain=d0.example&format=json",
		"/inbound?from=2025-12-07&to=2026-12-06", "/reports?from=2025-12-07&to=2026-12-06", "/reports?sort=failed&dir=desc"} {
		var times []time.Duration
		var first time.Duration
		var last *httptest.ResponseRecorder
		for i := range loads + 1 {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, path, nil)
			start := time.Now()
			h.ServeHTTP(rec, req)
			el := time.Since(start)
			if rec.Code != 200 {
				t.Fatalf("%s: %d %s", path, rec.Code, rec.Body.String())
			}
			last = rec
			if i > 0 {
				times = append(times, el)
			} else {
				first = el
			}
		}
		if strings.Contains(path, "format=json") {
			checkSenders(t, last.Body.Bytes(), sz)
		}
		slices.Sort(times)
		p50, p99 := times[len(times)/2], times[min(len(times)-1, len(times)*99/100)]
		t.Logf("RESULT %s %-42s first %8.1f ms  p50 %8.1f ms  p99 %8.1f ms", eng, path, ms(first), ms(p50), ms(p99))
	}
}

// checkSenders: the senders of d0.example over the default range (the last
// 30 days) hold every generated message of those days.
func checkSenders(t *testing.T, body []byte, sz benchSize) {
	var rep struct{ Messages int64 }
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatal(err)
	}
	if want := int64(min(30, sz.days) * sz.reporters * sz.sources * 10); rep.Messages != want {
		t.Fatalf("senders of d0.example: %d messages, want %d", rep.Messages, want)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// plans writes the query plans of the dashboard's main queries.
func plans(t *testing.T, db *sql.DB, eng, path string) {
	since, until := benchEnd.AddDate(0, 0, -30).Unix(), benchEnd.Unix()
	yearSince := benchEnd.AddDate(-1, 0, 0).Unix()
	// The whole months of the year range (store.wholeMonths): January to
	// November 2026.
	yearM1, yearM2 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).Unix()
	// InboundTopDomains and InboundSpoofed: whole months from the summary,
	// the days around them from the counters or rows.
	topSQL := `SELECT domain, SUM(n) AS total, SUM(f) FROM (
	SELECT domain, messages AS n, fail AS f FROM inbound_domain_months WHERE month >= %d AND month < %d
	UNION ALL SELECT domain, messages, fail FROM inbound_domain_days WHERE day >= %d AND day < %d
	UNION ALL SELECT domain, messages, fail FROM inbound_domain_days WHERE day >= %d AND day < %d
) x GROUP BY domain ORDER BY total DESC, domain LIMIT 25`
	spoofedSQL := `SELECT domain, SUM(n) AS total FROM (
	SELECT domain, messages AS n FROM inbound_spoofed_months WHERE month >= %d AND month < %d
	UNION ALL SELECT domain, messages FROM inbound_spoofed_days WHERE day >= %d AND day < %d
	UNION ALL SELECT domain, messages FROM inbound_spoofed_days WHERE day >= %d AND day < %d
) x GROUP BY domain ORDER BY total DESC, domain LIMIT 25`
	qs := map[string]string{
		"ReceivedDays (domains)": fmt.Sprintf(`SELECT domain, day, messages, pass FROM received_domain_days
WHERE day >= %d AND day < %d ORDER BY domain, day`, since, until),
		"LatestPolicies (domains, per domain)": `SELECT p, sp, period_begin FROM received_reports WHERE domain = 'd0.example' ORDER BY period_begin DESC, id DESC LIMIT 1`,
		"ReceivedIn (senders, failures)": fmt.Sprintf(`SELECT fact_key, source_ip, disposition, dkim_aligned, spf_aligned, reasons, header_from, envelope_from, dkim, spf, messages
FROM received_facts WHERE domain = 'd0.example' AND day >= %d AND day < %d`, since, until),
		"ReceivedOverrides (failures)": fmt.Sprintf(`SELECT reporter, type, comment, SUM(messages) AS n FROM received_overrides
WHERE domain = 'd0.example' AND day >= %d AND day < %d GROUP BY reporter, type, comment ORDER BY n DESC, reporter, type, comment`, since, until),
		"SourcesOf (senders, failures)":     `SELECT s.ip, s.ptr, x.first_seen, x.last_seen FROM received_domain_sources x JOIN sources s ON s.ip = x.source_ip WHERE x.domain = 'd0.example'`,
		"InboundDays (summary, whole days)": fmt.Sprintf(`SELECT day, result, action, count FROM inbound_days WHERE day >= %d AND day < %d`, yearSince, until),
		"InboundTopDomains":                 fmt.Sprintf(topSQL, until, until, since, until, until, until),
		"InboundTopDomains (a year)":        fmt.Sprintf(topSQL, yearM1, yearM2, yearSince, yearM1, yearM2, until),
		"InboundSpoofed":                    fmt.Sprintf(spoofedSQL, until, until, since, until, until, until),
		"InboundSpoofed (a year)":           fmt.Sprintf(spoofedSQL, yearM1, yearM2, yearSince, yearM1, yearM2, until),
		"InboundOverrides":                  fmt.Sprintf(`SELECT reasons, SUM(count) FROM agg_rows WHERE period_end > %d AND period_begin >= %d AND period_begin < %d AND reasons <> '[]' GROUP BY reasons`, since, since, until),
		"SentReports count (reports)":       fmt.Sprintf(`SELECT COUNT(*) FROM reports WHERE period_end > %d AND period_begin < %d`, since, until),
		"SentReports page by period (reports, default)": fmt.Sprintf(`SELECT x.id, p.domain, x.period_begin, x.period_end, x.state, x.report_id, x.rows_included, x.built
FROM (SELECT x.id FROM reports x CROSS JOIN policies p WHERE p.id = x.policy_id AND x.period_end > %d AND x.period_begin < %d
	ORDER BY x.period_end DESC, x.period_begin DESC, p.domain, x.id LIMIT 500) k
JOIN reports x ON x.id = k.id JOIN policies p ON p.id = x.policy_id ORDER BY x.period_end DESC, x.period_begin DESC, p.domain, x.id`, since, until),
		"SentReports page by rows (reports, a year)": fmt.Sprintf(`SELECT x.id, p.domain, x.period_begin, x.period_end, x.state, x.report_id, x.rows_included, x.built
FROM (SELECT x.id FROM reports x JOIN policies p ON p.id = x.policy_id WHERE x.period_end > %d AND x.period_begin < %d
	ORDER BY x.rows_included DESC, x.period_begin, p.domain, x.id LIMIT 500) k
JOIN reports x ON x.id = k.id JOIN policies p ON p.id = x.policy_id ORDER BY x.rows_included DESC, x.period_begin, p.domain, x.id`, yearSince, until),
		"SentReports page by failed destinations (reports)": fmt.Sprintf(`SELECT x.id, p.domain, x.period_begin, x.period_end, x.state, x.report_id, x.rows_included, x.built
FROM (SELECT x.id, COALESCE(f.n, 0) AS failed FROM reports x JOIN policies p ON p.id = x.policy_id
	LEFT JOIN (SELECT report_ref, COUNT(*) AS n FROM deliveries WHERE state IN ('failed-temp', 'failed-perm') GROUP BY report_ref) f ON f.report_ref = x.id
	WHERE x.period_end > %d AND x.period_begin < %d ORDER BY COALESCE(f.n, 0) DESC, x.period_begin, p.domain, x.id LIMIT 500) k
JOIN reports x ON x.id = k.id JOIN policies p ON p.id = x.policy_id ORDER BY k.failed DESC, x.period_begin, p.domain, x.id`, since, until),
		"SentReports page deliveries (reports, shown reports)": `SELECT report_ref, address, state, attempts, next_attempt, last_error, sent FROM deliveries
WHERE report_ref IN (1, 2, 3, 4, 5) ORDER BY report_ref, address`,
		"SentReports export (reports, format=csv/json)":            fmt.Sprintf(`SELECT x.id, p.domain FROM reports x JOIN policies p ON p.id = x.policy_id WHERE x.period_end > %d AND x.period_begin < %d ORDER BY x.period_begin, p.domain, x.id`, since, until),
		"SentReports export deliveries (reports, format=csv/json)": fmt.Sprintf(`SELECT d.report_ref, d.address FROM deliveries d JOIN reports x ON x.id = d.report_ref WHERE x.period_end > %d AND x.period_begin < %d ORDER BY d.report_ref, d.address`, since, until),
	}
	prefix := "EXPLAIN QUERY PLAN "
	if eng == "postgresql" {
		prefix = "EXPLAIN "
	}
	var b strings.Builder
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range qs {
			if !yield(k) {
				return
			}
		}
	}) {
		fmt.Fprintf(&b, "### %s (%s)\n", name, eng)
		rows, err := db.Query(prefix + qs[name])
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			rows.Scan(ptrs...)
			fmt.Fprint(&b, fmt.Sprintln(vals...))
		}
		rows.Close()
		b.WriteString("\n")
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString(b.String())
}
