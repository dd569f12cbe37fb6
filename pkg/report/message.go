package report

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strconv"
	"strings"
	"time"
)

// ErrBadMessageInput: a value given to BuildMessage or Filename cannot be
// written into the message (not a domain name, not an address, not ASCII);
// the wrapped text names it.
var ErrBadMessageInput = errors.New("report: bad message input")

// idEncoding is lowercase base32 without padding: letters and digits only,
// so that a Report-ID is both dot-atom-text (RFC 9990 §3.5.1,
// https://datatracker.ietf.org/doc/html/rfc9990#section-3.5.1) and a
// filename unique-id, 1*(ALPHA / DIGIT) (RFC 9990 §3.5.2).
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewReportID returns a new Report-ID for a report whose period begins at
// begin: the UTC date (YYYYMMDD) then 120 random bits in lowercase base32,
// e.g. "20261206k3v9...". It is unique among reports to one domain
// (RFC 9990 §3.5.1) by its randomness; the date only helps people. random
// is crypto/rand when nil (tests pass a fixed reader). A resend must reuse
// the ID it was first given (RFC 9990 §3.5.2): the caller stores it.
func NewReportID(begin time.Time, random io.Reader) (string, error) {
	if random == nil {
		random = rand.Reader
	}
	var b [15]byte
	if _, err := io.ReadFull(random, b[:]); err != nil {
		return "", fmt.Errorf("report: Report-ID randomness: %w", err)
	}
	return begin.UTC().Format("20060102") + idEncoding.EncodeToString(b[:]), nil
}

// ValidReportID tells whether id has RFC 9990 §3.5.1's form, ridtxt:
// dot-atom-text ["@" dot-atom-text], optionally within "<" ">".
func ValidReportID(id string) bool {
	if strings.HasPrefix(id, "<") && strings.HasSuffix(id, ">") && len(id) >= 2 {
		id = id[1 : len(id)-1]
	}
	local, domain, hasAt := strings.Cut(id, "@")
	if !validDotAtom(local) {
		return false
	}
	return !hasAt || validDotAtom(domain)
}

// validDotAtom: RFC 5322 §3.2.3 (https://datatracker.ietf.org/doc/html/rfc5322#section-3.2.3) dot-atom-text.
func validDotAtom(s string) bool {
	if s == "" {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" {
			return false
		}
		for i := 0; i < len(part); i++ {
			if !isAtext(part[i]) {
				return false
			}
		}
	}
	return true
}

func isAtext(c byte) bool {
	return isAlnum(c) || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// validUniqueID: RFC 9990 §3.5.2 unique-id = 1*(ALPHA / DIGIT).
func validUniqueID(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			return false
		}
	}
	return true
}

// validDomainName: a domain-name of RFC 6376 (letters, digits, hyphens,
// dot-separated labels of at most 63 octets, at most 253 octets in all).
// Underscores are allowed too: they occur in real policy domains.
func validDomainName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			if !isAlnum(l[i]) && l[i] != '-' && l[i] != '_' {
				return false
			}
		}
	}
	return true
}

// Filename returns the attachment's filename (RFC 9990 §3.5.2):
// receiver!policy-domain!begin!end!unique-id.xml.gz, with the Report-ID as
// the unique-id (RFC 9990 §3.1.4: they MUST be identical), so reportID
// must be letters and digits only (NewReportID's form). Domains must be
// A-labels; they are written in lowercase.
func Filename(receiver, policyDomain string, dr DateRange, reportID string) (string, error) {
	if !validDomainName(receiver) {
		return "", fmt.Errorf("%w: receiver %q is not a domain name", ErrBadMessageInput, receiver)
	}
	if !validDomainName(policyDomain) {
		return "", fmt.Errorf("%w: policy domain %q is not a domain name", ErrBadMessageInput, policyDomain)
	}
	// RFC 9990 §3.1.4: the filename's unique-id and the Report-ID MUST be identical.
	if !validUniqueID(reportID) {
		return "", fmt.Errorf("%w: Report-ID %q cannot be a filename unique-id (letters and digits only)", ErrBadMessageInput, reportID)
	}
	return strings.Join([]string{
		lowerDomain(receiver), lowerDomain(policyDomain),
		strconv.FormatInt(dr.Begin.Unix(), 10), strconv.FormatInt(dr.End.Unix(), 10),
		reportID,
	}, "!") + ".xml.gz", nil
}

