package report

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Errors of Marshal and the message builder.
var (
	// ErrInvalid: the report holds a value the RFC 9990 schema does not
	// allow (an unknown enumeration value, a missing required value); the
	// wrapped text names the field.
	ErrInvalid = errors.New("report: invalid report")
	// ErrLimitTooSmall: WriteLimits leave no room for a single record, and
	// a report needs at least one (RFC 9990 §3.1.1.2,
	// https://datatracker.ietf.org/doc/html/rfc9990#section-3.1.1.2).
	ErrLimitTooSmall = errors.New("report: size limit leaves no room for a record")
)

// MaxDKIMPerRow is how many DKIM results Marshal writes per record at most
// (RFC 9990 §3.1.3: no more than 100 signatures for a given row).
const MaxDKIMPerRow = 100

// WriteLimits bound the report MarshalLimited writes. Zero fields are no
// bound.
type WriteLimits struct {
	// MaxBytes bounds the size of the serialized XML document.
	MaxBytes int
	// MaxRecords bounds the number of record elements.
	MaxRecords int
}

// Omitted is what a bounded report left out: records, and the messages
// they counted. The zero value means the report is complete.
type Omitted struct {
	Records  int
	Messages uint64
}

// Marshal writes f as an RFC 9990 aggregate report: XML in Namespace,
// version 1.0, children in the order of the schema (RFC 9990 Appendix A),
// two-space indentation, valid against the RFC 9990 XSD. It refuses values
// the schema does not know (ErrInvalid), so that nothing invalid leaves
// the host.
func Marshal(f *Feedback) ([]byte, error) {
	b, _, err := MarshalLimited(f, WriteLimits{})
	return b, err
}

// MarshalLimited is Marshal with a bound on the document's size or record
// count. When the report does not fit, it keeps the records with the
// highest counts (then the earlier ones), writes them in their original
// order, says so in the report's error element (RFC 9990 §3.1.5), and
// returns what it left out: a report never drops rows silently.
func MarshalLimited(f *Feedback, lim WriteLimits) ([]byte, Omitted, error) {
	if err := checkWritable(f); err != nil {
		return nil, Omitted{}, err
	}
	recs := make([][]byte, len(f.Records))
	var total uint64
	for i := range f.Records {
		b, err := encodeIndented(wireRecordOf(&f.Records[i]), "record")
		if err != nil {
			return nil, Omitted{}, err
		}
		recs[i] = b
		total += f.Records[i].Row.Count
	}
	head, err := encodeHead(f, "")
	if err != nil {
		return nil, Omitted{}, err
	}
	if fits(lim, len(head), recs, len(recs)) {
		return assemble(head, recs, nil), Omitted{}, nil
	}
	// The error text is longest when everything is left out: reserve that.
	worst, err := encodeHead(f, truncationText(len(recs), len(recs), total, total))
	if err != nil {
		return nil, Omitted{}, err
	}
	keep := choose(f.Records, recs, lim, len(worst))
	if len(keep) == 0 {
		return nil, Omitted{}, ErrLimitTooSmall
	}
	var om Omitted
	om.Records = len(recs) - len(keep)
	var kept uint64
	for i := range keep {
		kept += f.Records[i].Row.Count
	}
	om.Messages = total - kept
	head, err = encodeHead(f, truncationText(om.Records, len(recs), om.Messages, total))
	if err != nil {
		return nil, Omitted{}, err
	}
	return assemble(head, recs, keep), om, nil
}

func truncationText(left, all int, leftMsgs, allMsgs uint64) string {
	return fmt.Sprintf("report truncated by the reporter's size limit: %d of %d records (%d of %d messages) left out",
		left, all, leftMsgs, allMsgs)
}

const docTail = "</feedback>\n"

