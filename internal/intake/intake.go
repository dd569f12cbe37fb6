// Package intake takes in the DMARC aggregate reports other receivers send
// about our domains (RFC 9990, https://datatracker.ietf.org/doc/html/rfc9990):
// bytes of a report message or file → pkg/report's parser (bounded) →
// Validate against the clock → refusal of domains we do not own → the
// store, where a report already stored is a duplicate and writes nothing.
// Every report ends in a typed Outcome (stored, duplicate, refused with a
// Reason), counted in the store and in Metrics.
//
// Enrichment runs beside it: the reverse DNS name of each new source
// address, confirmed forward, and its organizational domain, so that
// sources group into senders ("google.com", "your own MX"). Lookups are
// asynchronous and bounded (Enricher): a slow or failing DNS never stalls an
// import, and names not found in time are looked up later.
//
// The questions domain owners ask (who sends as my domain, what fails and
// why, who is new) are answered by Senders, Failures and NewSenders in one
// versioned JSON shape each (docs/intake.md), which the dashboard reuses.
// CheckHealth runs pkg/health for an intake domain with the DKIM selectors
// and subdomains seen in its reports and stores the result.
package intake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/report"
)

// Status is what became of one report (or of a file or message that held
// no readable report).
type Status string

// The statuses.
const (
	StatusStored    Status = "stored"
	StatusDuplicate Status = "duplicate" // already stored: nothing written
	StatusRefused   Status = "refused"   // Reason says why; nothing written
	StatusFailed    Status = "failed"    // the store failed (Err); try again later
)

// Reason is why a report was refused: a pkg/report RefusalReason (parsing,
// bounds, date range) or one of the intake's own.
type Reason string

// The intake's own refusal reasons.
const (
	// ReasonNotOurDomain: the report's policy domain is neither one of the
	// configured domains nor below one.
	ReasonNotOurDomain Reason = "not_our_domain"
	// ReasonDMARCFail: the message carrying the report failed DMARC
	// (milter path only; RFC 9990 §3.5.2 requires report messages to pass).
	ReasonDMARCFail Reason = "dmarc_fail"
	// ReasonBadValue: a value the store cannot hold (a count over 2^63).
	ReasonBadValue Reason = "bad_value"
)

// Outcome is what became of one report.
type Outcome struct {
	Status Status
	Reason Reason // set when Status is StatusRefused
	// Detail explains a refusal or failure for logs; it may quote the
	// input and must be escaped where shown.
	Detail string
	Err    error
	// The report's identity, when it was read.
	Org      string
	ReportID string
	Domain   string
	Begin    time.Time
	End      time.Time
	// Rows and Messages are what was stored (or would have been, for a
	// duplicate).
	Rows     int
	Messages int64
}

// Metrics counts what the intake does. The binary wires Prometheus
// counters (internal/metrics); nil counts nothing.
type Metrics interface {
	// ReportStored counts a stored report with its rows.
	ReportStored(rows int)
	// ReportDuplicate counts a report already stored.
	ReportDuplicate()
	// ReportRefused counts a refused report (or file, or message) by
	// reason.
	ReportRefused(reason Reason)
}

type noMetrics struct{}

func (noMetrics) ReportStored(int)     {}
func (noMetrics) ReportDuplicate()     {}
func (noMetrics) ReportRefused(Reason) {}

// Config configures an Intake.
type Config struct {
	// Domains are the domains whose reports are accepted, with their
	// subdomains (normalized: lower case, no final dot).
	Domains []string
	// Limits bound the parsing of one report (pkg/report DefaultLimits
	// for zero fields).
	Limits report.Limits
	// Now is the clock of Validate and of the refusal counters; default
	// time.Now.
	Now func() time.Time
	// Enricher, when set, is told of every new source address.
	Enricher *Enricher
	Logger   *slog.Logger
	Metrics  Metrics
}

// Intake stores the reports it is given. It is safe for concurrent use.
type Intake struct {
	st  *store.Store
	cfg Config
}

// New returns an Intake storing into st.
func New(st *store.Store, cfg Config) *Intake {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	return &Intake{st: st, cfg: cfg}
}

// Message takes in a report message (as the milter captured it, or one
// message of a Maildir or mbox). origin names it in the store and logs.
func (in *Intake) Message(ctx context.Context, r io.Reader, origin string) []Outcome {
	reps, err := report.ParseMessage(r, in.cfg.Limits)
	if err != nil {
		return []Outcome{in.refuseParse(ctx, err, origin)}
	}
	return in.Reports(ctx, reps, origin)
}

