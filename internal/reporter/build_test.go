package reporter

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/milter"
	"github.com/dmarc-milter/dmarc-milter/internal/store"
	"github.com/dmarc-milter/dmarc-milter/pkg/report"
)

// dayRows are n distinct rows of one report (distinct source IPs), in the
// shape of internal/store's simulated day.
func dayRows(n int) (store.Group, []store.Row) {
	g := store.Group{Begin: day(2026, 12, 6, 0), End: day(2026, 12, 7, 0),
		Policy: store.Policy{Domain: "d0001.example", P: "reject", ADKIM: "r", ASPF: "r", Testing: "n", DiscoveryMethod: "treewalk"}}
	rows := make([]store.Row, n)
	for i := range rows {
		rows[i] = store.Row{Begin: g.Begin, End: g.End, Policy: g.Policy,
			SourceIP:   netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}),
			HeaderFrom: "d0001.example", EnvelopeFrom: "d0001.example", Disposition: "pass", DKIMAligned: "pass", SPFAligned: "pass",
			DKIM:  []store.DKIMResult{{Domain: "d0001.example", Selector: "sel1", Result: "pass"}},
			SPF:   &store.SPFResult{Domain: "d0001.example", Scope: "mfrom", Result: "pass"},
			Count: int64(1 + i%40)}
	}
	return g, rows
}

// BenchmarkBuildFile is the build of one report (XML, gzip, file name) from
// its rows: 261 rows is the average report of the simulated day of 10
// million messages (261 080 rows in 1 000 reports, docs/performance.md);
// 50 000 is max_report_rows.
func BenchmarkBuildFile(b *testing.B) {
	id := &Identity{OrgName: "Ours", Email: "d@ours.example", From: "d@ours.example", Generator: "dmarc-milter/bench",
		Limits: report.WriteLimits{MaxBytes: 10 << 20, MaxRecords: 50000}}
	for _, n := range []int{261, 50000} {
		g, rows := dayRows(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var size int
			for b.Loop() {
				f, err := BuildFile(id, g, rows, nil)
				if err != nil {
					b.Fatal(err)
				}
				size = len(f.Gzip)
			}
			b.ReportMetric(float64(size), "gz-bytes")
		})
	}
}

// TestBuildFileLimit: a report over max_report_rows keeps the highest
// counts and says what it left out.
func TestBuildFileLimit(t *testing.T) {
	g, rows := dayRows(100)
	id := &Identity{OrgName: "Ours", Email: "d@ours.example", From: "d@ours.example", Limits: report.WriteLimits{MaxRecords: 10}}
	f, err := BuildFile(id, g, rows, zeros{})
	if err != nil {
		t.Fatal(err)
	}
	if f.Omitted.Records != 90 || f.Records != 100 {
		t.Errorf("omitted %+v of %d records", f.Omitted, f.Records)
	}
	validateXSD(t, f.XML)
}

// BenchmarkFlush is one flush of the recorder into SQLite: n distinct rows
// already in the store (the usual case within a period) and their
// counters. Its time divided by the messages of one flush interval is the
// writer's cost per message (docs/performance.md).
func BenchmarkFlush(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			clk := &clock{t: day(2026, 12, 6, 10)}
			st, err := store.Open(context.Background(), "sqlite:"+filepath.Join(b.TempDir(), "f.db"), store.Options{Now: clk.now})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			rec := NewRecorder(RecorderOptions{Open: func(context.Context) (Sink, error) { return st, nil },
				Interval: 24 * time.Hour, QueueSize: 100000, FlushInterval: time.Hour, Now: clk.now})
			defer rec.Close(context.Background())
			t := &testing.T{}
			ds := make([]*milter.Decision, n)
			for i := range ds {
				e := goldenSet[0]
				e.ip = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).String()
				ds[i] = e.decide(t)
			}
			for b.Loop() {
				b.StopTimer()
				for _, d := range ds {
					rec.Record(d)
				}
				b.StartTimer()
				if err := rec.Flush(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