func fits(lim WriteLimits, head int, recs [][]byte, n int) bool {
	if lim.MaxRecords > 0 && n > lim.MaxRecords {
		return false
	}
	if lim.MaxBytes <= 0 {
		return true
	}
	size := head + len(docTail)
	for _, r := range recs {
		size += len(r) + 1
	}
	return size <= lim.MaxBytes
}

// choose picks the records to keep within lim, highest counts first; a
// record too big for the space left is skipped and smaller ones still
// tried.
func choose(records []Record, recs [][]byte, lim WriteLimits, head int) map[int]bool {
	order := make([]int, len(records))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		return records[order[a]].Row.Count > records[order[b]].Row.Count
	})
	budget := -1
	if lim.MaxBytes > 0 {
		budget = lim.MaxBytes - head - len(docTail)
	}
	keep := make(map[int]bool)
	for _, i := range order {
		if lim.MaxRecords > 0 && len(keep) >= lim.MaxRecords {
			break
		}
		need := len(recs[i]) + 1
		if budget >= 0 && need > budget {
			continue
		}
		if budget >= 0 {
			budget -= need
		}
		keep[i] = true
	}
	return keep
}

func assemble(head []byte, recs [][]byte, keep map[int]bool) []byte {
	var b bytes.Buffer
	b.Write(head)
	for i, r := range recs {
		if keep != nil && !keep[i] {
			continue
		}
		b.Write(r)
		b.WriteByte('\n')
	}
	b.WriteString(docTail)
	return b.Bytes()
}

