package report

import (
	"errors"
	"io"
	"unicode/utf8"
)

// RefusalReason says why an incoming report was refused: one stable word
// per kind of problem, so that the intake can count refusals by reason.
type RefusalReason string

// The refusal reasons.
const (
	// Sizes and counts over Limits.
	RefusalTooLarge             RefusalReason = "too_large"              // the message or file as given, over MaxInputBytes
	RefusalDecompressedTooLarge RefusalReason = "decompressed_too_large" // the XML out of gzip or zip, over MaxXMLBytes (a bomb, or just too big)
	RefusalTooManyRecords       RefusalReason = "too_many_records"       // over MaxRecords
	RefusalTooDeep              RefusalReason = "too_deep"               // elements nested deeper than MaxDepth
	RefusalTokenTooLarge        RefusalReason = "token_too_large"        // a text, attribute, name or comment over MaxTokenBytes, too many attributes
	RefusalTooManyElements      RefusalReason = "too_many_elements"      // a record (or other child of feedback) over MaxChildElements, or over MaxDKIMPerRecord
	RefusalTooManyParts         RefusalReason = "too_many_parts"         // MIME parts, nesting or attachments over the limits
	// XML.
	RefusalNotXML         RefusalReason = "not_xml"       // no XML element at all (Yahoo's "unused")
	RefusalMalformedXML   RefusalReason = "malformed_xml" // not well-formed XML
	RefusalInvalidUTF8    RefusalReason = "invalid_utf8"  // bytes that are not UTF-8
	RefusalEncoding       RefusalReason = "unsupported_encoding"
	RefusalDTD            RefusalReason = "dtd"               // a DOCTYPE: entity tricks have no place in a report
	RefusalNotFeedback    RefusalReason = "not_feedback"      // root element not feedback, or in a foreign namespace
	RefusalMissingElement RefusalReason = "missing_element"   // a required element is absent
	RefusalDuplicate      RefusalReason = "duplicate_element" // report_metadata or policy_published twice
	RefusalBadValue       RefusalReason = "bad_value"         // a number, time or IP address that does not parse
	// Containers and messages.
	RefusalUnknownFormat  RefusalReason = "unknown_format"  // neither XML, gzip nor zip
	RefusalCorruptArchive RefusalReason = "corrupt_archive" // gzip or zip that does not decompress
	RefusalZipEntries     RefusalReason = "zip_entries"     // no or several XML files, encrypted, too many entries
	RefusalZipPath        RefusalReason = "zip_path"        // an entry name with "..", an absolute path, a backslash or a control character
	RefusalMIME           RefusalReason = "malformed_mime"
	RefusalNoReport       RefusalReason = "no_report" // a message with no report in it
	// Reading.
	RefusalRead RefusalReason = "read_error" // the reader given failed (Err says how)
	// Validate.
	RefusalBadDateRange    RefusalReason = "bad_date_range"    // begin >= end
	RefusalFutureDateRange RefusalReason = "future_date_range" // ends after now (plus MaxClockSkew)
	RefusalAbsurdDateRange RefusalReason = "absurd_date_range" // longer than MaxReportSpan, or before MinReportTime
)

// RefusalError is the error of every refused report.
type RefusalError struct {
	Reason RefusalReason
	// Detail is a short explanation for logs; it may quote the input.
	Detail string
	// Err is the underlying error, if any.
	Err error
}

func (e *RefusalError) Error() string {
	s := "report: refused (" + string(e.Reason) + ")"
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *RefusalError) Unwrap() error { return e.Err }

// ReasonOf returns the refusal reason of err, if err is (or wraps) a
// *RefusalError.
func ReasonOf(err error) (RefusalReason, bool) {
	var re *RefusalError
	if errors.As(err, &re) {
		return re.Reason, true
	}
	return "", false
}

func refuse(reason RefusalReason, detail string, err error) *RefusalError {
	return &RefusalError{Reason: reason, Detail: detail, Err: err}
}

