package reporter

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/report"
)

// Identity is who sends the reports: the report_metadata and the message's
// From.
type Identity struct {
	OrgName          string
	Email            string
	ExtraContactInfo string
	// From is the sender address; its domain is the receiver of the file
	// name and the Submitter of the Subject.
	From string
	// Generator is "dmarc-milter/VERSION".
	Generator string
	// Limits bound each report's XML.
	Limits report.WriteLimits
}

// Receiver is the reporting domain: the domain of From.
func (id *Identity) Receiver() string {
	_, d, _ := strings.Cut(id.From, "@")
	return strings.ToLower(d)
}

// File is one built report file.
type File struct {
	ReportID string
	Filename string
	XML      []byte
	Gzip     []byte
	Omitted  report.Omitted
	Records  int
	Messages int64
}

// BuildFile writes the report of group g from its rows: RFC 9990 XML (equal
// rows added up, at most Limits), gzip, and the file name carrying the
// Report-ID (a new one from random, crypto/rand when nil).
func BuildFile(id *Identity, g store.Group, rows []store.Row, random io.Reader) (*File, error) {
	rid, err := report.NewReportID(g.Begin, random)
	if err != nil {
		return nil, err
	}
	f, msgs := feedback(id, g, rows, rid)
	if len(f.Records) == 0 {
		return nil, fmt.Errorf("reporter: report of %s for %s has no rows", g.Policy.Domain, g.Begin.Format(time.RFC3339))
	}
	doc, om, err := report.MarshalLimited(f, id.Limits)
	if err != nil {
		return nil, err
	}
	gz, err := report.Gzip(doc)
	if err != nil {
		return nil, err
	}
	name, err := report.Filename(id.Receiver(), g.Policy.Domain, f.Metadata.DateRange, rid)
	if err != nil {
		return nil, err
	}
	return &File{ReportID: rid, Filename: name, XML: doc, Gzip: gz, Omitted: om, Records: len(f.Records), Messages: msgs}, nil
}

// feedback is the report of g over rows (late rows left out).
func feedback(id *Identity, g store.Group, rows []store.Row, reportID string) (*report.Feedback, int64) {
	var recs []report.Record
	var msgs int64
	for _, r := range rows {
		if r.Late {
			continue
		}
		recs = append(recs, record(r))
		msgs += r.Count
	}
	return &report.Feedback{
		Metadata: report.Metadata{
			OrgName: id.OrgName, Email: id.Email, ExtraContactInfo: id.ExtraContactInfo,
			ReportID:  reportID,
			DateRange: report.DateRange{Begin: g.Begin.UTC(), End: g.End.UTC()},
			Generator: id.Generator,
		},
		PolicyPublished: policyPublished(g.Policy),
		Records:         report.Aggregate(recs),
	}, msgs
}

// Message builds the message carrying a built report file to the
// recipients, dated now.
func Message(id *Identity, filename string, gz []byte, to []string, now time.Time) (*report.Built, error) {
	return report.RebuildMessage(report.Message{Receiver: id.Receiver(), From: id.From, To: to, Date: now}, filename, gz)
}
