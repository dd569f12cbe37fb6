#!/usr/bin/env bash
# Soak test (issue 8): dmarc-milter under the load generator (cmd/milterbench)
# at CONCURRENCY sessions for DURATION with its mixed corpus (SPF, DKIM, DMARC
# pass/fail/quarantine/reject/temperror, several messages per SMTP session).
#
# Pass: zero errors, zero verdict mismatches, every message answered, and
# goroutines and RSS flat: the idle goroutine count after the run within
# GOROUTINE_SLACK of the idle count before it, and the RSS of the last
# quarter of the run within RSS_SLACK_PCT of the RSS after the first quarter.
#
# Usage: scripts/soak.sh                       # 10 minutes, 32 sessions
#        DURATION=60s scripts/soak.sh          # a short run
# Environment: DURATION (10m), CONCURRENCY (32), DNS_ADDR (127.0.0.1:15353),
# METRICS_ADDR (127.0.0.1:19894), SAMPLE (15 s), OUT (a temp dir),
# GOROUTINE_SLACK (10), RSS_SLACK_PCT (25).
# Needs: go, python3, curl. Not part of make test.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

DURATION=${DURATION:-10m}
CONCURRENCY=${CONCURRENCY:-32}
DNS_ADDR=${DNS_ADDR:-127.0.0.1:15353}
METRICS_ADDR=${METRICS_ADDR:-127.0.0.1:19894}
SAMPLE=${SAMPLE:-15}
GOROUTINE_SLACK=${GOROUTINE_SLACK:-10}
RSS_SLACK_PCT=${RSS_SLACK_PCT:-25}
OUT=${OUT:-$(mktemp -d /tmp/dmarc-soak.XXXXXX)}
mkdir -p "$OUT"

echo "soak: duration $DURATION, concurrency $CONCURRENCY, output in $OUT"
go build -o "$OUT/dmarc-milter" ./cmd/dmarc-milter
go build -o "$OUT/milterbench" ./cmd/milterbench

# The decisions the corpus expectations assume (as bench/dmarc-milter.toml),
# with the metrics listener for the goroutine count.
cat >"$OUT/soak.toml" <<EOF
log_level = "warn"

[actions]
reject_policy = "reject"
quarantine_method = "hold"

[metrics]
listen = "$METRICS_ADDR"
pprof = true
EOF

sock="$OUT/milter.sock"
"$OUT/dmarc-milter" serve --config "$OUT/soak.toml" --listen "unix:$sock" \
	--authserv-id mx.bench.example --nameserver "$DNS_ADDR" >"$OUT/daemon.log" 2>&1 &
daemon=$!
sampler=
cleanup() {
	[ -n "$sampler" ] && kill "$sampler" 2>/dev/null || true
	kill -TERM "$daemon" 2>/dev/null || true
	wait "$daemon" 2>/dev/null || true
}
trap cleanup EXIT

for _ in $(seq 100); do
	curl -sf "http://$METRICS_ADDR/metrics" >/dev/null 2>&1 && break
	sleep 0.1
done

# goroutines: the daemon's own count (go_goroutines); rss: /proc, in KiB.
goroutines() { curl -sf "http://$METRICS_ADDR/metrics" | awk '$1 == "go_goroutines" {print $2}'; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$daemon/status"; }
conns() { curl -sf "http://$METRICS_ADDR/metrics" | awk '$1 ~ /^dmarcmilter_milter_connections/ {print $2; exit}'; }

g0=$(goroutines)
r0=$(rss)
echo "soak: idle before: goroutines $g0, RSS $r0 KiB"

echo "t_s,goroutines,rss_kib" >"$OUT/samples.csv"
(
	start=$(date +%s)
	while kill -0 "$daemon" 2>/dev/null; do
		echo "$(($(date +%s) - start)),$(goroutines),$(rss)" >>"$OUT/samples.csv"
		sleep "$SAMPLE"
	done
) &
sampler=$!

"$OUT/milterbench" run --milter "unix:$sock" --pid "$daemon" --concurrency "$CONCURRENCY" \
	--duration "$DURATION" --count 0 --dns-listen "$DNS_ADDR" --label soak --timeout 30s \
	2>&1 | tee "$OUT/milterbench.txt"

kill "$sampler" 2>/dev/null || true
sampler=
sleep 5 # let the closed sessions end
g1=$(goroutines)
r1=$(rss)
echo "soak: idle after: goroutines $g1, RSS $r1 KiB"
echo "$(date +%s),$g1,$r1" >"$OUT/after.csv"

python3 - "$OUT" "$g0" "$g1" "$r0" "$r1" "$GOROUTINE_SLACK" "$RSS_SLACK_PCT" <<'EOF'
import csv, json, sys
out, g0, g1, r0, r1, gslack, rslack = sys.argv[1], *map(float, sys.argv[2:8])
res = None
for line in open(out + "/milterbench.txt"):
    if line.startswith("RESULT "):
        res = json.loads(line[len("RESULT "):])
if res is None:
    sys.exit("soak: FAIL: milterbench printed no RESULT")
rows = [r for r in csv.DictReader(open(out + "/samples.csv")) if r["goroutines"] and r["rss_kib"]]
loaded = rows[1:]  # the first sample is before the load
q = max(1, len(loaded) // 4)
rss_first = max(float(r["rss_kib"]) for r in loaded[:q]) if loaded else r0
rss_last = max(float(r["rss_kib"]) for r in loaded[-q:]) if loaded else r1
gor = [int(float(r["goroutines"])) for r in loaded]
answered = sum(v for k, v in res["verdicts"].items() if "=" not in k)  # actions; "dmarc=..." keys count results
fails = []
if res["errors"]:
    fails.append(f"{res['errors']} errors: {res.get('error_samples')}")
if res["mismatches"]:
    fails.append(f"{res['mismatches']} verdict mismatches: {res.get('mismatch_samples')}")
if answered != res["messages"] or res["messages"] == 0:
    fails.append(f"{answered} verdicts for {res['messages']} messages")
if g1 > g0 + gslack:
    fails.append(f"goroutines idle {g0:.0f} before, {g1:.0f} after")
if rss_last > rss_first * (1 + rslack / 100):
    fails.append(f"RSS grew from {rss_first:.0f} KiB (first quarter) to {rss_last:.0f} KiB (last quarter)")
summary = {
    "messages": res["messages"], "msg_per_s": round(res["msg_per_s"], 1), "seconds": round(res["seconds"], 1),
    "errors": res["errors"], "mismatches": res["mismatches"], "answered": answered,
    "verdicts": res["verdicts"], "eom_p99_ms": res["eom_p99_ms"],
    "goroutines_idle_before": g0, "goroutines_idle_after": g1,
    "goroutines_loaded_min_max": [min(gor), max(gor)] if gor else None,
    "rss_kib_idle_before": r0, "rss_kib_first_quarter": rss_first, "rss_kib_last_quarter": rss_last,
    "rss_kib_idle_after": r1, "peak_rss_mb": res["peak_rss_mb"], "samples": len(rows),
}
print("SOAK " + json.dumps(summary))
if fails:
    print("soak: FAIL: " + "; ".join(fails))
    sys.exit(1)
print("soak: PASS")
EOF
