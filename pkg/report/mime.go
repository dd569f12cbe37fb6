package report

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
)

// ParseMessage reads a report message (RFC 9990 §3.5.2,
// https://datatracker.ietf.org/doc/html/rfc9990#section-3.5.2, requires no
// particular structure) and returns the reports it carries: attachments
// of type application/gzip, application/zip, application/x-zip-compressed,
// text/xml (and their usual aliases), application/octet-stream or any
// other type when named .xml, .gz or .zip, and an XML body sent inline (a
// text/plain part that begins with "<": when it is not a feedback
// document, it is taken for text), through nested multiparts. Each is read as ParseFile reads a file.
// MaxInputBytes bounds the whole message; MaxParts, MaxMIMEDepth and
// MaxReports bound its structure. A message with no report gives
// RefusalNoReport; the first report that is refused refuses the message.
func ParseMessage(r io.Reader, lim Limits) ([]*Feedback, error) {
	lim = lim.withDefaults()
	lr := newLimitReader(r, lim.MaxInputBytes, RefusalTooLarge)
	msg, err := mail.ReadMessage(bufio.NewReader(lr))
	if err != nil {
		return nil, mimeError(err, "message header")
	}
	w := &walker{lim: &lim}
	if err := w.part(textproto.MIMEHeader(msg.Header), msg.Body, 0); err != nil {
		return nil, err
	}
	if len(w.reports) == 0 {
		return nil, refuse(RefusalNoReport, fmt.Sprintf("none among %d MIME parts", w.parts), nil)
	}
	return w.reports, nil
}

type walker struct {
	lim     *Limits
	parts   int
	reports []*Feedback
}

// mimeError keeps refusals (a size limit hit while reading) and calls
// anything else a malformed message.
func mimeError(err error, what string) error {
	var re *RefusalError
	if errors.As(err, &re) {
		return re
	}
	return refuse(RefusalMIME, what, err)
}

func (w *walker) part(h textproto.MIMEHeader, body io.Reader, depth int) error {
	w.parts++
	if w.parts > w.lim.MaxParts {
		return refuse(RefusalTooManyParts, fmt.Sprintf("more than %d MIME parts", w.lim.MaxParts), nil)
	}
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil && mt == "" {
		// RFC 2045 §5.2 (https://datatracker.ietf.org/doc/html/rfc2045#section-5.2):
		// the default for a missing or unreadable type.
		mt = "text/plain"
	}
	if strings.HasPrefix(mt, "multipart/") {
		return w.multipart(params["boundary"], body, depth)
	}
	name := partName(h)
	inline := false
	if !isReportPart(mt, name) {
		if mt != "text/plain" || name != "" {
			return nil
		}
		inline = true // a text body may be the XML itself
	}
	if len(w.reports) >= w.lim.MaxReports {
		return refuse(RefusalTooManyParts, fmt.Sprintf("more than %d reports", w.lim.MaxReports), nil)
	}
	dec := decodeTransfer(h.Get("Content-Transfer-Encoding"), body)
	if inline {
		br := bufio.NewReader(dec)
		head, _ := br.Peek(512)
		if f, ok := Detect(head); !ok || f != FormatXML {
			return nil
		}
		dec = br
	}
	f, err := parseFile(dec, *w.lim)
	if err != nil {
		if r, _ := ReasonOf(err); inline && (r == RefusalNotFeedback || r == RefusalMalformedXML) {
			return nil // a text that merely begins with "<"
		}
		return err
	}
	w.reports = append(w.reports, f)
	return nil
}

func (w *walker) multipart(boundary string, body io.Reader, depth int) error {
	if boundary == "" {
		return refuse(RefusalMIME, "multipart without a boundary", nil)
	}
	if depth >= w.lim.MaxMIMEDepth {
		return refuse(RefusalTooManyParts, fmt.Sprintf("multiparts nested deeper than %d", w.lim.MaxMIMEDepth), nil)
	}
	mr := multipart.NewReader(body, boundary)
	for {
		// NextPart decodes quoted-printable itself (and drops that header).
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return mimeError(err, "multipart")
		}
		if err := w.part(p.Header, p, depth+1); err != nil {
			return err
		}
	}
}

// partName is the part's file name: Content-Disposition's filename, else
// Content-Type's name (RFC 2231 encodings decoded by package mime).
func partName(h textproto.MIMEHeader) string {
	if _, p, err := mime.ParseMediaType(h.Get("Content-Disposition")); err == nil && p["filename"] != "" {
		return p["filename"]
	}
	if _, p, err := mime.ParseMediaType(h.Get("Content-Type")); err == nil {
		return p["name"]
	}
	return ""
}

// isReportPart tells whether a leaf part holds a report file.
func isReportPart(mediaType, name string) bool {
	switch mediaType {
	case "application/gzip", "application/x-gzip", "application/zip", "application/x-zip-compressed",
		"application/x-zip", "text/xml", "application/xml":
		return true
	}
	n := strings.ToLower(name)
	return strings.HasSuffix(n, ".xml") || strings.HasSuffix(n, ".gz") || strings.HasSuffix(n, ".zip")
}

// decodeTransfer undoes the part's Content-Transfer-Encoding; a broken
// encoding or multipart body is a malformed message (RefusalMIME).
func decodeTransfer(cte string, r io.Reader) io.Reader {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, r)
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	}
	return mimeReader{r: r}
}

type mimeReader struct{ r io.Reader }

func (m mimeReader) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = mimeError(err, "part body")
	}
	return n, err
}
