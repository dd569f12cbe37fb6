#!/bin/bash
# bench/reportcost.sh — the cost of recording for the aggregate reports
# (make reportcost; issue 13; not in CI): two daemons on the same build and
# configuration, one with [report] enabled = true (SQLite store in WORK,
# schedule external: it only records), one without; cmd/milterbench runs
# against each in turn, alternated, REPEAT times, at concurrency CONC. Prints
# the median CPU per message and EOM latency of each, and their ratio.
#
# Environment: WORK [mktemp -d], DNS_ADDR [127.0.0.1:5354], CONC [8],
# COUNT [30000], DURATION [20s], REPEAT [5], RATE [0: as fast as possible;
# e.g. 500 for the latency below saturation]. Runs must last seconds: the CPU
# figure comes from clock ticks of 10 ms.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$(mktemp -d /tmp/reportcost.XXXXXX)}
DNS_ADDR=${DNS_ADDR:-127.0.0.1:5354}
CONC=${CONC:-8}
COUNT=${COUNT:-30000}
DURATION=${DURATION:-20s}
REPEAT=${REPEAT:-5}
RATE=${RATE:-0}
export PATH=$PATH:/usr/local/go/bin
cd "$ROOT"

go build -trimpath -o "$WORK/milterbench" ./cmd/milterbench
go build -trimpath -o "$WORK/dmarc-milter" ./cmd/dmarc-milter
grep -v -E '^(listen|pprof) *=' bench/dmarc-milter.toml >"$WORK/off.toml"
cp "$WORK/off.toml" "$WORK/on.toml"
cat >>"$WORK/on.toml" <<CONF

[store]
url = "sqlite:$WORK/report.db"

[report]
enabled = true
from = "dmarc@bench.example"
schedule = "external"
CONF

PIDS=()
for mode in off on; do
	"$WORK/dmarc-milter" serve --config "$WORK/$mode.toml" --listen "unix:$WORK/$mode.sock" \
		--authserv-id mx.bench.example --nameserver "$DNS_ADDR" >"$WORK/$mode.log" 2>&1 &
	PIDS+=($!)
done
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT INT TERM

: >"$WORK/runs.txt"
for mode in off on; do # warm both caches
	"$WORK/milterbench" run --dns-listen "$DNS_ADDR" --milter "unix:$WORK/$mode.sock" --label "warm-$mode" \
		--concurrency "$CONC" --count 1000 --warmup 0 >/dev/null
done
for i in $(seq "$REPEAT"); do
	for mode in off on; do
		"$WORK/milterbench" run --dns-listen "$DNS_ADDR" --milter "unix:$WORK/$mode.sock" --label "$mode" \
			--concurrency "$CONC" --count "$COUNT" --duration "$DURATION" --warmup 100 --rate "$RATE" |
			grep '^RESULT ' | tee -a "$WORK/runs.txt"
	done
done

sed 's/^RESULT //' "$WORK/runs.txt" | jq -s -r '
	def median: sort | if length % 2 == 1 then .[length/2|floor] else (.[length/2-1] + .[length/2]) / 2 end;
	def fig(m; f): [.[] | select(.label == m) | f] | median;
	(fig("off"; .milter_cpu_s_per_1000)) as $coff | (fig("on"; .milter_cpu_s_per_1000)) as $con |
	"| recording | runs | CPU ms/msg (median) | EOM p99 ms | content p99 ms | msg/s | mismatches |",
	"|---|---|---|---|---|---|---|",
	(["off", "on"][] as $m |
		"| \($m) | \([.[] | select(.label == $m)] | length) | \(fig($m; .milter_cpu_s_per_1000) * 1000 | round / 1000) | \(fig($m; .eom_p99_ms) * 100 | round / 100) | \(fig($m; .content_p99_ms) * 100 | round / 100) | \(fig($m; .msg_per_s) | round) | \([.[] | select(.label == $m) | .mismatches] | add) |"),
	"",
	"CPU per message, on/off: \(($con / $coff * 1000 | round) / 1000) (target ≤ 1.05)",
	"pairs (on/off): \([range(0; [.[] | select(.label == "off")] | length) as $i | (([.[] | select(.label == "on")][$i].milter_cpu_s_per_1000 / [.[] | select(.label == "off")][$i].milter_cpu_s_per_1000) * 1000 | round / 1000)] | map(tostring) | join(", "))"'
ls -l "$WORK/report.db"* 2>/dev/null || true
echo "work directory: $WORK"
