package metrics

import (
	"os"
	"strings"
	"testing"

	"github.com/dmarc-milter/dmarc-milter/internal/intake"
)

// TestIntakeMetrics: the intake's counters count and are documented in
// docs/monitoring.md.
func TestIntakeMetrics(t *testing.T) {
	t.Parallel()
	m := New("test")
	in := m.NewIntake()
	in.ReportStored(3)
	in.ReportStored(2)
	in.ReportDuplicate()
	in.ReportRefused(intake.ReasonNotOurDomain)
	in.ReportRefused(intake.ReasonNotOurDomain)
	if got := value(t, in.imported); got != 2 {
		t.Errorf("imported = %v", got)
	}
	if got := value(t, in.rows); got != 5 {
		t.Errorf("rows = %v", got)
	}
	if got := value(t, in.refused.WithLabelValues("not_our_domain")); got != 2 {
		t.Errorf("refused = %v", got)
	}
	doc, err := os.ReadFile("../../docs/monitoring.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"dmarcmilter_intake_reports_imported_total", "dmarcmilter_intake_rows_imported_total",
		"dmarcmilter_intake_reports_duplicate_total", "dmarcmilter_intake_reports_refused_total"} {
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("%s is not documented in docs/monitoring.md", name)
		}
	}
}
