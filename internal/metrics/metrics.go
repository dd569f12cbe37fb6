// Package metrics holds dmarc-milter's Prometheus collectors, registered on
// a registry of our own (never the global one), and the HTTP listener that
// serves them. It implements milter.Metrics. Every metric is documented in
// docs/monitoring.md; a test checks that the two agree.
package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dmarc-milter/dmarc-milter/internal/milter"
	"github.com/dmarc-milter/dmarc-milter/internal/reporter"
	"github.com/dmarc-milter/dmarc-milter/pkg/cache"
	"github.com/dmarc-milter/dmarc-milter/pkg/policy"
)

const ns = "dmarcmilter"

// Metrics are the daemon's collectors.
type Metrics struct {
	Registry *prometheus.Registry

	messages   *prometheus.CounterVec
	would      *prometheus.CounterVec
	bypasses   *prometheus.CounterVec
	temperrors *prometheus.CounterVec
	spf        *prometheus.CounterVec
	dkim       *prometheus.CounterVec
	panics     *prometheus.CounterVec
	reloads    *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	reportRows *prometheus.CounterVec
	storeErrs  *prometheus.CounterVec
	reports    *prometheus.CounterVec

	mu       sync.Mutex
	dnsStats func() cache.Stats
	conns    func() int
	srv      *http.Server
}

var (
	_ milter.Metrics   = (*Metrics)(nil)
	_ reporter.Metrics = (*Metrics)(nil)
)

// New creates the collectors on a new registry.
func New(version string) *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.messages = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "messages", Name: "total",
		Help: "Messages by DMARC result and action taken."}, []string{"result", "action"})
	m.would = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "messages", Name: "would_total",
		Help: "Messages that enforce mode would have handled differently (monitor mode, allowlisted network), by that action."}, []string{"action"})
	m.bypasses = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "messages", Name: "bypassed_total",
		Help: "Messages bypassed or exempted, by reason."}, []string{"reason"})
	m.temperrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "dmarc", Name: "temperrors_total",
		Help: "DMARC temperror results by cause."}, []string{"cause"})
	m.spf = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "spf", Name: "results_total",
		Help: "SPF results of the MAIL FROM identity."}, []string{"result"})
	m.dkim = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "dkim", Name: "results_total",
		Help: "DKIM results, one per signature."}, []string{"result"})
	m.panics = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "milter", Name: "panics_total",
		Help: "Recovered panics by milter stage."}, []string{"stage"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "config", Name: "reloads_total",
		Help: "Configuration reloads by outcome."}, []string{"outcome"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: "messages", Name: "duration_seconds",
		Help:    "Time from MAIL FROM to the end-of-message decision, by action.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30}}, []string{"action"})
	m.reportRows = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "report", Name: "rows_total",
		Help: "Messages in aggregate-report rows, by fate: recorded (written to the store), late (written after their period was reported), dropped (never reached the store)."}, []string{"fate"})
	m.storeErrs = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "store", Name: "errors_total",
		Help: "Failed report-store operations, by operation."}, []string{"op"})
	m.reports = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "report", Name: "reports_total",
		Help: "Aggregate reports by outcome: built; per destination sent, retry, failed, suppressed; skipped (no destination)."}, []string{"outcome"})
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "build_info",
		Help: "Build information; the value is 1."}, []string{"version"})
	build.WithLabelValues(version).Set(1)
	m.Registry.MustRegister(m.reportRows, m.storeErrs, m.reports, m.messages, m.would, m.bypasses, m.temperrors, m.spf, m.dkim, m.panics, m.reloads, m.duration, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&dnsCollector{m: m}, &connCollector{m: m})
	return m
}

// Message counts one message.
func (m *Metrics) Message(d *milter.Decision) {
	result := "none"
	if d.Verdict != nil {
		result = string(d.Verdict.Result)
		m.spf.WithLabelValues(string(d.Verdict.SPF.Result)).Inc()
		for _, s := range d.Verdict.DKIM {
			m.dkim.WithLabelValues(string(s.Result)).Inc()
		}
	}
	if d.Err != nil {
		result = "error"
	}
	if d.Bypass != milter.BypassNone {
		m.bypasses.WithLabelValues(string(d.Bypass)).Inc()
		if d.Verdict == nil {
			result = "bypass"
		}
	}
	m.messages.WithLabelValues(result, string(d.Action)).Inc()
	if d.Would != "" {
		m.would.WithLabelValues(string(d.Would)).Inc()
	}
	if d.Verdict != nil && d.Verdict.Result == policy.ResultTempError {
		m.temperrors.WithLabelValues(string(d.TempErrCause)).Inc()
	}
	m.duration.WithLabelValues(string(d.Action)).Observe(d.Duration.Seconds())
}

