package web

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/health"
)

// domainRow is one of our domains on the domains page.
type domainRow struct {
	Domain   string    `json:"domain"`
	Messages int64     `json:"messages"`
	Pass     int64     `json:"dmarc_pass"`
	PassRate float64   `json:"dmarc_pass_rate"`
	P        string    `json:"p"`
	SP       string    `json:"sp"`
	Health   string    `json:"health"` // the stored check's verdict, "" when none
	Summary  string    `json:"health_summary"`
	Warnings int       `json:"health_warnings"` // findings of warn, fail or error
	Checked  time.Time `json:"health_checked"`
	// Trend is the pass rate of each day with messages.
	Trend []float64  `json:"-"`
	Spark *sparkline `json:"-"`
}

var domainCols = []column[domainRow]{
	{"domain", "Domain", byString(func(r domainRow) string { return r.Domain })},
	{"messages", "Messages", byInt(func(r domainRow) int64 { return r.Messages })},
	{"pass", "DMARC pass", byFloat(func(r domainRow) float64 { return r.PassRate })},
	{"trend", "Pass rate trend", byFloat(func(r domainRow) float64 { return trendDelta(r.Trend) })},
	{"policy", "Policy (p / sp)", byString(func(r domainRow) string { return r.P + "/" + r.SP })},
	{"health", "Health check", byInt(func(r domainRow) int64 { return int64(r.Warnings) })},
}

type domainsData struct {
	Head   []header
	Rows   []domainRow
	Total  domainRow
	Volume *stackChart
}

// domainsPage: our domains as the reports we received show them.
func (s *Server) domainsPage(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rng, err := parseRange(r.URL.Query(), s.opts.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	data, err := s.domainsData(r, rng)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	switch r.URL.Query().Get("format") {
	case "json":
		writeJSON(w, "domains", struct {
			Since   time.Time   `json:"since"`
			Until   time.Time   `json:"until"`
			Domains []domainRow `json:"domains"`
		}{rng.Since, rng.Until, data.Rows}, start)
	case "csv":
		var recs [][]string
		for _, d := range data.Rows {
			recs = append(recs, []string{d.Domain, i64(d.Messages), i64(d.Pass), strconv.FormatFloat(d.PassRate, 'f', 4, 64),
				d.P, d.SP, d.Health, strconv.Itoa(d.Warnings)})
		}
		writeCSV(w, "domains", []string{"domain", "messages", "dmarc_pass", "dmarc_pass_rate", "p", "sp", "health", "health_warnings"}, recs, start)
	default:
		p := newPage("Domains", "domains", r, rng)
		p.Data = data
		s.render(w, r, "domains", p, start)
	}
}

func (s *Server) domainsData(r *http.Request, rng dateRange) (*domainsData, error) {
	ctx := r.Context()
	days, err := s.st.ReceivedDays(ctx, rng.Since, rng.Until)
	if err != nil {
		return nil, err
	}
	var domains []string
	for _, d := range days {
		if len(domains) == 0 || domains[len(domains)-1] != d.Domain {
			domains = append(domains, d.Domain) // days come ordered by domain
		}
	}
	pols, err := s.st.LatestPolicies(ctx, domains)
	if err != nil {
		return nil, err
	}
	checks, err := s.st.LatestHealthAll(ctx)
	if err != nil {
		return nil, err
	}
	byDomain := map[string]*domainRow{}
	var order []string
	passByDay := map[time.Time][]int64{}
	for _, d := range days {
		row := byDomain[d.Domain]
		if row == nil {
			row = &domainRow{Domain: d.Domain}
			byDomain[d.Domain] = row
			order = append(order, d.Domain)
		}
		row.Messages += d.Messages
		row.Pass += d.Pass
		row.Trend = append(row.Trend, rate(d.Pass, d.Messages))
		v := passByDay[d.Day]
		if v == nil {
			v = make([]int64, 2)
			passByDay[d.Day] = v
		}
		v[0] += d.Pass
		v[1] += d.Messages - d.Pass
	}
	data := &domainsData{Volume: newStackChart(rng, []string{"DMARC pass", "DMARC fail"}, passByDay)}
	for _, name := range order {
		row := byDomain[name]
		row.PassRate = rate(row.Pass, row.Messages)
		row.Spark = newSparkline(row.Trend)
		if p, ok := pols[name]; ok {
			row.P, row.SP = p.P, p.SP
		}
		if h, ok := checks[name]; ok {
			fillHealth(row, h)
		}
		data.Total.Messages += row.Messages
		data.Total.Pass += row.Pass
		data.Rows = append(data.Rows, *row)
	}
	data.Total.PassRate = rate(data.Total.Pass, data.Total.Messages)
	q := r.URL.Query()
	spec := sortRows(data.Rows, domainCols, q, sortSpec{Key: "messages", Desc: true})
	data.Head = headers(domainCols, q, spec)
	return data, nil
}

// fillHealth shows a stored health check (pkg/health's JSON): its verdict,
// summary and the number of findings worse than ok.
func fillHealth(row *domainRow, h store.HealthCheck) {
	row.Health, row.Checked = h.Verdict, h.Checked
	var rep health.Report
	if err := json.Unmarshal(h.Report, &rep); err != nil {
		row.Summary = "stored check unreadable"
		return
	}
	row.Summary = rep.Summary
	row.Warnings = rep.Counts.Warn + rep.Counts.Fail + rep.Counts.Error
}

// trendDelta is the last day's pass rate minus the first's.
func trendDelta(t []float64) float64 {
	if len(t) < 2 {
		return 0
	}
	return t[len(t)-1] - t[0]
}

func i64(n int64) string { return strconv.FormatInt(n, 10) }
