package metrics

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/dmarc-milter/dmarc-milter/internal/milter"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
	"github.com/dmarc-milter/dmarc-milter/pkg/verify"
)

func TestMessageCounters(t *testing.T) {
	t.Parallel()
	m := New("test")
	m.SetDNSStats(func() cache.Stats { return cache.Stats{Hits: 7, Misses: 3, Entries: 5} })
	m.SetConnections(func() int { return 2 })
	m.Message(&milter.Decision{Action: policy.ActionReject, Duration: 30 * time.Millisecond,
		Verdict: &policy.Verdict{Result: policy.ResultFail, SPF: verify.SPFResult{Result: verify.ResultFail},
			DKIM: []verify.DKIMResult{{Result: verify.ResultFail}, {Result: verify.ResultPass}}}})
	m.Message(&milter.Decision{Action: policy.ActionAccept, Would: policy.ActionTempFail, TempErrCause: "dmarc-dns",
		Verdict: &policy.Verdict{Result: policy.ResultTempError}})
	m.Message(&milter.Decision{Action: policy.ActionAccept, Bypass: milter.BypassTrusted})
	m.Message(&milter.Decision{Action: policy.ActionTempFail, Err: errors.New("boom")})
	m.Panic("eom")
	m.Reload(false)

	checks := []struct {
		name string
		got  float64
		want float64
	}{
		{"fail/reject", value(t, m.messages.WithLabelValues("fail", "reject")), 1},
		{"temperror/accept", value(t, m.messages.WithLabelValues("temperror", "accept")), 1},
		{"bypass/accept", value(t, m.messages.WithLabelValues("bypass", "accept")), 1},
		{"error/tempfail", value(t, m.messages.WithLabelValues("error", "tempfail")), 1},
		{"would tempfail", value(t, m.would.WithLabelValues("tempfail")), 1},
		{"bypassed", value(t, m.bypasses.WithLabelValues("trusted-network")), 1},
		{"temperror cause", value(t, m.temperrors.WithLabelValues("dmarc-dns")), 1},
		{"dkim pass", value(t, m.dkim.WithLabelValues("pass")), 1},
		{"spf fail", value(t, m.spf.WithLabelValues("fail")), 1},
		{"panics", value(t, m.panics.WithLabelValues("eom")), 1},
		{"reloads", value(t, m.reloads.WithLabelValues("refused")), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	fams := gather(t, m)
	if got := fams["dmarcmilter_cache_requests_total"]; len(got.GetMetric()) != 4 {
		t.Errorf("cache_requests_total has %d series, want 4", len(got.GetMetric()))
	}
	for _, s := range fams["dmarcmilter_cache_requests_total"].GetMetric() {
		if s.GetLabel()[0].GetValue() == "hit" && s.GetCounter().GetValue() != 7 {
			t.Errorf("cache hits = %v, want 7", s.GetCounter().GetValue())
		}
	}
	if g := fams["dmarcmilter_milter_connections"].GetMetric(); len(g) != 1 || g[0].GetGauge().GetValue() != 2 {
		t.Errorf("connections gauge: %v", g)
	}
}

func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}

func gather(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// TestDocumented: every metric family of ours appears in docs/monitoring.md.
func TestDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/monitoring.md")
	if err != nil {
		t.Fatal(err)
	}
	m := New("test")
	m.SetDNSStats(func() cache.Stats { return cache.Stats{} })
	m.SetConnections(func() int { return 0 })
	m.Message(&milter.Decision{Action: policy.ActionAccept, Would: policy.ActionReject, Bypass: milter.BypassAllowNetwork, TempErrCause: "x",
		Verdict: &policy.Verdict{Result: policy.ResultTempError, DKIM: []verify.DKIMResult{{Result: verify.ResultPass}}}})
	m.Panic("eom")
	m.Reload(true)
	m.RowsRecorded(2, 1)
	m.StoreError("record")
	m.Report("sent")
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "dmarcmilter_") {
			continue
		}
		n++
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if !strings.Contains(string(doc), "`"+base+"`") {
			t.Errorf("metric %s is not documented in docs/monitoring.md", base)
		}
	}
	if n < 15 {
		t.Errorf("only %d metric families gathered", n)
	}
}