func lowerDomain(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }

// Subject returns the report message's Subject (RFC 9990 §3.5.2):
// "Report Domain: D Submitter: S Report-ID: <ID>", unfolded.
func Subject(policyDomain, submitter, reportID string) string {
	return "Report Domain: " + lowerDomain(policyDomain) + " Submitter: " + lowerDomain(submitter) +
		" Report-ID: <" + reportID + ">"
}

// Gzip compresses an XML report for the attachment (RFC 9990 §3.5.2: gzip
// is RECOMMENDED). The output depends only on the input (no name, no
// modification time in the gzip header).
func Gzip(xmlDoc []byte) ([]byte, error) {
	var b bytes.Buffer
	w, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(xmlDoc); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Message is what BuildMessage needs to build one report message.
type Message struct {
	// Feedback is the report; its Metadata.ReportID must be letters and
	// digits only (NewReportID), as it is also the filename's unique-id.
	Feedback *Feedback
	// Receiver is the reporting domain: the Submitter of the Subject and
	// the first part of the filename (the domain of From, as a rule).
	Receiver string
	// From is the sender's address (addr-spec, ASCII); To the recipients
	// (the rua mailto: addresses).
	From string
	To   []string
	// Date is the message's Date: the caller's clock, so that the output
	// is deterministic.
	Date time.Time
	// Limits bound the XML report (MarshalLimited).
	Limits WriteLimits
}

// Built is one report message and its parts.
type Built struct {
	// Message is the whole RFC 5322 message, CRLF line endings, not
	// signed: a DKIM signature is added by the sender.
	Message   []byte
	Filename  string
	Subject   string
	MessageID string
	// XML is the report document; Gzip the attachment's content.
	XML  []byte
	Gzip []byte
	// Omitted is what the size limit left out of the report.
	Omitted Omitted
}

// BuildMessage builds the report message of RFC 9990 §3.5.2: an RFC 5322
// message formatted per RFC 2045, multipart/mixed with a short text/plain
// part and the gzip-compressed report as an application/gzip attachment
// (base64) named by Filename; the Subject and the Message-ID carry the
// Report-ID. The same input always gives the same bytes.
func BuildMessage(m Message) (*Built, error) {
	f := m.Feedback
	if f == nil {
		return nil, fmt.Errorf("%w: no report", ErrBadMessageInput)
	}
	if err := checkAddrs(m.From, m.To); err != nil {
		return nil, err
	}
	id := f.Metadata.ReportID
	name, err := Filename(m.Receiver, f.PolicyPublished.Domain, f.Metadata.DateRange, id)
	if err != nil {
		return nil, err
	}
	doc, om, err := MarshalLimited(f, m.Limits)
	if err != nil {
		return nil, err
	}
	gz, err := Gzip(doc)
	if err != nil {
		return nil, err
	}
	b := &Built{
		Filename:  name,
		Subject:   Subject(f.PolicyPublished.Domain, m.Receiver, id),
		MessageID: "<" + id + "@" + lowerDomain(m.Receiver) + ">",
		XML:       doc,
		Gzip:      gz,
		Omitted:   om,
	}
	b.Message = writeMessage(&m, b)
	return b, nil
}

func checkAddrs(from string, to []string) error {
	if len(to) == 0 {
		return fmt.Errorf("%w: no recipient", ErrBadMessageInput)
	}
	for _, a := range append([]string{from}, to...) {
		p, err := mail.ParseAddress(a)
		if err != nil || p.Name != "" || p.Address != a || !isPrintableASCII(a) {
			return fmt.Errorf("%w: %q is not a plain ASCII address", ErrBadMessageInput, a)
		}
	}
	return nil
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

const crlf = "\r\n"

func writeMessage(m *Message, b *Built) []byte {
	boundary := "=_dmarc_report_" + m.Feedback.Metadata.ReportID
	var w bytes.Buffer
	header := func(name string, words ...string) { w.WriteString(foldHeader(name, words)) }
	header("From:", m.From)
	header("To:", commaList(m.To)...)
	header("Date:", strings.Fields(m.Date.UTC().Format(time.RFC1123Z))...)
	header("Subject:", strings.Fields(b.Subject)...)
	header("Message-ID:", b.MessageID)
	header("MIME-Version:", "1.0")
	header("Content-Type:", "multipart/mixed;", `boundary="`+boundary+`"`)
	w.WriteString(crlf + "This is a multi-part message in MIME format." + crlf)

	w.WriteString(crlf + "--" + boundary + crlf)
	w.WriteString("Content-Type: text/plain; charset=us-ascii" + crlf)
	w.WriteString("Content-Transfer-Encoding: 7bit" + crlf + crlf)
	w.WriteString(summaryText(m, b))

	w.WriteString(crlf + "--" + boundary + crlf)
	header("Content-Type:", "application/gzip;", `name="`+b.Filename+`"`)
	header("Content-Disposition:", "attachment;", `filename="`+b.Filename+`"`)
	w.WriteString("Content-Transfer-Encoding: base64" + crlf + crlf)
	enc := base64.StdEncoding.EncodeToString(b.Gzip)
	for len(enc) > 76 {
		w.WriteString(enc[:76] + crlf)
		enc = enc[76:]
	}
	w.WriteString(enc + crlf)
	w.WriteString(crlf + "--" + boundary + "--" + crlf)
	return w.Bytes()
}

func summaryText(m *Message, b *Built) string {
	f := m.Feedback
	dr := f.Metadata.DateRange
	lines := []string{
		"This is a DMARC aggregate report (RFC 9990) from " + lowerDomain(m.Receiver),
		"for the domain " + lowerDomain(f.PolicyPublished.Domain) + ".",
		"Period: " + dr.Begin.UTC().Format(time.RFC3339) + " to " + dr.End.UTC().Format(time.RFC3339) + ".",
		"Report-ID: " + f.Metadata.ReportID,
	}
	if b.Omitted.Records > 0 {
		lines = append(lines, fmt.Sprintf("The report was too large: %d records (%d messages) were left out.",
			b.Omitted.Records, b.Omitted.Messages))
	}
	return strings.Join(lines, crlf) + crlf
}

func commaList(addrs []string) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a
		if i < len(addrs)-1 {
			out[i] += ","
		}
	}
	return out
}

