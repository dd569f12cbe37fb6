package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func resultLine(t *testing.T, r report) string {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return "RESULT " + string(b) + "\n"
}

// TestTable checks the medians, the ratios and the target verdicts.
func TestTable(t *testing.T) {
	var in strings.Builder
	in.WriteString("noise that is not a result\n")
	for _, cpu := range []float64{0.5, 0.1, 0.2} { // median 0.2
		in.WriteString(resultLine(t, report{Label: "ours", Concurrency: 8, CPUPer1000: cpu, MsgPerSec: 1000, EOMP99: 1, ContentP99: 3}))
	}
	for _, cpu := range []float64{2.0, 2.4} { // median 2.2
		in.WriteString(resultLine(t, report{Label: "chain", Concurrency: 8, CPUPer1000: cpu, MsgPerSec: 500, DNSPerMsg: 2.4, Mismatches: 1}))
	}
	in.WriteString(resultLine(t, report{Label: "ours", Concurrency: 1, DNSDelayMS: 20, MsgPerSec: 800}))
	in.WriteString(resultLine(t, report{Label: "chain", Concurrency: 1, DNSDelayMS: 20, MsgPerSec: 50}))
	in.WriteString(resultLine(t, report{Label: "ours/64x50KB", Concurrency: 64, PeakRSSMB: 120}))
	in.WriteString(resultLine(t, report{Label: "ours/paced500", Concurrency: 8, Rate: 500, EOMP99: 0.8, ContentP99: 0.9}))
	in.WriteString(resultLine(t, report{Label: "chain/paced500", Concurrency: 8, Rate: 500, EOMP99: 1.5, ContentP99: 4}))
	// One message per session (issue 18), in the same input.
	for _, cpu := range []float64{0.14, 0.12, 0.13, 0.5} { // median 0.135
		in.WriteString(resultLine(t, report{Label: "ours", Concurrency: 8, PerSession: 1, CPUPer1000: cpu, MsgPerSec: 900}))
	}
	in.WriteString(resultLine(t, report{Label: "chain", Concurrency: 8, PerSession: 1, CPUPer1000: 1.89, MsgPerSec: 450}))
	in.WriteString(resultLine(t, report{Label: "ours", Concurrency: 1, PerSession: 1, CPUPer1000: 0.2}))
	in.WriteString(resultLine(t, report{Label: "chain", Concurrency: 1, PerSession: 1, CPUPer1000: 1.6}))
	var out strings.Builder
	if err := cmdTable(strings.NewReader(in.String()), &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"| mixed 2–50 KB | 0 ms | 8 | 4 | 1000 | 500 | 2.0× | 0.200 | 2.200 | 11.0× |",
		"| mixed 2–50 KB | 0 ms | 8 | 1 | 900 | 450 | 2.0× | 0.135 | 1.890 | 14.0× |",
		"| 3/2 | 0/2 |",
		"| 4/1 | 0/0 |",
		"| 64x50KB | 0 ms | 64 | 4 | 0 | - | - |",
		"target CPU/msg ≥10× lower than the chain (conc 8, warm, 1 msgs/session): 14.0× (0.135 vs 1.890 ms) — MET",
		"target CPU/msg ≥10× lower than the chain (conc 8, warm, 4 msgs/session): 11.0× (0.200 vs 2.200 ms) — MET",
		"CPU/msg at conc 1, 1 msg/session (a wake-up per event): ours 0.200 ms, chain 1.600 ms, 8.0×",
		"target EOM p99 < 2 ms (warm, conc 8, as fast as the sessions go: the machine saturated): 1.00 ms — MET",
		"target EOM p99 < 2 ms (warm, conc 8, 4 msgs/session, 500 msg/s offered): 0.80 ms (content phase 0.90 ms) — MET",
		"  the chain at the same rate: EOM p99 1.50 ms, content phase p99 4.00 ms",
		"| mixed, 500 msg/s offered | 0 ms | 8 |",
		"target throughput ≥20× the chain (20 ms DNS, conc 1): 16.0× — NOT MET",
		"target peak RSS < 100 MB (64x50KB, conc 64): 120.0 MB — NOT MET",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}
