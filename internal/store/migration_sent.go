package store

// migrationDashboard is the indexes of the dashboard's reports and inbound
// pages (sent.go, inbound.go), chosen from their query plans on both
// engines (internal/web bench_test.go, plans).
//
// reports_when: the reports of a range, newest or oldest first, read from
// the end of the range and stopped after a page's worth; it also covers
// the count of the range. reports_listing: per policy the reports of a
// range with the columns the page sorts by, read without the table.
// deliveries_failed: the failed destinations only, for the sort by them.
// Reports are written a few thousand times a day.
//
// counters_when and counters_by_domain cover the inbound page's sums by
// period and by sending domain, so that SQLite reads no table row (a year
// of counters for 1 000 domains is 1.1 million rows). They hold the count:
// an increment updates them too, and PostgreSQL cannot update the row in
// place ("HOT"); counters change once per recorder flush and key, not per
// message. counters_by_domain replaces counters_domain, its prefix.
//
// agg_rows_reasons: the recorded rows with policy overrides. It leaves
// the count out: the recorder's upserts of agg_rows, the milter's hot
// path, change only the count and so touch no new index entry.
//
// The step can run again over itself (IF NOT EXISTS, IF EXISTS): a test
// that winds the schema version back to rebuild an earlier step's tables
// runs it twice.
const migrationDashboard = `
CREATE INDEX IF NOT EXISTS reports_when ON reports (period_end, period_begin, policy_id);
CREATE INDEX IF NOT EXISTS reports_listing ON reports (policy_id, period_end, period_begin, state, rows_included);
CREATE INDEX IF NOT EXISTS deliveries_failed ON deliveries (report_ref) WHERE state IN ('failed-temp', 'failed-perm');
CREATE INDEX IF NOT EXISTS counters_when ON counters (period_begin, result, action, count);
CREATE INDEX IF NOT EXISTS counters_by_domain ON counters (domain, period_begin, result, count);
DROP INDEX IF EXISTS counters_domain;
CREATE INDEX IF NOT EXISTS agg_rows_reasons ON agg_rows (period_begin, period_end) WHERE reasons <> '[]';
`