// Limits bound the work and memory of reading one incoming report. A zero
// field takes its value from DefaultLimits.
type Limits struct {
	// MaxInputBytes bounds what is read from the reader given: the whole
	// message (ParseMessage), the file (ParseFile), the document (Parse).
	MaxInputBytes int64
	// MaxXMLBytes bounds the XML document after decompression.
	MaxXMLBytes int64
	// MaxRecords bounds the record elements of one report.
	MaxRecords int
	// MaxDKIMPerRecord bounds the dkim elements of one record's
	// auth_results (RFC 9990 §3.1.3 asks reporters for 100 at most,
	// https://datatracker.ietf.org/doc/html/rfc9990#section-3.1.3).
	MaxDKIMPerRecord int
	// MaxDepth bounds the nesting of elements (a report needs 5 levels;
	// extensions may add a few).
	MaxDepth int
	// MaxTokenBytes bounds one text node, attribute value, name or
	// comment. encoding/xml reads a whole token before it can be
	// measured, so the memory one token can take is bounded by
	// MaxXMLBytes; this bound refuses the document once it is read.
	MaxTokenBytes int
	// MaxChildElements bounds the elements inside one child of feedback
	// (a record, the metadata): a record of a million reason elements is
	// refused before it is decoded whole.
	MaxChildElements int
	// MaxAttrs bounds the attributes of one element.
	MaxAttrs int
	// MaxParts bounds the MIME parts of a message, MaxMIMEDepth their
	// nesting, MaxReports the reports taken from one message.
	MaxParts     int
	MaxMIMEDepth int
	MaxReports   int
	// MaxZipEntries bounds the entries of a zip archive.
	MaxZipEntries int
}

// DefaultLimits are the limits of a zero Limits: generous for the largest
// real reports (a busy receiver's day for a big domain is some ten
// thousand records, a few MB of XML), small enough that a hostile report
// costs little. Parse keeps about as much memory as the XML it read: a
// report of 100 000 records (31 MiB) holds 36 MiB once parsed.
func DefaultLimits() Limits {
	return Limits{
		MaxInputBytes:    32 << 20,
		MaxXMLBytes:      64 << 20,
		MaxRecords:       100_000,
		MaxDKIMPerRecord: 200,
		MaxDepth:         16,
		MaxTokenBytes:    64 << 10,
		MaxChildElements: 4096,
		MaxAttrs:         16,
		MaxParts:         64,
		MaxMIMEDepth:     5,
		MaxReports:       8,
		MaxZipEntries:    8,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	set64 := func(v *int64, def int64) {
		if *v <= 0 {
			*v = def
		}
	}
	set := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	set64(&l.MaxInputBytes, d.MaxInputBytes)
	set64(&l.MaxXMLBytes, d.MaxXMLBytes)
	set(&l.MaxRecords, d.MaxRecords)
	set(&l.MaxDKIMPerRecord, d.MaxDKIMPerRecord)
	set(&l.MaxDepth, d.MaxDepth)
	set(&l.MaxTokenBytes, d.MaxTokenBytes)
	set(&l.MaxChildElements, d.MaxChildElements)
	set(&l.MaxAttrs, d.MaxAttrs)
	set(&l.MaxParts, d.MaxParts)
	set(&l.MaxMIMEDepth, d.MaxMIMEDepth)
	set(&l.MaxReports, d.MaxReports)
	set(&l.MaxZipEntries, d.MaxZipEntries)
	return l
}

// limitReader passes at most max bytes through, then refuses with reason;
// with checkUTF8 it also refuses bytes that are not UTF-8, across reads.
type limitReader struct {
	r         io.Reader
	remaining int64
	reason    RefusalReason
	checkUTF8 bool
	carry     [utf8.UTFMax]byte // an incomplete rune at the end of the last read
	ncarry    int
	err       error
}

func newLimitReader(r io.Reader, max int64, reason RefusalReason) *limitReader {
	return &limitReader{r: r, remaining: max, reason: reason}
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if int64(len(p)) > l.remaining+1 {
		p = p[:l.remaining+1]
	}
	n, err := l.r.Read(p)
	if int64(n) > l.remaining {
		l.err = refuse(l.reason, "over the size limit", nil)
		return 0, l.err
	}
	l.remaining -= int64(n)
	if l.checkUTF8 {
		if uerr := l.utf8(p[:n], err == io.EOF); uerr != nil {
			l.err = uerr
			return 0, uerr
		}
	}
	return n, err
}

// utf8 checks b, the bytes after the carried incomplete rune.
func (l *limitReader) utf8(b []byte, eof bool) error {
	bad := refuse(RefusalInvalidUTF8, "the document is not UTF-8", nil)
	for l.ncarry > 0 && len(b) > 0 {
		l.carry[l.ncarry] = b[0]
		l.ncarry++
		b = b[1:]
		if utf8.FullRune(l.carry[:l.ncarry]) {
			if r, size := utf8.DecodeRune(l.carry[:l.ncarry]); r == utf8.RuneError && size <= 1 || size != l.ncarry {
				return bad
			}
			l.ncarry = 0
		}
	}
	// Keep an incomplete rune at the end for the next read.
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				l.ncarry = copy(l.carry[:], b[i:])
				b = b[:i]
			}
			break
		}
	}
	if !utf8.Valid(b) {
		return bad
	}
	if eof && l.ncarry > 0 {
		return bad
	}
	return nil
}
