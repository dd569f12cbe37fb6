package reporter

import (
	"strconv"
	"strings"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/report"
)

// Period returns the UTC reporting period [begin, end) of length interval
// that holds t. interval divides a day, so periods are aligned to 00:00 UTC
// (RFC 9990 §3.1.1.4: a report typically covers one UTC day).
func Period(t time.Time, interval time.Duration) (begin, end time.Time) {
	begin = t.UTC().Truncate(interval)
	return begin, begin.Add(interval)
}

// storeRow maps one message's report row (the verdict's typed facts) onto
// the store's row in the report's vocabulary. The override types are
// written as RFC 9990 can state them: a pct-sampled message is "other" with
// "sampled_out" leading its comment.
func storeRow(r policy.ReportRow, begin, end time.Time) store.Row {
	pp := r.PolicyPublished
	row := store.Row{
		Begin: begin, End: end,
		Policy: store.Policy{
			Domain: strings.ToLower(pp.Domain), P: string(pp.P), SP: string(pp.SP), NP: string(pp.NP),
			ADKIM: string(pp.ADKIM), ASPF: string(pp.ASPF), FO: pp.FO,
			Testing: testingTag(pp.Testing), DiscoveryMethod: string(pp.DiscoveryMethod),
		},
		SourceIP:     r.SourceIP.Unmap(),
		HeaderFrom:   strings.ToLower(r.HeaderFrom),
		EnvelopeFrom: strings.ToLower(r.EnvelopeFrom),
		EnvelopeTo:   strings.ToLower(r.EnvelopeTo),
		Disposition:  string(r.Disposition),
		DKIMAligned:  string(r.DKIM),
		SPFAligned:   string(r.SPF),
		Count:        1,
	}
	for _, o := range r.Reasons {
		rr := report.Reason{Type: report.ReasonType(o.Type()), Comment: o.Comment}.RFC9990()
		row.Reasons = append(row.Reasons, store.Reason{Type: string(rr.Type), Comment: rr.Comment})
	}
	for _, d := range r.DKIMResults {
		row.DKIM = append(row.DKIM, store.DKIMResult{Domain: strings.ToLower(d.Domain), Selector: d.Selector,
			Result: string(d.Result), HumanResult: d.HumanResult})
	}
	if s := r.SPFResult; s != nil {
		row.SPF = &store.SPFResult{Domain: strings.ToLower(s.Domain), Scope: string(s.Scope), Result: string(s.Result)}
	}
	return row
}

func testingTag(t bool) string {
	if t {
		return string(report.TestingYes)
	}
	return string(report.TestingNo)
}

// rowKey identifies a row by every fact but its count, so that equal rows
// queued in memory are added up before they reach the store.
func rowKey(r *store.Row) string {
	var b strings.Builder
	w := func(s ...string) {
		for _, x := range s {
			b.WriteString(strconv.Quote(x))
		}
	}
	b.WriteString(strconv.FormatInt(r.Begin.Unix(), 10))
	b.WriteByte('/')
	b.WriteString(strconv.FormatInt(r.End.Unix(), 10))
	p := r.Policy
	w(p.Domain, p.P, p.SP, p.NP, p.ADKIM, p.ASPF, p.FO, p.Testing, p.DiscoveryMethod)
	w(r.SourceIP.String(), r.HeaderFrom, r.EnvelopeFrom, r.EnvelopeTo, r.Disposition, r.DKIMAligned, r.SPFAligned)
	b.WriteByte('R')
	for _, x := range r.Reasons {
		w(x.Type, x.Comment)
	}
	b.WriteByte('D')
	for _, x := range r.DKIM {
		w(x.Domain, x.Selector, x.Result, x.HumanResult)
	}
	if r.SPF != nil {
		b.WriteByte('S')
		w(r.SPF.Domain, r.SPF.Scope, r.SPF.Result)
	}
	return b.String()
}

// policyPublished maps a stored policy configuration onto the report's.
func policyPublished(p store.Policy) report.PolicyPublished {
	return report.PolicyPublished{
		Domain: p.Domain, P: report.Disposition(p.P), SP: report.Disposition(p.SP), NP: report.Disposition(p.NP),
		ADKIM: report.Alignment(p.ADKIM), ASPF: report.Alignment(p.ASPF),
		DiscoveryMethod: report.DiscoveryMethod(p.DiscoveryMethod), FO: p.FO, Testing: report.Testing(p.Testing),
	}
}

// record maps a stored row onto a report record.
func record(r store.Row) report.Record {
	rec := report.Record{
		Row: report.Row{SourceIP: r.SourceIP, Count: uint64(r.Count), PolicyEvaluated: report.PolicyEvaluated{
			Disposition: report.ActionDisposition(r.Disposition),
			DKIM:        report.DMARCResult(r.DKIMAligned),
			SPF:         report.DMARCResult(r.SPFAligned),
		}},
		Identifiers: report.Identifiers{HeaderFrom: r.HeaderFrom, EnvelopeFrom: r.EnvelopeFrom, EnvelopeTo: r.EnvelopeTo},
	}
	for _, x := range r.Reasons {
		rec.Row.PolicyEvaluated.Reasons = append(rec.Row.PolicyEvaluated.Reasons, report.Reason{Type: report.ReasonType(x.Type), Comment: x.Comment})
	}
	for _, d := range r.DKIM {
		rec.AuthResults.DKIM = append(rec.AuthResults.DKIM, report.DKIMAuth{Domain: d.Domain, Selector: d.Selector,
			Result: report.DKIMResult(d.Result), HumanResult: d.HumanResult})
	}
	if s := r.SPF; s != nil {
		rec.AuthResults.SPF = &report.SPFAuth{Domain: s.Domain, Scope: report.SPFScope(s.Scope), Result: report.SPFResult(s.Result)}
	}
	return rec
}
