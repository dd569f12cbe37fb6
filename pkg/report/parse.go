package report

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Parse reads one aggregate report XML document: RFC 9990's namespace,
// RFC 7489's, or none. It is strict on structure (the root is feedback;
// report_metadata, policy_published and at least one record, each with
// their required elements) and tolerant of values: text is trimmed,
// enumeration values are lowercased and kept even when the schema does not
// know them (see the Known methods), optional elements may be missing,
// unknown elements and extensions are skipped (RFC 9990 §3.2,
// https://datatracker.ietf.org/doc/html/rfc9990#section-3.2). A record
// with a count of 0 (the "null reports" some receivers send) is skipped,
// so Records may be empty.
//
// It reads as a stream: memory is bounded by Limits (the document's size,
// the records kept, the size of one token), never by what the document
// claims. A DOCTYPE is refused: encoding/xml expands no entities anyway,
// and a report has no use for one (RFC 9990 §8.1: XML bombs). Every error
// is a *RefusalError.
func Parse(r io.Reader, lim Limits) (*Feedback, error) {
	lim = lim.withDefaults()
	return parseXML(newLimitReader(r, lim.MaxInputBytes, RefusalTooLarge), lim)
}

// parseXML parses from lr, whose limit is already set by the caller.
func parseXML(lr *limitReader, lim Limits) (*Feedback, error) {
	lr.checkUTF8 = true
	raw := xml.NewDecoder(lr)
	raw.Strict = true
	raw.CharsetReader = charsetReader
	g := &guard{d: raw, lim: &lim}
	p := &parser{d: xml.NewTokenDecoder(g), g: g, lr: lr, lim: &lim}
	f, err := p.document()
	if err != nil {
		return nil, p.refusal(err)
	}
	return f, nil
}

// charsetReader accepts the declared encodings that are UTF-8 by another
// name; anything else is refused (a report is UTF-8 in practice).
func charsetReader(label string, in io.Reader) (io.Reader, error) {
	switch strings.ToLower(label) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return in, nil
	}
	return nil, refuse(RefusalEncoding, fmt.Sprintf("declared encoding %.40q", label), nil)
}

// guard sits between the raw decoder and the one that decodes elements
// into structs, and enforces the limits on depth and token sizes.
type guard struct {
	d     *xml.Decoder
	lim   *Limits
	depth int
	// inChild counts the elements in the current child of feedback.
	inChild int
	err     error
}

func (g *guard) Token() (xml.Token, error) {
	if g.err != nil {
		return nil, g.err
	}
	tok, err := g.d.Token()
	if err != nil {
		g.err = err
		return nil, err
	}
	switch t := tok.(type) {
	case xml.StartElement:
		g.depth++
		if g.depth > g.lim.MaxDepth {
			g.err = refuse(RefusalTooDeep, fmt.Sprintf("elements nested deeper than %d", g.lim.MaxDepth), nil)
		}
		if g.depth == 2 {
			g.inChild = 0
		}
		if g.inChild++; g.inChild > g.lim.MaxChildElements {
			g.err = refuse(RefusalTooManyElements, fmt.Sprintf("more than %d elements in one %.40q", g.lim.MaxChildElements, t.Name.Local), nil)
		}
		if len(t.Name.Local)+len(t.Name.Space) > g.lim.MaxTokenBytes {
			g.err = refuse(RefusalTokenTooLarge, fmt.Sprintf("element name of %d bytes", len(t.Name.Local)+len(t.Name.Space)), nil)
		}
		if len(t.Attr) > g.lim.MaxAttrs {
			g.err = refuse(RefusalTokenTooLarge, fmt.Sprintf("element %.40q has %d attributes", t.Name.Local, len(t.Attr)), nil)
		}
		for _, a := range t.Attr {
			if n := len(a.Value) + len(a.Name.Local) + len(a.Name.Space); n > g.lim.MaxTokenBytes {
				g.err = refuse(RefusalTokenTooLarge, fmt.Sprintf("attribute of %d bytes", n), nil)
			}
		}
	case xml.EndElement:
		g.depth--
	case xml.CharData:
		if len(t) > g.lim.MaxTokenBytes {
			g.err = refuse(RefusalTokenTooLarge, fmt.Sprintf("text of %d bytes", len(t)), nil)
		}
	case xml.Comment:
		if len(t) > g.lim.MaxTokenBytes {
			g.err = refuse(RefusalTokenTooLarge, fmt.Sprintf("comment of %d bytes", len(t)), nil)
		}
	case xml.ProcInst:
		if len(t.Inst)+len(t.Target) > g.lim.MaxTokenBytes {
			g.err = refuse(RefusalTokenTooLarge, fmt.Sprintf("processing instruction of %d bytes", len(t.Inst)), nil)
		}
	case xml.Directive:
		g.err = refuse(RefusalDTD, "a DOCTYPE or other declaration", nil)
	}
	if g.err != nil {
		return nil, g.err
	}
	return tok, nil
}