// foldHeader writes "name word word..." folding before a word where the
// line would pass 78 characters (RFC 5322 §2.1.1); a word is never split.
func foldHeader(name string, words []string) string {
	var b strings.Builder
	b.WriteString(name)
	line := len(name)
	for _, w := range words {
		if line+1+len(w) > 78 && line > len(name) {
			b.WriteString(crlf)
			line = 0
		}
		b.WriteString(" " + w)
		line += 1 + len(w)
	}
	b.WriteString(crlf)
	return b.String()
}

// RebuildMessage builds the report message again around a report file
// built before: gz is the attachment's content as first built and filename
// its name. A resend thus carries the very same file, file name and
// Report-ID (RFC 9990 §3.5.2: a resent report keeps them); only the
// recipients and Date may differ. m.Feedback and m.Limits are ignored: the
// report is read back from gz (for the Subject and the summary text).
func RebuildMessage(m Message, filename string, gz []byte) (*Built, error) {
	f, err := ParseFile(bytes.NewReader(gz), Limits{MaxInputBytes: int64(len(gz)) + 1, MaxXMLBytes: 1 << 30, MaxRecords: 1 << 24})
	if err != nil {
		return nil, fmt.Errorf("%w: stored report does not read back: %w", ErrBadMessageInput, err)
	}
	if err := checkAddrs(m.From, m.To); err != nil {
		return nil, err
	}
	id := f.Metadata.ReportID
	if !validUniqueID(id) || !strings.Contains(filename, "!"+id+".") {
		return nil, fmt.Errorf("%w: file name %q does not carry the Report-ID %q", ErrBadMessageInput, filename, id)
	}
	m.Feedback = f
	b := &Built{
		Filename:  filename,
		Subject:   Subject(f.PolicyPublished.Domain, m.Receiver, id),
		MessageID: "<" + id + "@" + lowerDomain(m.Receiver) + ">",
		Gzip:      gz,
	}
	b.Message = writeMessage(&m, b)
	return b, nil
}