// File takes in a report file: XML, gzip or zip, told by its bytes.
func (in *Intake) File(ctx context.Context, r io.Reader, origin string) []Outcome {
	rep, err := report.ParseFile(r, in.cfg.Limits)
	if err != nil {
		return []Outcome{in.refuseParse(ctx, err, origin)}
	}
	return in.Reports(ctx, []*report.Feedback{rep}, origin)
}

// Reports takes in parsed reports: each is validated, checked against our
// domains and stored.
func (in *Intake) Reports(ctx context.Context, reps []*report.Feedback, origin string) []Outcome {
	out := make([]Outcome, 0, len(reps))
	for _, f := range reps {
		out = append(out, in.one(ctx, f, origin))
	}
	return out
}

// Refuse counts a refusal decided outside the parser (the milter's
// dmarc_fail) and returns its outcome.
func (in *Intake) Refuse(ctx context.Context, reason Reason, detail, origin string) Outcome {
	o := Outcome{Status: StatusRefused, Reason: reason, Detail: detail}
	in.countRefusal(ctx, &o, origin)
	return o
}

func (in *Intake) refuseParse(ctx context.Context, err error, origin string) Outcome {
	o := Outcome{Status: StatusRefused, Detail: err.Error()}
	if reason, ok := report.ReasonOf(err); ok {
		o.Reason = Reason(reason)
	} else {
		o.Reason = Reason(report.RefusalRead)
	}
	in.countRefusal(ctx, &o, origin)
	return o
}

func (in *Intake) one(ctx context.Context, f *report.Feedback, origin string) Outcome {
	o, rec := in.prepare(ctx, f, origin)
	if rec == nil {
		return o
	}
	res, err := in.st.StoreReceived(ctx, rec)
	return in.finish(o, rec, res, err, origin)
}

// prepare validates f and maps it for the store; rec is nil when f was
// refused (the refusal is counted and o says why).
func (in *Intake) prepare(ctx context.Context, f *report.Feedback, origin string) (o Outcome, rec *store.ReceivedReport) {
	o = Outcome{Org: f.Metadata.OrgName, ReportID: f.Metadata.ReportID,
		Domain: f.PolicyPublished.Domain, Begin: f.Metadata.DateRange.Begin, End: f.Metadata.DateRange.End}
	if err := f.Validate(in.cfg.Now()); err != nil {
		reason, _ := report.ReasonOf(err)
		o.Status, o.Reason, o.Detail = StatusRefused, Reason(reason), err.Error()
		in.countRefusal(ctx, &o, origin)
		return o, nil
	}
	domain, err := policy.NormalizeDomain(strings.TrimSpace(f.PolicyPublished.Domain))
	if err != nil || !in.ours(domain) {
		o.Status, o.Reason = StatusRefused, ReasonNotOurDomain
		o.Detail = fmt.Sprintf("policy domain %q is not one of ours", f.PolicyPublished.Domain)
		in.countRefusal(ctx, &o, origin)
		return o, nil
	}
	o.Domain = domain
	rec, err = toStore(f, domain, origin)
	if err != nil {
		o.Status, o.Reason, o.Detail = StatusRefused, ReasonBadValue, err.Error()
		in.countRefusal(ctx, &o, origin)
		return o, nil
	}
	return o, rec
}

// finish completes o with what the store did with rec.
func (in *Intake) finish(o Outcome, rec *store.ReceivedReport, res store.StoredReceived, err error, origin string) Outcome {
	switch {
	case err != nil:
		o.Status, o.Err, o.Detail = StatusFailed, err, err.Error()
		in.cfg.Logger.Warn("intake: report not stored", "origin", origin, "org", o.Org, "report_id", o.ReportID, "err", err)
		return o
	case res.Duplicate:
		o.Status, o.Rows, o.Messages = StatusDuplicate, len(rec.Rows), sumCounts(rec.Rows)
		in.cfg.Metrics.ReportDuplicate()
	default:
		o.Status, o.Rows, o.Messages = StatusStored, res.Rows, res.Messages
		in.cfg.Metrics.ReportStored(res.Rows)
		if in.cfg.Enricher != nil && len(res.Unresolved) > 0 {
			in.cfg.Enricher.Kick()
		}
	}
	in.cfg.Logger.Debug("intake: report", "origin", origin, "status", o.Status, "org", o.Org,
		"report_id", o.ReportID, "domain", o.Domain, "rows", o.Rows, "messages", o.Messages)
	return o
}