type parser struct {
	d       *xml.Decoder
	g       *guard
	lr      *limitReader
	lim     *Limits
	records int // record elements seen, kept or not
}

// refusal turns any error of the decoders into a *RefusalError. A
// refusal of the reader (a size limit, bad UTF-8) comes first: the
// decoder may have reported its consequence (a truncated text) instead.
func (p *parser) refusal(err error) error {
	var re *RefusalError
	switch {
	case errors.As(p.lr.err, &re):
		return re
	case errors.As(err, &re):
		return re
	case errors.As(p.g.err, &re):
		return re
	}
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return refuse(RefusalMalformedXML, "", err)
	}
	if errors.Is(err, io.EOF) {
		return refuse(RefusalMalformedXML, "unexpected end of the document", nil)
	}
	return refuse(RefusalRead, "", err)
}

// document reads the prolog, the root element and its children.
func (p *parser) document() (*Feedback, error) {
	root, err := p.root()
	if err != nil {
		return nil, err
	}
	switch root.Name.Space {
	case Namespace, NamespaceRFC7489, "":
	default:
		return nil, refuse(RefusalNotFeedback, fmt.Sprintf("root element in namespace %.80q", root.Name.Space), nil)
	}
	f := &Feedback{}
	var seenMeta, seenPolicy, seenRecord bool
	for {
		tok, err := p.d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.EndElement: // of feedback: the decoder checks the nesting
			if err := requireTop(seenMeta, seenPolicy, seenRecord); err != nil {
				return nil, err
			}
			return f, p.trailer()
		case xml.StartElement:
			switch t.Name.Local {
			case "version":
				var v string
				if err := p.d.DecodeElement(&v, &t); err != nil {
					return nil, err
				}
				f.Version = strings.TrimSpace(v)
			case "report_metadata":
				if seenMeta {
					return nil, refuse(RefusalDuplicate, "report_metadata twice", nil)
				}
				seenMeta = true
				if err := p.metadata(&t, &f.Metadata); err != nil {
					return nil, err
				}
			case "policy_published":
				if seenPolicy {
					return nil, refuse(RefusalDuplicate, "policy_published twice", nil)
				}
				seenPolicy = true
				if err := p.policy(&t, &f.PolicyPublished); err != nil {
					return nil, err
				}
			case "record":
				seenRecord = true
				if err := p.record(&t, f); err != nil {
					return nil, err
				}
			default:
				// RFC 9990 §3.2: extensions SHOULD NOT create an error.
				if err := p.d.Skip(); err != nil {
					return nil, err
				}
			}
		}
	}
}

// root returns the root element, refusing documents without one.
func (p *parser) root() (xml.StartElement, error) {
	for {
		tok, err := p.d.Token()
		if errors.Is(err, io.EOF) {
			return xml.StartElement{}, refuse(RefusalNotXML, "no XML element", nil)
		}
		if err != nil {
			return xml.StartElement{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Local != "feedback" {
				return t, refuse(RefusalNotFeedback, fmt.Sprintf("root element %.40q", t.Name.Local), nil)
			}
			return t, nil
		case xml.CharData:
			// A byte order mark reaches us as text: encoding/xml keeps it.
			if len(bytes.Trim(t, " \t\r\n\ufeff")) > 0 {
				return xml.StartElement{}, refuse(RefusalNotXML, "text before the root element", nil)
			}
		}
	}
}

// trailer reads what follows the root element: only comments, processing
// instructions and white space may.
func (p *parser) trailer() error {
	for {
		tok, err := p.d.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return refuse(RefusalMalformedXML, "a second root element", nil)
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return refuse(RefusalMalformedXML, "text after the root element", nil)
			}
		}
	}
}

func requireTop(meta, policy, record bool) error {
	switch {
	case !meta:
		return missing("report_metadata")
	case !policy:
		return missing("policy_published")
	case !record: // RFC 9990 §3.1.1.2: at least one record
		return missing("record")
	}
	return nil
}

func missing(what string) error {
	return refuse(RefusalMissingElement, what, nil)
}

// The read types mark required elements with pointers, to tell an absent
// element from an empty one. Tags carry no namespace, so that they match
// in every namespace (RFC 9990, RFC 7489, none).
type rMetadata struct {
	OrgName          *string     `xml:"org_name"`
	Email            *string     `xml:"email"`
	ExtraContactInfo string      `xml:"extra_contact_info"`
	ReportID         *string     `xml:"report_id"`
	DateRange        *rDateRange `xml:"date_range"`
	Errors           []string    `xml:"error"`
	Generator        string      `xml:"generator"`
}

type rDateRange struct {
	Begin *string `xml:"begin"`
	End   *string `xml:"end"`
}

