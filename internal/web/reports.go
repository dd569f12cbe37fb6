package web

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/store"
)

// sentRow is one report we built (or are building) for a policy domain.
type sentRow struct {
	Domain     string     `json:"domain"`
	Begin      time.Time  `json:"begin"`
	End        time.Time  `json:"end"`
	State      string     `json:"state"`
	ReportID   string     `json:"report_id"`
	Rows       int64      `json:"rows"`
	Built      time.Time  `json:"built"`
	Deliveries []delivery `json:"deliveries"`
	Failed     int        `json:"failed_deliveries"`
	Suppressed int        `json:"suppressed_deliveries"`
}

// delivery is one destination of a report.
type delivery struct {
	Address  string    `json:"address"`
	State    string    `json:"state"`
	Attempts int       `json:"attempts"`
	Detail   string    `json:"detail"`
	Sent     time.Time `json:"sent"`
}

var sentCols = []column[sentRow]{
	{"domain", "Policy domain", byString(func(r sentRow) string { return r.Domain })},
	// By end, then begin: store.SentByPeriod's order.
	{"period", "Period", func(a, b sentRow) int { return cmp.Or(a.End.Compare(b.End), a.Begin.Compare(b.Begin)) }},
	{"state", "Status", byString(func(r sentRow) string { return r.State })},
	{"rows", "Rows", byInt(func(r sentRow) int64 { return r.Rows })},
	{"failed", "Failed destinations", byInt(func(r sentRow) int64 { return int64(r.Failed) })},
}

type reportsData struct {
	Head       []header
	Rows       []sentRow
	Suppressed []store.Suppression
	// Total is the number of reports in the range; Rows holds the first
	// maxReportRows of them in the chosen order (the exports hold all).
	Total int
}

// maxReportRows bounds the reports shown on the page: a thousand sending
// domains make 30 000 reports a month.
const maxReportRows = 500

// reportsPage: the aggregate reports we sent, per policy domain and
// period, with each destination's delivery state and the suppression list.
// The page shows the first maxReportRows reports in the chosen order,
// sorted and cut in SQL (store.SentReportList); the exports hold every
// report of the range.
func (s *Server) reportsPage(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	q := r.URL.Query()
	rng, err := parseRange(q, s.opts.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	switch q.Get("format") {
	case "json", "csv":
		s.reportsExport(w, r, rng, start)
		return
	}
	spec := chooseSort(sentCols, q, sortSpec{Key: "period", Desc: true})
	list, err := s.st.SentReportList(r.Context(), store.SentQuery{Since: rng.Since, Until: rng.Until,
		Sort: store.SentSort(spec.Key), Desc: spec.Desc, Limit: maxReportRows})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sup, err := s.st.Suppressions(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	data := &reportsData{Head: headers(sentCols, q, spec), Rows: sentRows(list.Reports), Suppressed: sup, Total: list.Total}
	p := newPage("Reports we sent", "reports", r, rng)
	p.Data = data
	s.render(w, r, "reports", p, start)
}

// reportsExport writes every report of the range, in the order the query
// asks, as JSON or CSV.
func (s *Server) reportsExport(w http.ResponseWriter, r *http.Request, rng dateRange, start time.Time) {
	q := r.URL.Query()
	infos, err := s.st.SentReports(r.Context(), rng.Since, rng.Until)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rows := sentRows(infos)
	sortRows(rows, sentCols, q, sortSpec{Key: "period", Desc: true})
	if q.Get("format") == "json" {
		writeJSON(w, "reports", struct {
			Since   time.Time `json:"since"`
			Until   time.Time `json:"until"`
			Reports []sentRow `json:"reports"`
		}{rng.Since, rng.Until, rows}, start)
		return
	}
	var recs [][]string
	for _, x := range rows {
		var dests []string
		for _, d := range x.Deliveries {
			dests = append(dests, d.Address+" "+string(d.State))
		}
		recs = append(recs, []string{x.Domain, x.Begin.Format(time.RFC3339), x.End.Format(time.RFC3339), x.State, x.ReportID,
			i64(x.Rows), strings.Join(dests, "; ")})
	}
	writeCSV(w, "reports", []string{"domain", "begin", "end", "state", "report_id", "rows", "destinations"}, recs, start)
}

// sentRows are the page's rows of reports, with their failed and
// suppressed destinations counted (never nil: the JSON export writes []).
func sentRows(infos []store.SentReport) []sentRow {
	rows := make([]sentRow, 0, len(infos))
	for _, ri := range infos {
		row := sentRow{Domain: ri.Domain, Begin: ri.Begin, End: ri.End, State: string(ri.State),
			ReportID: ri.ReportID, Rows: ri.Rows, Built: ri.Built, Deliveries: []delivery{}}
		for _, d := range ri.Deliveries {
			row.Deliveries = append(row.Deliveries, delivery{Address: d.Address, State: string(d.State),
				Attempts: d.Attempts, Detail: d.Detail, Sent: d.Sent})
			switch d.State {
			case store.DeliveryFailedTemp, store.DeliveryFailedPerm:
				row.Failed++
			case store.DeliverySuppressed:
				row.Suppressed++
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// chooseSort is the column and direction the query asks (sort, dir), else
// def: sortRows' choice, for rows the database sorts.
func chooseSort[T any](cols []column[T], q url.Values, def sortSpec) sortSpec {
	spec := sortSpec{Key: q.Get("sort"), Desc: q.Get("dir") != "asc"}
	if !slices.ContainsFunc(cols, func(c column[T]) bool { return c.Key == spec.Key }) {
		return def
	}
	return spec
}