// encodeHead writes everything before the first record; extraError is
// added to the metadata's errors.
func encodeHead(f *Feedback, extraError string) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	b.WriteString(`<feedback xmlns="` + Namespace + `">` + "\n")
	// RFC 9990 §3.1.1.2: version MUST have the value 1.0.
	b.WriteString("  <version>" + Version + "</version>\n")
	md, err := encodeIndented(wireMetadataOf(&f.Metadata, extraError), "report_metadata")
	if err != nil {
		return nil, err
	}
	b.Write(md)
	b.WriteByte('\n')
	pp, err := encodeIndented(wirePolicyOf(&f.PolicyPublished), "policy_published")
	if err != nil {
		return nil, err
	}
	b.Write(pp)
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// encodeIndented encodes v as one child of feedback: indented one level.
func encodeIndented(v any, name string) ([]byte, error) {
	var b bytes.Buffer
	enc := xml.NewEncoder(&b)
	enc.Indent("  ", "  ")
	if err := enc.EncodeElement(v, xml.StartElement{Name: xml.Name{Local: name}}); err != nil {
		return nil, fmt.Errorf("report: encoding %s: %w", name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("report: encoding %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// The wire types give the element names and the order of the XSD
// (RFC 9990 Appendix A); the public types stay free of encoding details.
type wMetadata struct {
	OrgName          string     `xml:"org_name"`
	Email            string     `xml:"email"`
	ExtraContactInfo string     `xml:"extra_contact_info,omitempty"`
	ReportID         string     `xml:"report_id"`
	DateRange        wDateRange `xml:"date_range"`
	Error            string     `xml:"error,omitempty"`
	Generator        string     `xml:"generator,omitempty"`
}

type wDateRange struct {
	Begin int64 `xml:"begin"`
	End   int64 `xml:"end"`
}

type wPolicy struct {
	Domain          string `xml:"domain"`
	P               string `xml:"p"`
	SP              string `xml:"sp,omitempty"`
	NP              string `xml:"np,omitempty"`
	ADKIM           string `xml:"adkim,omitempty"`
	ASPF            string `xml:"aspf,omitempty"`
	DiscoveryMethod string `xml:"discovery_method,omitempty"`
	FO              string `xml:"fo,omitempty"`
	Testing         string `xml:"testing,omitempty"`
}

type wRecord struct {
	Row         wRow         `xml:"row"`
	Identifiers wIdentifiers `xml:"identifiers"`
	AuthResults wAuthResults `xml:"auth_results"`
}

type wRow struct {
	SourceIP        string           `xml:"source_ip"`
	Count           uint64           `xml:"count"`
	PolicyEvaluated wPolicyEvaluated `xml:"policy_evaluated"`
}

type wPolicyEvaluated struct {
	Disposition string    `xml:"disposition"`
	DKIM        string    `xml:"dkim"`
	SPF         string    `xml:"spf"`
	Reasons     []wReason `xml:"reason"`
}

type wReason struct {
	Type    string `xml:"type"`
	Comment string `xml:"comment,omitempty"`
}

type wIdentifiers struct {
	HeaderFrom   string `xml:"header_from"`
	EnvelopeFrom string `xml:"envelope_from"`
	EnvelopeTo   string `xml:"envelope_to,omitempty"`
}

type wAuthResults struct {
	DKIM []wDKIM `xml:"dkim"`
	SPF  *wSPF   `xml:"spf"`
}

type wDKIM struct {
	Domain      string `xml:"domain"`
	Selector    string `xml:"selector"`
	Result      string `xml:"result"`
	HumanResult string `xml:"human_result,omitempty"`
}

type wSPF struct {
	Domain      string `xml:"domain"`
	Scope       string `xml:"scope,omitempty"`
	Result      string `xml:"result"`
	HumanResult string `xml:"human_result,omitempty"`
}

func wireMetadataOf(m *Metadata, extraError string) wMetadata {
	errs := m.Errors
	if extraError != "" {
		errs = append(errs[:len(errs):len(errs)], extraError)
	}
	return wMetadata{
		OrgName:          m.OrgName,
		Email:            m.Email,
		ExtraContactInfo: m.ExtraContactInfo,
		ReportID:         m.ReportID,
		DateRange:        wDateRange{Begin: m.DateRange.Begin.Unix(), End: m.DateRange.End.Unix()},
		// RFC 9990 §3.1.1.3: one error element at most.
		Error:     strings.Join(errs, "; "),
		Generator: m.Generator,
	}
}

func wirePolicyOf(p *PolicyPublished) wPolicy {
	return wPolicy{
		Domain: p.Domain, P: string(p.P), SP: string(p.SP), NP: string(p.NP),
		ADKIM: string(p.ADKIM), ASPF: string(p.ASPF),
		DiscoveryMethod: string(p.DiscoveryMethod), FO: p.FO, Testing: string(p.Testing),
	}
}

func wireRecordOf(r *Record) wRecord {
	w := wRecord{
		Row: wRow{
			SourceIP: r.Row.SourceIP.Unmap().WithZone("").String(),
			Count:    r.Row.Count,
			PolicyEvaluated: wPolicyEvaluated{
				Disposition: string(r.Row.PolicyEvaluated.Disposition),
				DKIM:        string(r.Row.PolicyEvaluated.DKIM),
				SPF:         string(r.Row.PolicyEvaluated.SPF),
			},
		},
		Identifiers: wIdentifiers{
			HeaderFrom:   r.Identifiers.HeaderFrom,
			EnvelopeFrom: r.Identifiers.EnvelopeFrom,
			EnvelopeTo:   r.Identifiers.EnvelopeTo,
		},
	}
	for _, rs := range r.Row.PolicyEvaluated.Reasons {
		w.Row.PolicyEvaluated.Reasons = append(w.Row.PolicyEvaluated.Reasons, wReason{Type: string(rs.Type), Comment: rs.Comment})
	}
	for _, d := range dkimForWrite(r.AuthResults.DKIM) {
		w.AuthResults.DKIM = append(w.AuthResults.DKIM, wDKIM{Domain: d.Domain, Selector: d.Selector, Result: string(d.Result), HumanResult: d.HumanResult})
	}
	if s := r.AuthResults.SPF; s != nil {
		w.AuthResults.SPF = &wSPF{Domain: s.Domain, Scope: string(s.Scope), Result: string(s.Result), HumanResult: s.HumanResult}
	}
	return w
}

// dkimForWrite applies RFC 9990 §3.1.3's bound of 100 signatures per row:
// passing signatures first (the caller orders them by alignment, which
// needs the Organizational Domain this package does not look up), then the
// others, each group in the caller's order.
func dkimForWrite(all []DKIMAuth) []DKIMAuth {
	if len(all) <= MaxDKIMPerRow {
		return all
	}
	out := make([]DKIMAuth, 0, MaxDKIMPerRow)
	for _, pass := range []bool{true, false} {
		for _, d := range all {
			if (d.Result == DKIMPass) == pass && len(out) < MaxDKIMPerRow {
				out = append(out, d)
			}
		}
	}
	return out
}

// checkWritable refuses what the RFC 9990 XSD would refuse, naming the
// field.
func checkWritable(f *Feedback) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, a...)...)
	}
	m := &f.Metadata
	switch {
	case m.OrgName == "":
		return bad("empty org_name")
	case m.Email == "":
		return bad("empty email")
	case !ValidReportID(m.ReportID):
		return bad("report_id %q is not in dot-atom form (RFC 9990 §3.5.1)", m.ReportID)
	case !m.DateRange.Begin.Before(m.DateRange.End):
		return bad("date_range begin %v not before end %v", m.DateRange.Begin, m.DateRange.End)
	}
	p := &f.PolicyPublished
	switch {
	case p.Domain == "":
		return bad("empty policy_published domain")
	case !p.P.Known():
		return bad("p %q", p.P)
	case p.SP != "" && !p.SP.Known():
		return bad("sp %q", p.SP)
	case p.NP != "" && !p.NP.Known():
		return bad("np %q", p.NP)
	case p.ADKIM != "" && !p.ADKIM.Known():
		return bad("adkim %q", p.ADKIM)
	case p.ASPF != "" && !p.ASPF.Known():
		return bad("aspf %q", p.ASPF)
	case p.DiscoveryMethod != "" && !p.DiscoveryMethod.Known():
		return bad("discovery_method %q", p.DiscoveryMethod)
	case p.Testing != "" && !p.Testing.Known():
		return bad("testing %q", p.Testing)
	}
	// RFC 9990 §3.1.1.2: there MUST be at least one record element.
	if len(f.Records) == 0 {
		return bad("no records")
	}
	for i := range f.Records {
		if err := checkRecord(&f.Records[i]); err != nil {
			return bad("record %d: %v", i, err)
		}
	}
	return nil
}