type rPolicy struct {
	Domain          *string `xml:"domain"`
	P               *string `xml:"p"`
	SP              string  `xml:"sp"`
	NP              string  `xml:"np"`
	ADKIM           string  `xml:"adkim"`
	ASPF            string  `xml:"aspf"`
	DiscoveryMethod string  `xml:"discovery_method"`
	FO              string  `xml:"fo"`
	Testing         string  `xml:"testing"`
}

type rRecord struct {
	Row         *rRow         `xml:"row"`
	Identifiers *rIdentifiers `xml:"identifiers"`
	AuthResults *rAuthResults `xml:"auth_results"`
}

type rRow struct {
	SourceIP        *string           `xml:"source_ip"`
	Count           *string           `xml:"count"`
	PolicyEvaluated *rPolicyEvaluated `xml:"policy_evaluated"`
}

type rPolicyEvaluated struct {
	Disposition *string   `xml:"disposition"`
	DKIM        *string   `xml:"dkim"`
	SPF         *string   `xml:"spf"`
	Reasons     []rReason `xml:"reason"`
}

type rReason struct {
	Type    string `xml:"type"`
	Comment string `xml:"comment"`
}

type rIdentifiers struct {
	HeaderFrom   *string `xml:"header_from"`
	EnvelopeFrom string  `xml:"envelope_from"`
	EnvelopeTo   string  `xml:"envelope_to"`
}

type rAuthResults struct {
	DKIM []rDKIM `xml:"dkim"`
	SPF  []rSPF  `xml:"spf"`
}

type rDKIM struct {
	Domain      string `xml:"domain"`
	Selector    string `xml:"selector"`
	Result      string `xml:"result"`
	HumanResult string `xml:"human_result"`
}

type rSPF struct {
	Domain      string `xml:"domain"`
	Scope       string `xml:"scope"`
	Result      string `xml:"result"`
	HumanResult string `xml:"human_result"`
}

func (p *parser) metadata(start *xml.StartElement, m *Metadata) error {
	var w rMetadata
	if err := p.d.DecodeElement(&w, start); err != nil {
		return err
	}
	switch {
	case w.OrgName == nil:
		return missing("report_metadata/org_name")
	case w.Email == nil:
		return missing("report_metadata/email")
	case w.ReportID == nil || strings.TrimSpace(*w.ReportID) == "":
		return missing("report_metadata/report_id")
	case w.DateRange == nil || w.DateRange.Begin == nil || w.DateRange.End == nil:
		return missing("report_metadata/date_range")
	}
	begin, err := parseEpoch("begin", *w.DateRange.Begin)
	if err != nil {
		return err
	}
	end, err := parseEpoch("end", *w.DateRange.End)
	if err != nil {
		return err
	}
	*m = Metadata{
		OrgName:          trim(*w.OrgName),
		Email:            trim(*w.Email),
		ExtraContactInfo: trim(w.ExtraContactInfo),
		ReportID:         trim(*w.ReportID),
		DateRange:        DateRange{Begin: begin, End: end},
		Generator:        trim(w.Generator),
	}
	for _, e := range w.Errors {
		if e = trim(e); e != "" {
			m.Errors = append(m.Errors, e)
		}
	}
	return nil
}

func (p *parser) policy(start *xml.StartElement, pp *PolicyPublished) error {
	var w rPolicy
	if err := p.d.DecodeElement(&w, start); err != nil {
		return err
	}
	switch {
	case w.Domain == nil || trim(*w.Domain) == "":
		return missing("policy_published/domain")
	case w.P == nil:
		return missing("policy_published/p")
	}
	*pp = PolicyPublished{
		Domain:          trim(*w.Domain),
		P:               Disposition(enum(*w.P)),
		SP:              Disposition(enum(w.SP)),
		NP:              Disposition(enum(w.NP)),
		ADKIM:           Alignment(enum(w.ADKIM)),
		ASPF:            Alignment(enum(w.ASPF)),
		DiscoveryMethod: DiscoveryMethod(enum(w.DiscoveryMethod)),
		FO:              trim(w.FO),
		Testing:         Testing(enum(w.Testing)),
	}
	return nil
}

func (p *parser) record(start *xml.StartElement, f *Feedback) error {
	p.records++
	if p.records > p.lim.MaxRecords {
		return refuse(RefusalTooManyRecords, fmt.Sprintf("more than %d records", p.lim.MaxRecords), nil)
	}
	var w rRecord
	if err := p.d.DecodeElement(&w, start); err != nil {
		return err
	}
	if w.Row == nil {
		return missing("record/row")
	}
	if w.Row.Count == nil {
		return missing("record/row/count")
	}
	n, err := strconv.ParseUint(trim(*w.Row.Count), 10, 64)
	if err != nil {
		return refuse(RefusalBadValue, fmt.Sprintf("count %.40q", *w.Row.Count), nil)
	}
	if n == 0 {
		return nil // a "null report" record: nothing to count
	}
	rec, err := convertRecord(&w, n, p.lim)
	if err != nil {
		return err
	}
	f.Records = append(f.Records, rec)
	return nil
}

