#!/bin/bash
# bench/loadbench.sh — a quick load run of dmarc-milter alone (make loadbench):
# no root, no peers, DNS served by milterbench on a loopback port. Takes about
# two minutes: a cold pass over the corpus, then warm runs at concurrency 1
# and 8 with one and with four messages per SMTP session (milter
# connection; inbound MX traffic is mostly one), and at concurrency 64 with
# 50 KB messages, for peak memory.
#
# Environment: WORK [mktemp -d], DNS_ADDR [127.0.0.1:5353], COUNT [3000],
# DURATION [15s], PERS (messages per session) ["1 4"].
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$(mktemp -d /tmp/loadbench.XXXXXX)}
DNS_ADDR=${DNS_ADDR:-127.0.0.1:5353}
COUNT=${COUNT:-3000}
DURATION=${DURATION:-15s}
PERS=${PERS:-"1 4"}
export PATH=$PATH:/usr/local/go/bin
cd "$ROOT"

go build -trimpath -o "$WORK/milterbench" ./cmd/milterbench
go build -trimpath -o "$WORK/dmarc-milter" ./cmd/dmarc-milter
grep -v -E '^(listen|pprof) *=' bench/dmarc-milter.toml >"$WORK/dmarc-milter.toml"

"$WORK/dmarc-milter" serve --config "$WORK/dmarc-milter.toml" --listen "unix:$WORK/dmarc-milter.sock" \
	--authserv-id mx.bench.example --nameserver "$DNS_ADDR" >"$WORK/dmarc-milter.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait 2>/dev/null || true' EXIT INT TERM

run() {
	"$WORK/milterbench" run --dns-listen "$DNS_ADDR" --milter "unix:$WORK/dmarc-milter.sock" "$@" | tee -a "$WORK/runs.txt"
}
: >"$WORK/runs.txt"
run --label ours/cold --concurrency 8 --warmup 0 --count 480
for per in $PERS; do
	for conc in 1 8; do
		run --label ours --concurrency "$conc" --per-session "$per" --count "$COUNT" --duration "$DURATION" --warmup 100
	done
done
run --label ours/64x50KB --concurrency 64 --body-min 51200 --body-max 51200 --count 2000 --duration "$DURATION" --warmup 200
"$WORK/milterbench" table <"$WORK/runs.txt"
