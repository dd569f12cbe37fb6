package web

import (
	"cmp"
	"net/http"
	"slices"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/store"
)

// topDomains bounds the top-domain tables of the inbound page.
const topDomains = 25

// outcomeRow is the messages of one (result, action) over the range.
type outcomeRow struct {
	Result   string `json:"result"`
	Action   string `json:"action"`
	Messages int64  `json:"messages"`
}

var outcomeCols = []column[outcomeRow]{
	{"result", "DMARC result", byString(func(r outcomeRow) string { return r.Result })},
	{"action", "Action", byString(func(r outcomeRow) string { return r.Action })},
	{"messages", "Messages", byInt(func(r outcomeRow) int64 { return r.Messages })},
}

type inboundData struct {
	Head      []header
	Outcomes  []outcomeRow
	Total     int64
	Chart     *stackChart
	Top       []store.DomainTotal
	Spoofed   []store.DomainTotal
	Overrides []store.OverrideTotal
}

// inboundExport is the inbound page's JSON export.
type inboundExport struct {
	Since     time.Time        `json:"since"`
	Until     time.Time        `json:"until"`
	Messages  int64            `json:"messages"`
	Outcomes  []outcomeRow     `json:"outcomes"`
	Top       []domainTotal    `json:"top_sending_domains"`
	Spoofed   []domainTotal    `json:"top_spoofed_domains"`
	Overrides []overrideExport `json:"overrides"`
}

type domainTotal struct {
	Domain    string `json:"domain"`
	Messages  int64  `json:"messages"`
	DMARCFail int64  `json:"dmarc_fail"`
}

type overrideExport struct {
	Type     string `json:"type"`
	Comment  string `json:"comment"`
	Messages int64  `json:"messages"`
}

// inboundPage: what our milter decided, from the outcome counters and the
// recorded rows.
func (s *Server) inboundPage(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	q := r.URL.Query()
	rng, err := parseRange(q, s.opts.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	data, err := s.inboundData(r, rng)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	switch q.Get("format") {
	case "json":
		writeJSON(w, "inbound", data.export(rng), start)
	case "csv":
		var recs [][]string
		for _, o := range data.Outcomes {
			recs = append(recs, []string{o.Result, o.Action, i64(o.Messages)})
		}
		writeCSV(w, "inbound", []string{"result", "action", "messages"}, recs, start)
	default:
		p := newPage("Inbound: what our milter decided", "inbound", r, rng)
		p.Data = data
		s.render(w, r, "inbound", p, start)
	}
}

func (s *Server) inboundData(r *http.Request, rng dateRange) (*inboundData, error) {
	ctx := r.Context()
	days, err := s.st.InboundDays(ctx, rng.Since, rng.Until)
	if err != nil {
		return nil, err
	}
	data := &inboundData{}
	if data.Top, err = s.st.InboundTopDomains(ctx, rng.Since, rng.Until, topDomains); err != nil {
		return nil, err
	}
	if data.Spoofed, err = s.st.InboundSpoofed(ctx, rng.Since, rng.Until, topDomains); err != nil {
		return nil, err
	}
	if data.Overrides, err = s.st.InboundOverrides(ctx, rng.Since, rng.Until); err != nil {
		return nil, err
	}
	type ra struct{ result, action string }
	sum := map[ra]int64{}
	var results []string
	for _, d := range days {
		sum[ra{d.Result, d.Action}] += d.Messages
		data.Total += d.Messages
		if !slices.Contains(results, label(d.Result)) {
			results = append(results, label(d.Result))
		}
	}
	slices.SortFunc(results, func(a, b string) int { return cmp.Compare(resultOrder(a), resultOrder(b)) })
	byDay := map[time.Time][]int64{}
	for _, d := range days {
		v := byDay[d.Day]
		if v == nil {
			v = make([]int64, len(results))
			byDay[d.Day] = v
		}
		v[slices.Index(results, label(d.Result))] += d.Messages
	}
	data.Chart = newStackChart(rng, results, byDay)
	for k, n := range sum {
		data.Outcomes = append(data.Outcomes, outcomeRow{Result: label(k.result), Action: label(k.action), Messages: n})
	}
	q := r.URL.Query()
	spec := sortRows(data.Outcomes, outcomeCols, q, sortSpec{Key: "messages", Desc: true})
	data.Head = headers(outcomeCols, q, spec)
	return data, nil
}

// label shows an empty counter field (a bypassed message has no DMARC
// result) as a dash.
func label(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// resultOrder stacks pass first, then fail, then the rest by name.
func resultOrder(r string) string {
	switch r {
	case "pass":
		return "0"
	case "fail":
		return "1"
	}
	return "2" + r
}

func (d *inboundData) export(rng dateRange) inboundExport {
	e := inboundExport{Since: rng.Since, Until: rng.Until, Messages: d.Total, Outcomes: d.Outcomes,
		Top: []domainTotal{}, Spoofed: []domainTotal{}, Overrides: []overrideExport{}}
	if e.Outcomes == nil {
		e.Outcomes = []outcomeRow{}
	}
	for _, t := range d.Top {
		e.Top = append(e.Top, domainTotal{t.Domain, t.Messages, t.Fail})
	}
	for _, t := range d.Spoofed {
		e.Spoofed = append(e.Spoofed, domainTotal{t.Domain, t.Messages, t.Fail})
	}
	for _, o := range d.Overrides {
		e.Overrides = append(e.Overrides, overrideExport{o.Reason.Type, o.Reason.Comment, o.Messages})
	}
	return e
}
