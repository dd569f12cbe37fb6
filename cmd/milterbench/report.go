package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// report is the result of one measured run; it is printed as a table and
// as one JSON line (prefixed "RESULT ") for scripts.
type report struct {
	Label       string         `json:"label"`
	Milters     []string       `json:"milters"`
	PIDs        []int          `json:"pids,omitempty"`
	Concurrency int            `json:"concurrency"`
	PerSession  int            `json:"per_session"`          // messages per SMTP session (milter connection); 0 in older reports: 4
	Rate        float64        `json:"rate_per_s,omitempty"` // offered message rate (0: as fast as possible)
	DNSDelayMS  float64        `json:"dns_delay_ms"`
	Messages    int            `json:"messages"`
	Sessions    int            `json:"sessions"`
	Seconds     float64        `json:"seconds"`
	MsgPerSec   float64        `json:"msg_per_s"`
	ContentP50  float64        `json:"content_p50_ms"`
	ContentP95  float64        `json:"content_p95_ms"`
	ContentP99  float64        `json:"content_p99_ms"`
	EOMP50      float64        `json:"eom_p50_ms"`
	EOMP95      float64        `json:"eom_p95_ms"`
	EOMP99      float64        `json:"eom_p99_ms"`
	CPUPer1000  float64        `json:"milter_cpu_s_per_1000"` // -1: unknown
	CPUByPID    []float64      `json:"milter_cpu_s_per_1000_by_pid,omitempty"`
	GenPer1000  float64        `json:"generator_cpu_s_per_1000"`
	MachineBusy float64        `json:"machine_busy_pct"`
	PeakRSSMB   float64        `json:"peak_rss_mb"` // sum over the PIDs; -1: unknown
	RSSByPID    []float64      `json:"peak_rss_mb_by_pid,omitempty"`
	DNSPerMsg   float64        `json:"dns_queries_per_msg"`
	DNSQueries  int            `json:"dns_queries"`
	Verdicts    map[string]int `json:"verdicts"`
	Expected    map[string]int `json:"expected"`
	Mismatches  int            `json:"mismatches"`
	Samples     []string       `json:"mismatch_samples,omitempty"`
	Errors      int            `json:"errors"`
	ErrSamples  []string       `json:"error_samples,omitempty"`
}

// perSession is the number of messages per session; reports written
// before the field existed measured 4.
func (r *report) perSession() int {
	if r.PerSession == 0 {
		return 4
	}
	return r.PerSession
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// fillLatency sets the latency figures from the recorder.
func (r *report) fillLatency(rec *recorder) {
	sortDurations(rec.content)
	sortDurations(rec.eom)
	r.ContentP50, r.ContentP95, r.ContentP99 = ms(percentile(rec.content, 50)), ms(percentile(rec.content, 95)), ms(percentile(rec.content, 99))
	r.EOMP50, r.EOMP95, r.EOMP99 = ms(percentile(rec.eom, 50)), ms(percentile(rec.eom, 95)), ms(percentile(rec.eom, 99))
}

// print writes the human table then the JSON line.
func (r *report) print(w io.Writer) {
	pace := ""
	if r.Rate > 0 {
		pace = fmt.Sprintf(", paced at %.0f msg/s", r.Rate)
	}
	fmt.Fprintf(w, "== %s: %s (concurrency %d, %d messages per session, DNS delay %.0f ms%s)\n", r.Label, strings.Join(r.Milters, " -> "), r.Concurrency, r.perSession(), r.DNSDelayMS, pace)
	fmt.Fprintf(w, "  messages          %d in %d sessions, %.2f s\n", r.Messages, r.Sessions, r.Seconds)
	fmt.Fprintf(w, "  throughput        %.1f msg/s\n", r.MsgPerSec)
	fmt.Fprintf(w, "  content latency   p50 %.2f  p95 %.2f  p99 %.2f ms (headers+body+EOM, all milters)\n", r.ContentP50, r.ContentP95, r.ContentP99)
	fmt.Fprintf(w, "  EOM reply latency p50 %.2f  p95 %.2f  p99 %.2f ms\n", r.EOMP50, r.EOMP95, r.EOMP99)
	if r.CPUPer1000 >= 0 {
		fmt.Fprintf(w, "  milter CPU        %.3f s per 1000 msg %v\n", r.CPUPer1000, r.CPUByPID)
	} else {
		fmt.Fprintf(w, "  milter CPU        unknown (no PID)\n")
	}
	fmt.Fprintf(w, "  generator CPU     %.3f s per 1000 msg (load generator + DNS server)\n", r.GenPer1000)
	fmt.Fprintf(w, "  machine busy      %.0f %% of all CPUs\n", r.MachineBusy)
	if r.PeakRSSMB >= 0 {
		fmt.Fprintf(w, "  peak RSS          %.1f MB %v\n", r.PeakRSSMB, r.RSSByPID)
	}
	fmt.Fprintf(w, "  DNS queries       %d (%.3f per message)\n", r.DNSQueries, r.DNSPerMsg)
	fmt.Fprintf(w, "  verdicts          %s\n", fmtCounts(r.Verdicts))
	fmt.Fprintf(w, "  expected          %s\n", fmtCounts(r.Expected))
	fmt.Fprintf(w, "  mismatches        %d\n", r.Mismatches)
	for _, s := range r.Samples {
		fmt.Fprintf(w, "    %s\n", s)
	}
	if r.Errors > 0 {
		fmt.Fprintf(w, "  errors            %d\n", r.Errors)
		for _, s := range r.ErrSamples {
			fmt.Fprintf(w, "    %s\n", s)
		}
	}
	b, _ := json.Marshal(r)
	fmt.Fprintf(w, "RESULT %s\n", b)
}

func fmtCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}
