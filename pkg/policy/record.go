package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Disposition is a Domain Owner Assessment Policy value (the p, sp and np
// tags) and the handling a receiver applies: RFC 9989 §4.7, the
// DispositionType of RFC 9990.
type Disposition string

// The dispositions. DispositionUnset marks an absent tag in a Record.
const (
	DispositionUnset      Disposition = ""
	DispositionNone       Disposition = "none"
	DispositionQuarantine Disposition = "quarantine"
	DispositionReject     Disposition = "reject"
)

// AlignMode is the adkim/aspf alignment mode (RFC 9989 §4.7).
type AlignMode string

// The alignment modes. AlignUnset marks an absent tag.
const (
	AlignUnset   AlignMode = ""
	AlignRelaxed AlignMode = "r"
	AlignStrict  AlignMode = "s"
)

// PSD is the value of the psd tag (RFC 9989 §4.7).
type PSD string

// The psd values. PSDUnset marks an absent tag; its meaning is PSDUnknown.
const (
	PSDUnset   PSD = ""
	PSDYes     PSD = "y"
	PSDNo      PSD = "n"
	PSDUnknown PSD = "u"
)

// Tag names a DMARC tag that supplies a policy: "p", "sp" or "np".
type Tag string

// The policy tags.
const (
	TagP  Tag = "p"
	TagSP Tag = "sp"
	TagNP Tag = "np"
)

// Errors returned by Parse. Callers classify them with errors.Is.
var (
	// ErrNotDMARC: the TXT string is not a DMARC record (it does not start
	// with the v=DMARC1 tag). Such strings are discarded during discovery.
	ErrNotDMARC = errors.New("policy: not a DMARC record")
	// ErrRecordTooLong: the TXT string exceeds MaxRecordLen.
	ErrRecordTooLong = errors.New("policy: DMARC record too long")
)

// MaxRecordLen bounds the length of a DMARC TXT string that Parse accepts.
// A TXT RRset fits in a 64 KiB DNS message; real records are under 1 KiB.
const MaxRecordLen = 8192

// Record is a parsed DMARC Policy Record. Absent tags hold their Unset value
// (or a false Has* flag); the methods give the effective values with the
// defaults of RFC 9989 §4.7 and RFC 7489 §6.3.
//
// Tags whose value is not valid are not stored; their names are listed in
// Invalid, in the order met, and String writes them back with their raw
// value so that a round trip keeps them invalid.
type Record struct {
	P, SP, NP   Disposition // RFC 9989 §4.7 p, sp, np
	ADKIM, ASPF AlignMode   // RFC 9989 §4.7 adkim, aspf
	PSD         PSD         // RFC 9989 §4.7 psd
	// Testing is t=y; HasT records whether t was present at all.
	Testing, HasT bool
	// RUA and RUF are the syntactically valid reporting URIs, without the
	// obsolete "!size" suffix (RFC 9989 §4.8 obs-dmarc-uri).
	RUA, RUF []string
	// FO is the fo tag's options in order ("0", "1", "d", "s"); nil when
	// absent.
	FO []string
	// Pct is RFC 7489 §6.3 pct (0-100) when HasPct.
	Pct    int
	HasPct bool
	// RF is RFC 7489 §6.3 rf (report formats); nil when absent.
	RF []string
	// RI is RFC 7489 §6.3 ri in seconds when HasRI.
	RI    uint32
	HasRI bool
	// Invalid holds "tag=raw value" for each known tag whose value did not
	// parse. An invalid p, sp or np changes how the record applies (see
	// Applicable).
	Invalid []string
}

// Parse parses one DMARC TXT string (the character-strings of one record
// already concatenated, RFC 9989 §4.5). It is tolerant as RFC 9989 §4.8
// requires: unknown tags are ignored, invalid values fall back to defaults,
// case and white space are accepted where the grammar allows them. It fails
// only when the string is not a DMARC record at all.
func Parse(txt string) (*Record, error) {
	if len(txt) > MaxRecordLen {
		return nil, ErrRecordTooLong
	}
	tags := splitTags(txt)
	// RFC 9989 §4.7 v: MUST be the first tag, value "DMARC1" case-sensitive; else the whole record MUST be ignored.
	if len(tags) == 0 || !strings.EqualFold(tags[0].name, "v") || tags[0].value != "DMARC1" {
		return nil, ErrNotDMARC
	}
	r := &Record{}
	var seen []string
	for _, t := range tags[1:] {
		name := lowerASCII(t.name)
		if contains(seen, name) {
			continue // a repeated tag: the first one counts (RFC 9989 §4.8: syntax errors are ignored)
		}
		seen = append(seen, name)
		r.setTag(name, t.value)
	}
	return r, nil
}

type tagValue struct{ name, value string }

// splitTags splits "name=value; name=value" (RFC 9989 §4.8 dmarc-record,
// dmarc-sep and equals allow white space around ';' and '='). The first
// segment is always returned, so that a broken first tag fails the version
// check; later segments without '=' or with a name that is not 1*ALPHA are
// dropped (RFC 9989 §4.8: syntax errors are ignored).
func splitTags(txt string) []tagValue {
	var out []tagValue
	first := true
	for seg := range strings.SplitSeq(txt, ";") {
		name, value, ok := strings.Cut(seg, "=")
		name, value = trimWSP(name), trimWSP(value)
		if first {
			first = false
			if !ok {
				name = ""
			}
			out = append(out, tagValue{name: name, value: value})
			continue
		}
		if ok && isAlpha(name) {
			out = append(out, tagValue{name: name, value: value})
		}
	}
	return out
}

// trimWSP trims white space (and stray CR/LF) from both ends of s.
func trimWSP(s string) string {
	i, j := 0, len(s)
	for i < j && isWSP(s[i]) {
		i++
	}
	for j > i && isWSP(s[j-1]) {
		j--
	}
	return s[i:j]
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func isAlpha(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// setTag stores one tag. Unknown tags are ignored (RFC 9989 §4.7: "unknown
// tags MUST be ignored").
func (r *Record) setTag(name, value string) {
	ok := true
	switch name {
	case "p":
		r.P, ok = parseDisposition(value)
	case "sp":
		r.SP, ok = parseDisposition(value)
	case "np":
		r.NP, ok = parseDisposition(value)
	case "adkim":
		r.ADKIM, ok = parseAlign(value)
	case "aspf":
		r.ASPF, ok = parseAlign(value)
	case "psd":
		r.PSD, ok = parsePSD(value)
	case "t":
		r.Testing, ok = parseYN(value)
		r.HasT = ok
	case "rua":
		r.RUA, ok = parseURIs(value)
	case "ruf":
		r.RUF, ok = parseURIs(value)
	case "fo":
		r.FO, ok = parseFO(value)
	case "pct":
		r.Pct, ok = parsePct(value)
		r.HasPct = ok
	case "rf":
		r.RF, ok = parseRF(value)
	case "ri":
		r.RI, ok = parseRI(value)
		r.HasRI = ok
	default:
		return
	}
	if !ok {
		r.Invalid = append(r.Invalid, name+"="+value)
	}
}

func parseDisposition(v string) (Disposition, bool) {
	switch d := Disposition(strings.ToLower(v)); d {
	case DispositionNone, DispositionQuarantine, DispositionReject:
		return d, true
	}
	return DispositionUnset, false
}

func parseAlign(v string) (AlignMode, bool) {
	switch a := AlignMode(strings.ToLower(v)); a {
	case AlignRelaxed, AlignStrict:
		return a, true
	}
	return AlignUnset, false
}

func parsePSD(v string) (PSD, bool) {
	switch p := PSD(strings.ToLower(v)); p {
	case PSDYes, PSDNo, PSDUnknown:
		return p, true
	}
	return PSDUnset, false
}

func parseYN(v string) (bool, bool) {
	switch strings.ToLower(v) {
	case "y":
		return true, true
	case "n":
		return false, true
	}
	return false, false
}

// parseURIs keeps the syntactically valid URIs of a dmarc-urilist (RFC 9989
// §4.8); the list is valid when at least one URI is.
func parseURIs(v string) ([]string, bool) {
	var out []string
	for u := range strings.SplitSeq(v, ",") {
		u = trimWSP(u)
		if i := strings.LastIndexByte(u, '!'); i >= 0 && isReportSize(u[i+1:]) {
			u = u[:i] // RFC 9989 §4.8 obs-dmarc-report-size: reporters should ignore it
		}
		if validURI(u) {
			out = append(out, u)
		}
	}
	return out, len(out) > 0
}

// isReportSize matches 1*DIGIT [ "k" / "m" / "g" / "t" ].
func isReportSize(s string) bool {
	s = strings.TrimRight(strings.ToLower(s), "kmgt")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validURI accepts an absolute URI: an RFC 3986 §3.1 scheme, ':', and a
// non-empty rest of printable characters with well-formed percent-encoding,
// without white space, commas or '!' (RFC 9989 §4.8: they MUST be encoded).
func validURI(u string) bool {
	colon := strings.IndexByte(u, ':')
	if colon <= 0 || colon == len(u)-1 || !isScheme(u[:colon]) {
		return false
	}
	rest := u[colon+1:]
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		switch {
		case c <= ' ' || c >= 0x7f || c == ',' || c == '!' || c == ';':
			return false
		case c == '%':
			if i+2 >= len(rest) || !isHex(rest[i+1]) || !isHex(rest[i+2]) {
				return false
			}
		}
	}
	return true
}

// isScheme is RFC 3986 §3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
func isScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if !(c >= 'a' && c <= 'z' || i > 0 && (s[i] >= '0' && s[i] <= '9' || s[i] == '+' || s[i] == '-' || s[i] == '.')) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	c |= 0x20
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f'
}

// parseFO parses dmarc-fo: colon-separated "0", "1", "d", "s" (RFC 9989
// §4.7 fo: "0" and "1" are mutually exclusive).
func parseFO(v string) ([]string, bool) {
	var out []string
	seen := map[string]bool{}
	for o := range strings.SplitSeq(v, ":") {
		o = strings.ToLower(trimWSP(o))
		switch o {
		case "0", "1", "d", "s":
		default:
			return nil, false
		}
		if seen[o] || (o == "0" && seen["1"]) || (o == "1" && seen["0"]) {
			return nil, false
		}
		seen[o] = true
		out = append(out, o)
	}
	return out, true
}

// parsePct parses RFC 7489 §6.3 pct: an integer between 0 and 100.
func parsePct(v string) (int, bool) {
	if v == "" || len(v) > 3 || strings.TrimLeft(v, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n > 100 {
		return 0, false
	}
	return n, true
}

// parseRF parses RFC 7489 §6.3 rf: a colon-separated list of report format
// keywords (the registry holds "afrf"; others are kept but unused).
func parseRF(v string) ([]string, bool) {
	var out []string
	for f := range strings.SplitSeq(v, ":") {
		f = strings.ToLower(trimWSP(f))
		if !isKeyword(f) {
			return nil, false
		}
		out = append(out, f)
	}
	return out, true
}

func isKeyword(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0) {
			return false
		}
	}
	return true
}

// parseRI parses RFC 7489 §6.3 ri: a 32-bit unsigned number of seconds.
func parseRI(v string) (uint32, bool) {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || strings.HasPrefix(v, "+") {
		return 0, false
	}
	return uint32(n), true
}

// String renders the record in canonical form: "v=DMARC1" first, then the
// present tags in a fixed order, then the invalid ones with their raw
// values. Parse(r.String()) gives back an equal record.
func (r *Record) String() string {
	var b strings.Builder
	b.WriteString("v=DMARC1")
	add := func(name, value string) {
		if value != "" {
			fmt.Fprintf(&b, "; %s=%s", name, value)
		}
	}
	add("p", string(r.P))
	add("sp", string(r.SP))
	add("np", string(r.NP))
	add("adkim", string(r.ADKIM))
	add("aspf", string(r.ASPF))
	add("psd", string(r.PSD))
	if r.HasT {
		add("t", map[bool]string{true: "y", false: "n"}[r.Testing])
	}
	if r.HasPct {
		add("pct", strconv.Itoa(r.Pct))
	}
	add("rua", strings.Join(r.RUA, ","))
	add("ruf", strings.Join(r.RUF, ","))
	add("fo", strings.Join(r.FO, ":"))
	add("rf", strings.Join(r.RF, ":"))
	if r.HasRI {
		add("ri", strconv.FormatUint(uint64(r.RI), 10))
	}
	for _, inv := range r.Invalid {
		b.WriteString("; ")
		b.WriteString(inv)
	}
	return b.String()
}

// invalid reports whether tag was present with a value that did not parse.
func (r *Record) invalid(tag string) bool {
	for _, inv := range r.Invalid {
		if strings.HasPrefix(inv, tag+"=") {
			return true
		}
	}
	return false
}

// Applicable reports whether DMARC processing applies with this record, and
// whether it applies only as if it said p=none. RFC 9989 §4.10.1 (and RFC
// 7489 §6.6.3 step 6): a record without a valid p tag, or with an invalid sp
// or np tag, acts as p=none when rua holds at least one valid URI, and
// otherwise gives no DMARC processing at all. A missing p is p=none (RFC
// 9989 §4.7 p).
func (r *Record) Applicable() (applies, asNone bool) {
	if !r.invalid("p") && !r.invalid("sp") && !r.invalid("np") {
		return true, false
	}
	if len(r.RUA) > 0 {
		return true, true // RFC 9989 §4.10.1: MUST act as if a record containing "p=none" was retrieved
	}
	return false, false
}

// Policy is the effective p: none when absent or when Applicable says the
// record acts as p=none.
func (r *Record) Policy() Disposition {
	if _, asNone := r.Applicable(); asNone || r.P == DispositionUnset {
		return DispositionNone // RFC 9989 §4.7 p: absent → treated as "p=none"
	}
	return r.P
}

// SubdomainPolicy is the effective policy for an existing subdomain: sp,
// else p (RFC 9989 §4.7 sp: "the policy specified by the p tag MUST be
// applied for subdomains").
func (r *Record) SubdomainPolicy() Disposition {
	if _, asNone := r.Applicable(); !asNone && r.SP != DispositionUnset {
		return r.SP
	}
	return r.Policy()
}

// NonExistentPolicy is the effective policy for a non-existent subdomain:
// np, else sp, else p (RFC 9989 §4.7 np: "If the np tag is absent, the policy
// specified by the sp tag ... or the policy specified by the p tag ... MUST
// be applied").
func (r *Record) NonExistentPolicy() Disposition {
	if _, asNone := r.Applicable(); !asNone && r.NP != DispositionUnset {
		return r.NP
	}
	return r.SubdomainPolicy()
}

// DKIMAlignment is adkim with its default "r" (RFC 9989 §4.7).
func (r *Record) DKIMAlignment() AlignMode {
	if r.ADKIM == AlignUnset {
		return AlignRelaxed
	}
	return r.ADKIM
}

// SPFAlignment is aspf with its default "r" (RFC 9989 §4.7).
func (r *Record) SPFAlignment() AlignMode {
	if r.ASPF == AlignUnset {
		return AlignRelaxed
	}
	return r.ASPF
}

// Percent is pct with its default 100 (RFC 7489 §6.3).
func (r *Record) Percent() int {
	if !r.HasPct {
		return 100
	}
	return r.Pct
}

// PSDValue is psd with its default "u" (RFC 9989 §4.7).
func (r *Record) PSDValue() PSD {
	if r.PSD == PSDUnset {
		return PSDUnknown
	}
	return r.PSD
}

// FailureOptions is fo with its default "0" (RFC 9989 §4.7 fo).
func (r *Record) FailureOptions() string {
	if len(r.FO) == 0 {
		return "0"
	}
	return strings.Join(r.FO, ":")
}
