package reporter

import (
	"encoding/binary"
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

// appendRowKey appends to b a key that identifies the row of r in period
// begin (and with envelope_to when withTo) by every fact but its count, so
// that equal rows queued in memory are added up before they reach the store.
// Fields are length-prefixed: no text can imitate a field boundary. It reads
// the verdict's row directly, so that a row already queued costs no
// conversion and no allocation.
func appendRowKey(b []byte, r *policy.ReportRow, begin int64, withTo bool) []byte {
	b = binary.AppendVarint(b, begin)
	pp := &r.PolicyPublished
	b = appendStr(b, pp.Domain)
	b = appendStr(b, string(pp.P))
	b = appendStr(b, string(pp.SP))
	b = appendStr(b, string(pp.NP))
	b = appendStr(b, string(pp.ADKIM))
	b = appendStr(b, string(pp.ASPF))
	b = appendStr(b, pp.FO)
	b = appendStr(b, string(pp.DiscoveryMethod))
	if pp.Testing {
		b = append(b, 'y')
	} else {
		b = append(b, 'n')
	}
	ip := r.SourceIP.Unmap().As16()
	b = append(b, ip[:]...)
	b = append(b, byte(len(r.SourceIP.Zone())))
	b = appendStr(b, r.HeaderFrom)
	b = appendStr(b, r.EnvelopeFrom)
	if withTo {
		b = appendStr(b, r.EnvelopeTo)
	} else {
		b = appendStr(b, "")
	}
	b = appendStr(b, string(r.Disposition))
	b = appendStr(b, string(r.DKIM))
	b = appendStr(b, string(r.SPF))
	b = binary.AppendUvarint(b, uint64(len(r.Reasons)))
	for _, o := range r.Reasons {
		b = appendStr(b, string(o.Reason))
		b = appendStr(b, o.Comment)
	}
	b = binary.AppendUvarint(b, uint64(len(r.DKIMResults)))
	for _, d := range r.DKIMResults {
		b = appendStr(b, d.Domain)
		b = appendStr(b, d.Selector)
		b = appendStr(b, string(d.Result))
		b = appendStr(b, d.HumanResult)
	}
	if s := r.SPFResult; s != nil {
		b = append(b, 'S')
		b = appendStr(b, s.Domain)
		b = appendStr(b, string(s.Scope))
		b = appendStr(b, string(s.Result))
	}
	return b
}

// appendStr appends s, length first.
func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
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