func convertRecord(w *rRecord, count uint64, lim *Limits) (Record, error) {
	switch {
	case w.Row.SourceIP == nil:
		return Record{}, missing("record/row/source_ip")
	case w.Row.PolicyEvaluated == nil:
		return Record{}, missing("record/row/policy_evaluated")
	case w.Row.PolicyEvaluated.Disposition == nil:
		return Record{}, missing("record/row/policy_evaluated/disposition")
	case w.Row.PolicyEvaluated.DKIM == nil:
		return Record{}, missing("record/row/policy_evaluated/dkim")
	case w.Row.PolicyEvaluated.SPF == nil:
		return Record{}, missing("record/row/policy_evaluated/spf")
	case w.Identifiers == nil:
		return Record{}, missing("record/identifiers")
	case w.Identifiers.HeaderFrom == nil:
		return Record{}, missing("record/identifiers/header_from")
	case w.AuthResults == nil:
		return Record{}, missing("record/auth_results")
	case len(w.AuthResults.DKIM) > lim.MaxDKIMPerRecord:
		return Record{}, refuse(RefusalTooManyElements, fmt.Sprintf("%d dkim results in one record", len(w.AuthResults.DKIM)), nil)
	}
	addr, err := netip.ParseAddr(trim(*w.Row.SourceIP))
	if err != nil || addr.Zone() != "" {
		return Record{}, refuse(RefusalBadValue, fmt.Sprintf("source_ip %.60q", *w.Row.SourceIP), nil)
	}
	pe := w.Row.PolicyEvaluated
	r := Record{
		Row: Row{
			SourceIP: addr.Unmap(),
			Count:    count,
			PolicyEvaluated: PolicyEvaluated{
				Disposition: ActionDisposition(enum(*pe.Disposition)),
				DKIM:        DMARCResult(enum(*pe.DKIM)),
				SPF:         DMARCResult(enum(*pe.SPF)),
			},
		},
		Identifiers: Identifiers{
			HeaderFrom:   trim(*w.Identifiers.HeaderFrom),
			EnvelopeFrom: trim(w.Identifiers.EnvelopeFrom),
			EnvelopeTo:   trim(w.Identifiers.EnvelopeTo),
		},
	}
	for _, rs := range pe.Reasons {
		r.Row.PolicyEvaluated.Reasons = append(r.Row.PolicyEvaluated.Reasons,
			Reason{Type: ReasonType(enum(rs.Type)), Comment: trim(rs.Comment)})
	}
	for _, d := range w.AuthResults.DKIM {
		r.AuthResults.DKIM = append(r.AuthResults.DKIM, DKIMAuth{
			Domain: trim(d.Domain), Selector: trim(d.Selector), Result: DKIMResult(enum(d.Result)), HumanResult: trim(d.HumanResult),
		})
	}
	r.AuthResults.SPF = pickSPF(w.AuthResults.SPF)
	return r, nil
}

// pickSPF keeps the mfrom result of RFC 7489 documents that list several
// (helo and mfrom); RFC 9990 allows one.
func pickSPF(all []rSPF) *SPFAuth {
	if len(all) == 0 {
		return nil
	}
	pick := all[0]
	for _, s := range all {
		if SPFScope(enum(s.Scope)) == SPFScopeMailFrom {
			pick = s
			break
		}
	}
	return &SPFAuth{Domain: trim(pick.Domain), Scope: SPFScope(enum(pick.Scope)), Result: SPFResult(enum(pick.Result)), HumanResult: trim(pick.HumanResult)}
}

func trim(s string) string { return strings.TrimSpace(s) }

// enum is the tolerant reading of an enumeration value: trimmed and
// lowercased ("temperror " and "Pass" are known values), otherwise kept.
func enum(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// parseEpoch reads a date_range bound: seconds since the epoch
// (RFC 9990 §3.1.1.4). A fraction, which some reporters write, is dropped.
func parseEpoch(name, s string) (time.Time, error) {
	s = trim(s)
	if i := strings.IndexByte(s, '.'); i > 0 && strings.Trim(s[i+1:], "0123456789") == "" {
		s = s[:i]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	// Beyond ±1e13 seconds (300 000 years) time.Time arithmetic gets odd;
	// Validate refuses such ranges anyway.
	if err != nil || n > 1e13 || n < -1e13 {
		return time.Time{}, refuse(RefusalBadValue, fmt.Sprintf("date_range %s %.40q", name, s), nil)
	}
	return time.Unix(n, 0).UTC(), nil
}