// RowsRecorded counts messages written into report rows, late of them
// after their period was reported.
func (m *Metrics) RowsRecorded(messages, late int64) {
	m.reportRows.WithLabelValues("recorded").Add(float64(messages))
	m.reportRows.WithLabelValues("late").Add(float64(late))
}

// RowsDropped counts messages whose rows never reached the store.
func (m *Metrics) RowsDropped(messages int64) {
	m.reportRows.WithLabelValues("dropped").Add(float64(messages))
}

// StoreError counts a failed store operation.
func (m *Metrics) StoreError(op string) { m.storeErrs.WithLabelValues(op).Inc() }

// Report counts a report event by outcome.
func (m *Metrics) Report(outcome string) { m.reports.WithLabelValues(outcome).Inc() }

// Panic counts a recovered panic.
func (m *Metrics) Panic(stage string) { m.panics.WithLabelValues(stage).Inc() }

// Reload counts a configuration reload.
func (m *Metrics) Reload(ok bool) {
	outcome := "ok"
	if !ok {
		outcome = "refused"
	}
	m.reloads.WithLabelValues(outcome).Inc()
}

// SetDNSStats sets the source of the DNS cache counters.
func (m *Metrics) SetDNSStats(f func() cache.Stats) {
	m.mu.Lock()
	m.dnsStats = f
	m.mu.Unlock()
}

// SetConnections sets the source of the open-connection gauge.
func (m *Metrics) SetConnections(f func() int) {
	m.mu.Lock()
	m.conns = f
	m.mu.Unlock()
}

// Serve starts the HTTP listener for /metrics (and /debug/pprof/ when
// pprof is set) on addr.
func (m *Metrics) Serve(addr string, withPprof bool, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	m.mu.Lock()
	m.srv = srv
	m.mu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener failed", "err", err)
		}
	}()
	return nil
}

// Close stops the HTTP listener.
func (m *Metrics) Close() {
	m.mu.Lock()
	srv := m.srv
	m.mu.Unlock()
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}

// dnsCollector exports pkg/cache's counters at scrape time.
type dnsCollector struct{ m *Metrics }

var (
	dnsRequests = prometheus.NewDesc(ns+"_cache_requests_total", "DNS cache lookups by result (hit, negative_hit, miss, stale).", []string{"result"}, nil)
	dnsUpstream = prometheus.NewDesc(ns+"_dns_upstream_queries_total", "Queries sent to the nameservers (each attempt, each transport).", nil, nil)
	dnsFailures = prometheus.NewDesc(ns+"_dns_upstream_failures_total", "Lookups that ended in a temporary failure.", nil, nil)
	dnsEvicted  = prometheus.NewDesc(ns+"_cache_evictions_total", "Cache entries dropped to stay within dns.cache_size.", nil, nil)
	dnsCollapse = prometheus.NewDesc(ns+"_cache_collapsed_total", "Lookups that waited for an identical query in flight.", nil, nil)
	dnsEntries  = prometheus.NewDesc(ns+"_cache_entries", "Answers in the cache.", nil, nil)
	connsOpen   = prometheus.NewDesc(ns+"_milter_connections", "Open milter connections.", nil, nil)
)

func (c *dnsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dnsRequests, dnsUpstream, dnsFailures, dnsEvicted, dnsCollapse, dnsEntries} {
		ch <- d
	}
}

func (c *dnsCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	f := c.m.dnsStats
	c.m.mu.Unlock()
	if f == nil {
		return
	}
	s := f()
	for res, v := range map[string]uint64{"hit": s.Hits, "negative_hit": s.NegativeHits, "miss": s.Misses, "stale": s.StaleServes} {
		ch <- prometheus.MustNewConstMetric(dnsRequests, prometheus.CounterValue, float64(v), res)
	}
	ch <- prometheus.MustNewConstMetric(dnsUpstream, prometheus.CounterValue, float64(s.UpstreamQueries))
	ch <- prometheus.MustNewConstMetric(dnsFailures, prometheus.CounterValue, float64(s.UpstreamFailures))
	ch <- prometheus.MustNewConstMetric(dnsEvicted, prometheus.CounterValue, float64(s.Evictions))
	ch <- prometheus.MustNewConstMetric(dnsCollapse, prometheus.CounterValue, float64(s.Collapsed))
	ch <- prometheus.MustNewConstMetric(dnsEntries, prometheus.GaugeValue, float64(s.Entries))
}

// connCollector exports the number of open milter connections.
type connCollector struct{ m *Metrics }

func (c *connCollector) Describe(ch chan<- *prometheus.Desc) { ch <- connsOpen }

func (c *connCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	f := c.m.conns
	c.m.mu.Unlock()
	if f != nil {
		ch <- prometheus.MustNewConstMetric(connsOpen, prometheus.GaugeValue, float64(f()))
	}
}
