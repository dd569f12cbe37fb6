package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dmarc-milter/dmarc-milter/internal/intake"
)

// Intake counts the reports taken in (internal/intake): stored, duplicate,
// refused by reason. It implements intake.Metrics.
type Intake struct {
	imported   prometheus.Counter
	rows       prometheus.Counter
	duplicates prometheus.Counter
	refused    *prometheus.CounterVec
}

var _ intake.Metrics = (*Intake)(nil)

// NewIntake creates the intake's collectors on m's registry.
func (m *Metrics) NewIntake() *Intake {
	in := &Intake{
		imported: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "intake", Name: "reports_imported_total",
			Help: "Aggregate reports received and stored."}),
		rows: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "intake", Name: "rows_imported_total",
			Help: "Records of the aggregate reports stored."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "intake", Name: "reports_duplicate_total",
			Help: "Aggregate reports received that were already stored."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "intake", Name: "reports_refused_total",
			Help: "Aggregate reports (or files, or messages) refused, by reason."}, []string{"reason"}),
	}
	m.Registry.MustRegister(in.imported, in.rows, in.duplicates, in.refused)
	return in
}

// ReportStored counts a stored report and its rows.
func (in *Intake) ReportStored(rows int) {
	in.imported.Inc()
	in.rows.Add(float64(rows))
}

// ReportDuplicate counts a report already stored.
func (in *Intake) ReportDuplicate() { in.duplicates.Inc() }

// ReportRefused counts a refusal by reason.
func (in *Intake) ReportRefused(reason intake.Reason) {
	in.refused.WithLabelValues(string(reason)).Inc()
}