// ours tells whether domain is one of the configured domains or below one.
func (in *Intake) ours(domain string) bool {
	for _, d := range in.cfg.Domains {
		if domain == d || strings.HasSuffix(domain, "."+d) {
			return true
		}
	}
	return false
}

// countRefusal counts a refusal in the metrics and in the store's per-day
// counters (a failure to count is logged, not returned: the refusal
// stands).
func (in *Intake) countRefusal(ctx context.Context, o *Outcome, origin string) {
	in.cfg.Metrics.ReportRefused(o.Reason)
	in.cfg.Logger.Info("intake: report refused", "origin", origin, "reason", o.Reason, "detail", o.Detail)
	if err := in.st.AddRefusals(ctx, in.cfg.Now(), map[string]int64{string(o.Reason): 1}); err != nil {
		in.cfg.Logger.Warn("intake: refusal not counted", "reason", o.Reason, "err", err)
	}
}

func sumCounts(rows []store.ReceivedRow) int64 {
	var n int64
	for _, r := range rows {
		n += r.Count
	}
	return n
}

// errTooMany is a count the store cannot hold.
var errTooMany = errors.New("intake: count over 2^63-1")

// toStore maps a parsed report onto the store's plain values: enumeration
// values as read (pkg/report lower-cases them and keeps unknown ones),
// domains in lower case, each record's count spread over UTC days.
func toStore(f *report.Feedback, domain, origin string) (*store.ReceivedReport, error) {
	m, pp := &f.Metadata, &f.PolicyPublished
	rep := &store.ReceivedReport{
		OrgName: strings.TrimSpace(m.OrgName), Email: strings.TrimSpace(m.Email),
		ReportID: strings.TrimSpace(m.ReportID), Domain: domain,
		Begin: m.DateRange.Begin.UTC(), End: m.DateRange.End.UTC(),
		Policy: store.Policy{Domain: domain, P: string(pp.P), SP: string(pp.SP), NP: string(pp.NP),
			ADKIM: string(pp.ADKIM), ASPF: string(pp.ASPF), FO: pp.FO, Testing: string(pp.Testing),
			DiscoveryMethod: string(pp.DiscoveryMethod)},
		Errors: m.Errors, Origin: origin,
		Rows: make([]store.ReceivedRow, 0, len(f.Records)),
	}
	for i := range f.Records {
		row, err := toStoreRow(&f.Records[i], m.DateRange)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i+1, err)
		}
		rep.Rows = append(rep.Rows, row)
	}
	return rep, nil
}

func toStoreRow(r *report.Record, dr report.DateRange) (store.ReceivedRow, error) {
	if r.Row.Count > math.MaxInt64 {
		return store.ReceivedRow{}, errTooMany
	}
	pe := &r.Row.PolicyEvaluated
	row := store.ReceivedRow{
		SourceIP: r.Row.SourceIP.Unmap(), Count: int64(r.Row.Count),
		Disposition: string(pe.Disposition), DKIMAligned: string(pe.DKIM), SPFAligned: string(pe.SPF),
		HeaderFrom:   lowerDomain(r.Identifiers.HeaderFrom),
		EnvelopeFrom: lowerDomain(r.Identifiers.EnvelopeFrom),
		EnvelopeTo:   lowerDomain(r.Identifiers.EnvelopeTo),
	}
	for _, x := range pe.Reasons {
		row.Reasons = append(row.Reasons, store.Reason{Type: string(x.Type), Comment: x.Comment})
	}
	for _, d := range r.AuthResults.DKIM {
		row.DKIM = append(row.DKIM, store.DKIMResult{Domain: lowerDomain(d.Domain), Selector: strings.ToLower(d.Selector),
			Result: string(d.Result), HumanResult: d.HumanResult})
	}
	if s := r.AuthResults.SPF; s != nil {
		row.SPF = &store.SPFResult{Domain: lowerDomain(s.Domain), Scope: string(s.Scope), Result: string(s.Result)}
	}
	for _, d := range report.SpreadDays(dr, r.Row.Count) {
		row.Days = append(row.Days, store.DayCount{Day: d.Day, Count: int64(d.Count)})
	}
	return row, nil
}

func lowerDomain(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}
