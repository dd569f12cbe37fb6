package web

import (
	"net/http"
	"strings"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/intake"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
)

// causeWords names each cause for people.
var causeWords = map[intake.Cause]string{
	intake.CauseSPFUnaligned:        "SPF passed for a third party's domain, not aligned with yours",
	intake.CauseSPFFail:             "SPF failed for your MAIL FROM domain",
	intake.CauseDKIMSelectorFailing: "a DKIM selector of yours is failing",
	intake.CauseDKIMUnaligned:       "DKIM passed for another domain only",
	intake.CauseForwarded:           "forwarded or changed by a mailing list",
	intake.CauseUnauthenticated:     "neither SPF nor DKIM for your domain",
}

// failureRow is one failure of the failures page.
type failureRow struct {
	intake.Failure
	Words string
}

var failureCols = []column[failureRow]{
	{"cause", "Cause", byString(func(r failureRow) string { return r.Words })},
	{"sender", "Sender", byString(func(r failureRow) string { return r.Sender })},
	{"detail", "What failed", byString(func(r failureRow) string { return r.Detail })},
	{"messages", "Messages", byInt(func(r failureRow) int64 { return r.Messages })},
	{"dmarcfail", "DMARC fail", byInt(func(r failureRow) int64 { return r.DMARCFail })},
	{"fix", "Fix", byString(func(r failureRow) string { return r.Fix })},
}

// overrideRow is a policy override a receiver reported for the domain.
type overrideRow struct {
	Reporter, Type, Comment string
	Messages                int64
}

type failuresData struct {
	Domain    string
	Messages  int64
	DMARCFail int64
	Head      []header
	Rows      []failureRow
	Overrides []overrideRow
}

// failuresPage: what fails for one of our domains, why, and the fix
// (intake.Failures), with the overrides the receivers reported.
func (s *Server) failuresPage(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	q := r.URL.Query()
	rng, domain, err := s.domainPage(q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rep, err := intake.Failures(r.Context(), s.st, domain, rng.Since, rng.Until)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	switch q.Get("format") {
	case "json":
		writeJSON(w, "failures-"+domain, rep, start)
		return
	case "csv":
		var recs [][]string
		for _, f := range rep.Failures {
			recs = append(recs, []string{string(f.Cause), f.Sender, f.Detail, i64(f.Messages), i64(f.DMARCFail),
				strings.Join(f.IPs, " "), f.Fix})
		}
		writeCSV(w, "failures-"+domain, []string{"cause", "sender", "detail", "messages", "dmarc_fail", "ips", "fix"}, recs, start)
		return
	}
	ovr, err := s.st.ReceivedOverrides(r.Context(), domain, rng.Since, rng.Until)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	data := &failuresData{Domain: domain, Messages: rep.Messages, DMARCFail: rep.DMARCFail, Overrides: overrides(ovr)}
	for _, f := range rep.Failures {
		data.Rows = append(data.Rows, failureRow{Failure: f, Words: causeWords[f.Cause]})
	}
	spec := sortRows(data.Rows, failureCols, q, sortSpec{Key: "dmarcfail", Desc: true})
	data.Head = headers(failureCols, q, spec)
	p := newPage("Failures of "+domain, "domains", r, rng, "domain")
	p.Data = data
	s.render(w, r, "failures", p, start)
}

// maxOverrides bounds the override rows shown.
const maxOverrides = 100

// overrides are the reported policy overrides by reporter, type and
// comment, most messages first (the store sums and orders them).
func overrides(list []store.ReceivedOverride) []overrideRow {
	out := make([]overrideRow, 0, min(len(list), maxOverrides))
	for _, o := range list[:min(len(list), maxOverrides)] {
		out = append(out, overrideRow{Reporter: o.Reporter, Type: o.Reason.Type, Comment: o.Reason.Comment, Messages: o.Messages})
	}
	return out
}
