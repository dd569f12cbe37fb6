package intake

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/report"
)

// corpusWant is what importing one corpus file gives, with [intake]
// domains = ["example.com"].
type corpusWant struct {
	file     string
	status   Status
	reason   Reason
	rows     int
	messages int64
}

var corpusWants = []corpusWant{
	{file: "01-rfc9990-full.xml", status: StatusStored, rows: 2, messages: 818},
	{file: "02-rfc7489-namespace.xml", status: StatusRefused, reason: ReasonNotOurDomain}, // example.org
	{file: "03-google-style.zip", status: StatusStored, rows: 2, messages: 100},
	{file: "04-microsoft-style.xml.gz", status: StatusStored, rows: 1, messages: 2},
	{file: "06-unknown-enums.xml", status: StatusStored, rows: 1, messages: 6},
	{file: "07-missing-optional.xml", status: StatusStored, rows: 1, messages: 1},
	{file: "08-multi-day.xml", status: StatusStored, rows: 1, messages: 101},
	{file: "09-null-report.xml", status: StatusStored, rows: 0, messages: 0},
	{file: "10-yahoo-unused.xml.gz", status: StatusRefused, reason: Reason(report.RefusalNotXML)},
	{file: "11-message-gzip.eml", status: StatusStored, rows: 1, messages: 41},
	{file: "12-message-zip.eml", status: StatusRefused, reason: ReasonNotOurDomain}, // 02 inside
	{file: "13-message-inline.eml", status: StatusDuplicate, rows: 1, messages: 1},  // 07 inside
	{file: "14-message-octet-nested.eml", status: StatusDuplicate, rows: 1, messages: 101},
	{file: "15-message-yahoo-unused.eml", status: StatusRefused, reason: Reason(report.RefusalNotXML)},
}

// TestCorpus: each file of pkg/report's corpus imports to the expected
// outcome and rows, in order (so the messages carrying a report already
// imported as a file are duplicates), on both engines; importing it all
// again is a no-op: every report a duplicate or refused, the store's counts
// unchanged.
func TestCorpus(t *testing.T) {
	forEngines(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		m := &countingMetrics{}
		in := newIntake(st, m, "example.com")
		importAll := func() []Outcome {
			var all []Outcome
			for _, w := range corpusWants {
				outs := importFile(t, in, w.file)
				if len(outs) != 1 {
					t.Fatalf("%s: %d outcomes: %+v", w.file, len(outs), outs)
				}
				all = append(all, outs[0])
			}
			return all
		}
		first := importAll()
		for i, w := range corpusWants {
			o := first[i]
			got := corpusWant{file: w.file, status: o.Status, reason: o.Reason, rows: o.Rows, messages: o.Messages}
			if diff := cmp.Diff(w, got, cmp.AllowUnexported(corpusWant{})); diff != "" {
				t.Errorf("%s (-want +got):\n%s\n%s", w.file, diff, o.Detail)
			}
		}
		reports, rows, messages, err := st.ReceivedCount(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if reports != 8 || rows != 9 || messages != 1069 {
			t.Errorf("stored %d reports, %d rows, %d messages; want 8, 9, 1069", reports, rows, messages)
		}
		// 08's 101 messages over 2.5 days from 12:00 UTC: 20, 41, 40.
		begin := time.Unix(1764547200, 0).UTC()
		for i, want := range []int64{20, 41, 40} {
			day := begin.Add(time.Duration(i) * 24 * time.Hour)
			got, err := st.ReceivedIn(ctx, "example.com", day, day.Add(24*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			var n int64
			for _, r := range got {
				n += r.Messages
			}
			if n != want {
				t.Errorf("day %s: %d messages, want %d", day.Format(time.DateOnly), n, want)
			}
		}

		second := importAll()
		for i, o := range second {
			if o.Status == StatusStored || o.Status == StatusFailed {
				t.Errorf("re-import of %s: %s", corpusWants[i].file, o.Status)
			}
		}
		r2, rows2, m2, _ := st.ReceivedCount(ctx, "")
		if r2 != reports || rows2 != rows || m2 != messages {
			t.Errorf("re-import changed the store: %d/%d/%d, was %d/%d/%d", r2, rows2, m2, reports, rows, messages)
		}
		if m.stored != 8 || m.duplicates != 2+10 || m.refused[ReasonNotOurDomain] != 4 {
			t.Errorf("metrics = %+v", m)
		}
		refusals, err := st.Refusals(ctx, testNow.Truncate(24*time.Hour), testNow.Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[string]int64{"not_our_domain": 4, "not_xml": 4}, refusals); diff != "" {
			t.Errorf("stored refusal counters (-want +got):\n%s", diff)
		}
	})
}

// importFile imports one corpus file the way report import does.
func importFile(t *testing.T, in *Intake, name string) []Outcome {
	t.Helper()
	f, err := os.Open(filepath.Join(corpusDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if filepath.Ext(name) == ".eml" {
		return in.Message(context.Background(), f, "file:"+name)
	}
	return in.File(context.Background(), f, "file:"+name)
}

// TestOwnDomains: a report for a subdomain of an intake domain is ours; a
// report for a domain that merely ends in the same letters is not.
func TestOwnDomains(t *testing.T) {
	in := newIntake(nil, nil, "example.com")
	for d, want := range map[string]bool{
		"example.com": true, "mail.example.com": true, "badexample.com": false, "example.com.evil.example": false,
	} {
		if got := in.ours(d); got != want {
			t.Errorf("ours(%q) = %v, want %v", d, got, want)
		}
	}
}