func checkRecord(r *Record) error {
	pe := &r.Row.PolicyEvaluated
	switch {
	case !r.Row.SourceIP.IsValid():
		return errors.New("no source_ip")
	case !pe.Disposition.Known():
		return fmt.Errorf("disposition %q", pe.Disposition)
	case !pe.DKIM.Known():
		return fmt.Errorf("policy_evaluated dkim %q", pe.DKIM)
	case !pe.SPF.Known():
		return fmt.Errorf("policy_evaluated spf %q", pe.SPF)
	case r.Identifiers.HeaderFrom == "":
		return errors.New("empty header_from")
	}
	for _, rs := range pe.Reasons {
		// RFC 9990 §3.1.6: the type MUST be one of the pre-defined values.
		if !rs.Type.Known() {
			return fmt.Errorf("reason type %q", rs.Type)
		}
	}
	for _, d := range r.AuthResults.DKIM {
		if d.Domain == "" || !d.Result.Known() {
			return fmt.Errorf("dkim result %q for domain %q", d.Result, d.Domain)
		}
	}
	if s := r.AuthResults.SPF; s != nil {
		if s.Domain == "" && s.Result != SPFNone || !s.Result.Known() {
			return fmt.Errorf("spf result %q for domain %q", s.Result, s.Domain)
		}
		if s.Scope != "" && !s.Scope.Known() {
			return fmt.Errorf("spf scope %q", s.Scope)
		}
	}
	return nil
}
