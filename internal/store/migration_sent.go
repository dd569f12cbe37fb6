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
const migrationDashboard = `
CREATE INDEX reports_when ON reports (period_end, period_begin, policy_id);
CREATE INDEX reports_listing ON reports (policy_id, period_end, period_begin, state, rows_included);
CREATE INDEX deliveries_failed ON deliveries (report_ref) WHERE state IN ('failed-temp', 'failed-perm');
`
