package report

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"regexp"
	"strings"
	"testing"
	"time"
)

func goldenMessage() Message {
	return Message{
		Feedback: goldenFeedback(),
		Receiver: "example.org",
		From:     "dmarc-reports@example.org",
		To:       []string{"dmarc@example.com", "reports@rua.example.net"},
		Date:     time.Date(2026, 12, 7, 0, 20, 0, 0, time.UTC),
	}
}

// TestBuildMessageGolden: the whole message, byte for byte except the
// base64 of the gzip data (compress/flate's output may change between Go
// releases), which is checked by decoding it back to the golden XML.
func TestBuildMessageGolden(t *testing.T) {
	t.Parallel()
	b, err := BuildMessage(goldenMessage())
	if err != nil {
		t.Fatal(err)
	}
	again, err := BuildMessage(goldenMessage())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Message, again.Message) {
		t.Error("two builds of the same input differ")
	}
	const id = "20261206abcdefghijklmnopqrstuvwx"
	if want := "example.org!example.com!1796515200!1796601600!" + id + ".xml.gz"; b.Filename != want {
		t.Errorf("Filename = %q, want %q", b.Filename, want)
	}
	if want := "Report Domain: example.com Submitter: example.org Report-ID: <" + id + ">"; b.Subject != want {
		t.Errorf("Subject = %q, want %q", b.Subject, want)
	}
	if want := "<" + id + "@example.org>"; b.MessageID != want {
		t.Errorf("MessageID = %q, want %q", b.MessageID, want)
	}
	if bytes.Contains(bytes.ReplaceAll(b.Message, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("a bare LF in the message: lines must end in CRLF")
	}
	// RFC 5322 §2.1.1: at most 998 characters, and 78 where a line can be
	// folded; the filename parameters cannot (a split needs RFC 2231
	// continuations, which report readers may not know).
	for _, line := range strings.Split(string(b.Message), "\r\n") {
		if len(line) > 78 && !strings.Contains(line, "name=\""+b.Filename+"\"") || len(line) > 998 {
			t.Errorf("line of %d characters: %q", len(line), line)
		}
	}

	// Read it back as a mail reader would.
	msg, err := mail.ReadMessage(bytes.NewReader(b.Message))
	if err != nil {
		t.Fatal(err)
	}
	dec := new(mime.WordDecoder)
	subj, _ := dec.DecodeHeader(msg.Header.Get("Subject"))
	if subj != b.Subject {
		t.Errorf("Subject header unfolds to %q, want %q", subj, b.Subject)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var gotXML []byte
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if p.Header.Get("Content-Type") != `application/gzip; name="`+b.Filename+`"` {
			continue
		}
		if p.FileName() != b.Filename {
			t.Errorf("attachment filename %q, want %q", p.FileName(), b.Filename)
		}
		zr, err := gzip.NewReader(base64.NewDecoder(base64.StdEncoding, p))
		if err != nil {
			t.Fatal(err)
		}
		if gotXML, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(gotXML, b.XML) {
		t.Fatalf("the attachment does not decompress to the report")
	}
	golden(t, "golden-report.xml", gotXML)

	// The message with the base64 block replaced.
	masked := regexp.MustCompile(`(?m)^[A-Za-z0-9+/=]{4,76}\r\n`).ReplaceAll(b.Message, nil)
	masked = bytes.Replace(masked, []byte("base64\r\n\r\n"), []byte("base64\r\n\r\n[gzip data in base64]\r\n"), 1)
	golden(t, "golden-message.eml", masked)
}

func TestBuildMessageLimited(t *testing.T) {
	t.Parallel()
	m := goldenMessage()
	m.Limits = WriteLimits{MaxRecords: 2}
	b, err := BuildMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	if b.Omitted != (Omitted{Records: 5, Messages: 5 + 3 + 2 + 7 + 35}) {
		t.Errorf("Omitted = %+v", b.Omitted)
	}
	if !bytes.Contains(b.Message, []byte("5 records (52 messages) were left out")) {
		t.Errorf("the text part does not say what was left out:\n%s", b.Message)
	}
	validateXSD(t, b.XML, xsdRFC9990)
}

func TestBuildMessageRefuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mutate func(m *Message)
		want   error
	}{
		{"no report", func(m *Message) { m.Feedback = nil }, ErrBadMessageInput},
		{"no recipient", func(m *Message) { m.To = nil }, ErrBadMessageInput},
		{"display name", func(m *Message) { m.From = "DMARC <d@example.org>" }, ErrBadMessageInput},
		{"header injection", func(m *Message) { m.To = []string{"a@example.com\r\nBcc: x@example.net"} }, ErrBadMessageInput},
		{"non-ASCII address", func(m *Message) { m.To = []string{"dmarc@exämple.com"} }, ErrBadMessageInput},
		{"receiver not a domain", func(m *Message) { m.Receiver = "example.org!x" }, ErrBadMessageInput},
		{"policy domain U-label", func(m *Message) { m.Feedback.PolicyPublished.Domain = "exämple.com" }, ErrBadMessageInput},
		// RFC 9990 §3.1.4: the Report-ID must also be the filename's unique-id.
		{"report id with a dot", func(m *Message) { m.Feedback.Metadata.ReportID = "a.b" }, ErrBadMessageInput},
		{"invalid report", func(m *Message) { m.Feedback.Records[0].Row.PolicyEvaluated.DKIM = "x" }, ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := goldenMessage()
			tc.mutate(&m)
			if _, err := BuildMessage(m); !errors.Is(err, tc.want) {
				t.Errorf("BuildMessage = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestNewReportID(t *testing.T) {
	t.Parallel()
	begin := day(2026, 12, 6)
	a, err := NewReportID(begin, bytes.NewReader(bytes.Repeat([]byte{0xa5}, 15)))
	if err != nil {
		t.Fatal(err)
	}
	if a != "20261206uws2ljnfuws2ljnfuws2ljnf" {
		t.Errorf("NewReportID = %q", a)
	}
	seen := map[string]bool{}
	for range 1000 {
		id, err := NewReportID(begin, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !validUniqueID(id) || !ValidReportID(id) || !strings.HasPrefix(id, "20261206") || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
	if _, err := NewReportID(begin, bytes.NewReader(nil)); err == nil {
		t.Error("no error from an empty random source")
	}
}

func TestValidReportID(t *testing.T) {
	t.Parallel()
	cases := []struct {
		id   string
		want bool
	}{
		{"1721054318-example.com@example.org", true}, // RFC 9990 §3.5.1's example
		{"2024-03-27_example.com@example.org", true}, // the alternate example
		{"<sample-ridtxt@example.com>", true},        // RFC 9990 §3.5.2's Subject example
		{"abc", true},
		{"", false},
		{"a..b", false},       // empty atom
		{".a", false},         // leading dot
		{"a@b@c", false},      // two @
		{"a b", false},        // space
		{"<a", false},         // unbalanced
		{"a@", false},         // empty domain part
		{"a\"b", false},       // not atext
		{"ré@example", false}, // not ASCII
	}
	for _, tc := range cases {
		if got := ValidReportID(tc.id); got != tc.want {
			t.Errorf("ValidReportID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}

func TestFilename(t *testing.T) {
	t.Parallel()
	dr := DateRange{Begin: time.Unix(1013662812, 0), End: time.Unix(1013749130, 0)}
	got, err := Filename("Mail.Receiver.Example.", "example.com", dr, "a1")
	if err != nil {
		t.Fatal(err)
	}
	// RFC 9990 §3.5.2's example, with a unique-id.
	if want := "mail.receiver.example!example.com!1013662812!1013749130!a1.xml.gz"; got != want {
		t.Errorf("Filename = %q, want %q", got, want)
	}
	for _, bad := range []struct{ recv, dom, id string }{
		{"", "example.com", "a"},
		{"r.example", "-x.example", "a"},
		{"r.example", "example.com", ""},
		{"r.example", "example.com", "a-b"},
		{"r.example", "example.com", "a@b"},
		{"r!x", "example.com", "a"},
		{"r.example", strings.Repeat("a", 64) + ".example", "a"},
	} {
		if _, err := Filename(bad.recv, bad.dom, dr, bad.id); !errors.Is(err, ErrBadMessageInput) {
			t.Errorf("Filename(%q, %q, %q) = %v, want ErrBadMessageInput", bad.recv, bad.dom, bad.id, err)
		}
	}
}

// TestRebuildMessage: a resend built around the stored file carries the
// same attachment bytes, file name, Subject and Message-ID as the first
// send (RFC 9990 §3.5.2), to other recipients on another date; a file that
// does not read back, or a name without its Report-ID, is refused.
func TestRebuildMessage(t *testing.T) {
	t.Parallel()
	first, err := BuildMessage(goldenMessage())
	if err != nil {
		t.Fatal(err)
	}
	m := goldenMessage()
	m.To = []string{"other@example.com"}
	m.Date = m.Date.Add(time.Hour)
	m.Feedback = nil
	again, err := RebuildMessage(m, first.Filename, first.Gzip)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Gzip, first.Gzip) || again.Filename != first.Filename || again.Subject != first.Subject || again.MessageID != first.MessageID {
		t.Errorf("the rebuilt message differs: %q %q %q", again.Filename, again.Subject, again.MessageID)
	}
	if !bytes.Contains(again.Message, []byte("To: other@example.com\r\n")) {
		t.Error("recipients not those given")
	}
	fs, err := ParseMessage(bytes.NewReader(again.Message), Limits{})
	if err != nil || len(fs) != 1 || fs[0].Metadata.ReportID != goldenFeedback().Metadata.ReportID {
		t.Errorf("ParseMessage of the rebuilt message: %v", err)
	}
	if _, err := RebuildMessage(m, "example.org!example.com!1!2!otherid.xml.gz", first.Gzip); !errors.Is(err, ErrBadMessageInput) {
		t.Errorf("a file name without the Report-ID: %v", err)
	}
	if _, err := RebuildMessage(m, first.Filename, []byte("not gzip")); !errors.Is(err, ErrBadMessageInput) {
		t.Errorf("a file that does not read back: %v", err)
	}
}
