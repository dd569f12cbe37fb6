package web

import (
	"net/http"
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
	{"period", "Period", byTime(func(r sentRow) time.Time { return r.Begin })},
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
func (s *Server) reportsPage(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	q := r.URL.Query()
	rng, err := parseRange(q, s.opts.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	infos, err := s.st.SentReports(r.Context(), rng.Since, rng.Until)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sup, err := s.st.Suppressions(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	data := &reportsData{Suppressed: sup}
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
		data.Rows = append(data.Rows, row)
	}
	spec := sortRows(data.Rows, sentCols, q, sortSpec{Key: "period", Desc: true})
	data.Head = headers(sentCols, q, spec)
	switch q.Get("format") {
	case "json":
		rows := data.Rows
		if rows == nil {
			rows = []sentRow{}
		}
		writeJSON(w, "reports", struct {
			Since   time.Time `json:"since"`
			Until   time.Time `json:"until"`
			Reports []sentRow `json:"reports"`
		}{rng.Since, rng.Until, rows}, start)
	case "csv":
		var recs [][]string
		for _, x := range data.Rows {
			var dests []string
			for _, d := range x.Deliveries {
				dests = append(dests, d.Address+" "+string(d.State))
			}
			recs = append(recs, []string{x.Domain, x.Begin.Format(time.RFC3339), x.End.Format(time.RFC3339), x.State, x.ReportID,
				i64(x.Rows), strings.Join(dests, "; ")})
		}
		writeCSV(w, "reports", []string{"domain", "begin", "end", "state", "report_id", "rows", "destinations"}, recs, start)
	default:
		data.Total = len(data.Rows)
		data.Rows = data.Rows[:min(len(data.Rows), maxReportRows)]
		p := newPage("Reports we sent", "reports", r, rng)
		p.Data = data
		s.render(w, r, "reports", p, start)
	}
}
