package web

import (
	"cmp"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/intake"
)

// senderRow is one sender of the senders page: intake's Sender, with what
// the page adds.
type senderRow struct {
	intake.Sender
	New          bool
	SPFRate      float64
	DKIMRate     float64
	Dispositions string // "none 12, quarantine 3"
}

var senderCols = []column[senderRow]{
	{"org", "Sender", byString(func(r senderRow) string { return r.Org })},
	{"status", "Status", byString(func(r senderRow) string { return strconv.FormatBool(!r.Authorized) })},
	{"ips", "Addresses", byInt(func(r senderRow) int64 { return int64(len(r.IPs)) })},
	{"messages", "Messages", byInt(func(r senderRow) int64 { return r.Messages })},
	{"spf", "SPF aligned pass", byFloat(func(r senderRow) float64 { return r.SPFRate })},
	{"dkim", "DKIM aligned pass", byFloat(func(r senderRow) float64 { return r.DKIMRate })},
	{"disposition", "Receivers did", byString(func(r senderRow) string { return r.Dispositions })},
	{"first", "First seen", byTime(func(r senderRow) time.Time { return r.FirstSeen })},
	{"last", "Last seen", byTime(func(r senderRow) time.Time { return r.LastSeen })},
}

type sendersData struct {
	Domain   string
	Messages int64
	New      int
	Head     []header
	Rows     []senderRow
	Chart    *barChart
}

// maxChartSenders bounds the senders drawn in the volume chart.
const maxChartSenders = 15

// sendersPage: who sends as one of our domains (intake.Senders). Its JSON
// export is intake.SendersReport, the shape of `report senders --json`.
func (s *Server) sendersPage(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	q := r.URL.Query()
	rng, domain, err := s.domainPage(q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rep, err := intake.Senders(r.Context(), s.st, domain, rng.Since, rng.Until)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	switch q.Get("format") {
	case "json":
		writeJSON(w, "senders-"+domain, rep, start)
		return
	case "csv":
		writeCSV(w, "senders-"+domain, senderCSVHead, senderCSV(rep, rng), start)
		return
	}
	data := &sendersData{Domain: domain, Messages: rep.Messages}
	for _, snd := range rep.Senders {
		row := senderRow{Sender: snd, New: isNew(snd, rng), SPFRate: rate(snd.SPFAlignedPass, snd.Messages),
			DKIMRate: rate(snd.DKIMAlignedPass, snd.Messages), Dispositions: dispositions(snd.Dispositions)}
		if row.New {
			data.New++
		}
		data.Rows = append(data.Rows, row)
	}
	data.Chart = senderChart(data.Rows)
	spec := sortRows(data.Rows, senderCols, q, sortSpec{Key: "messages", Desc: true})
	data.Head = headers(senderCols, q, spec)
	p := newPage("Senders of "+domain, "domains", r, rng, "domain")
	p.Data = data
	s.render(w, r, "senders", p, start)
}

// isNew: the sender's first report for the domain began in the range.
func isNew(snd intake.Sender, rng dateRange) bool {
	return !snd.FirstSeen.Before(rng.Since) && snd.FirstSeen.Before(rng.Until)
}

func dispositions(m map[string]int64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+" "+i64(m[k]))
	}
	return strings.Join(parts, ", ")
}

// senderChart draws the senders with the most messages (rep's order).
func senderChart(rows []senderRow) *barChart {
	top := slices.Clone(rows)
	slices.SortStableFunc(top, func(a, b senderRow) int { return cmp.Compare(b.Messages, a.Messages) })
	top = top[:min(len(top), maxChartSenders)]
	var labels, classes []string
	var values []int64
	for _, r := range top {
		labels, values = append(labels, r.Org), append(values, r.Messages)
		classes = append(classes, map[bool]string{true: "s0", false: "s1"}[r.Authorized])
	}
	return newBarChart(labels, values, classes)
}

var senderCSVHead = []string{"org", "identified", "authorized", "new", "messages", "spf_aligned_pass", "dkim_aligned_pass",
	"dispositions", "first_seen", "last_seen", "ips"}

func senderCSV(rep intake.SendersReport, rng dateRange) [][]string {
	var out [][]string
	for _, snd := range rep.Senders {
		var ips []string
		for _, ip := range snd.IPs {
			ips = append(ips, ip.IP)
		}
		out = append(out, []string{snd.Org, strconv.FormatBool(snd.Identified), strconv.FormatBool(snd.Authorized),
			strconv.FormatBool(isNew(snd, rng)), i64(snd.Messages), i64(snd.SPFAlignedPass), i64(snd.DKIMAlignedPass),
			dispositions(snd.Dispositions), snd.FirstSeen.Format(time.RFC3339), snd.LastSeen.Format(time.RFC3339),
			strings.Join(ips, " ")})
	}
	return out
}
