#!/bin/bash
# bench/compare.sh — dmarc-milter side by side with Debian's OpenDKIM → OpenDMARC
# chain, on the same corpus and the same DNS data, driven by cmd/milterbench
# exactly as Postfix drives milters. Not part of CI (make compare); needs root
# (apt-get, port 53 on a loopback address, unshare -m) and takes ~20 minutes
# with the default matrix.
#
# Environment (defaults in brackets):
#   WORK       scratch directory                        [mktemp -d]
#   DNS_IP     loopback address for the DNS server      [127.0.0.53]
#   CONCS      concurrencies                             [1 8 32]
#   PERS       messages per SMTP session, i.e. per milter connection
#              (Postfix opens one per session; inbound MX traffic is mostly
#              one message per session)                  [1 4]
#   DELAYS     DNS answer delays                         [0 20ms]
#   REPEAT     A/B alternations per point                [3]
#   COUNT      messages per run (bounded by DURATION)    [3000]
#   DURATION   bound of one measured run                 [15s]
#   WARMUP     messages before each measured run         [100]
#   RATE       offered msg/s of the paced latency runs (concurrency 8, warm;
#              about half of what the chain manages here; 0: skip them) [500]
#   PROFILE    1: also take a 10 s CPU profile of dmarc-milter under load
#              (concurrency 8, PROFILE_PER messages per session) [0]
#   PROFILE_PER messages per session of the profiled run       [1]
#   METRICS    dmarc-milter's metrics and pprof listener       [127.0.0.1:9899]
#
# Output: every run's report in $WORK/runs.txt, the table in $WORK/table.md
# (also printed), daemon logs in $WORK.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$(mktemp -d /tmp/milterbench.XXXXXX)}
DNS_IP=${DNS_IP:-127.0.0.53}
CONCS=${CONCS:-"1 8 32"}
PERS=${PERS:-"1 4"}
DELAYS=${DELAYS:-"0 20ms"}
REPEAT=${REPEAT:-3}
COUNT=${COUNT:-3000}
DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-100}
RATE=${RATE:-500}
PROFILE=${PROFILE:-0}
PROFILE_PER=${PROFILE_PER:-1}
METRICS=${METRICS:-127.0.0.1:9899}
export PATH=$PATH:/usr/local/go/bin

mkdir -p "$WORK"
cd "$ROOT"
echo "compare: work directory $WORK"

# --- peers -------------------------------------------------------------------
if ! command -v opendkim >/dev/null || ! command -v opendmarc >/dev/null; then
	echo "compare: installing opendkim and opendmarc (Debian)"
	# Package scripts do not start daemons on these machines (policy-rc.d).
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q opendkim opendmarc >"$WORK/apt.log"
fi

# OpenDMARC needs a public-suffix list that covers the corpus TLD ("example"),
# or it finds no organizational domain and ignores sp=.
{
	if [ -r /usr/share/publicsuffix/public_suffix_list.dat ]; then
		cat /usr/share/publicsuffix/public_suffix_list.dat
	fi
	printf '\n// milterbench corpus TLD\nexample\n'
} >"$WORK/public_suffix_list.dat"
for f in opendkim opendmarc; do
	sed -e "s|@WORK@|$WORK|g" -e "s|@DNS_IP@|$DNS_IP|g" "bench/$f.conf.in" >"$WORK/$f.conf"
done
echo "nameserver $DNS_IP" >"$WORK/resolv.conf"
sed -e "s|^listen = .*|listen = \"$METRICS\"|" bench/dmarc-milter.toml >"$WORK/dmarc-milter.toml"

# --- builds --------------------------------------------------------------------
go build -trimpath -o "$WORK/milterbench" ./cmd/milterbench
go build -trimpath -o "$WORK/dmarc-milter" ./cmd/dmarc-milter

# --- daemons (only the PIDs started here are stopped) ----------------------------
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

if ss -lun | awk '{print $4}' | grep -qx "$DNS_IP:53"; then
	echo "compare: $DNS_IP:53 is taken; set DNS_IP" >&2
	exit 1
fi

"$WORK/dmarc-milter" serve --config "$WORK/dmarc-milter.toml" --listen "unix:$WORK/dmarc-milter.sock" \
	--authserv-id mx.bench.example --nameserver "$DNS_IP:53" >"$WORK/dmarc-milter.log" 2>&1 &
PIDS+=($!)
opendkim -f -x "$WORK/opendkim.conf" >"$WORK/opendkim.log" 2>&1 &
PIDS+=($!)
# OpenDMARC (and libspf2) resolve through /etc/resolv.conf: give them ours in a
# private mount namespace instead of changing the machine's resolver.
unshare -m sh -c "mount --bind '$WORK/resolv.conf' /etc/resolv.conf && exec opendmarc -f -c '$WORK/opendmarc.conf'" \
	>"$WORK/opendmarc.log" 2>&1 &
PIDS+=($!)

OURS=(--milter "unix:$WORK/dmarc-milter.sock")
CHAIN=(--milter "unix:$WORK/opendkim.sock" --milter "unix:$WORK/opendmarc.sock")

# bench LABEL ARGS... runs milterbench once and keeps its report.
bench() {
	local label=$1
	shift
	echo "compare: $label $*" >&2
	"$WORK/milterbench" run --label "$label" --dns-listen "$DNS_IP:53" "$@" | tee -a "$WORK/runs.txt" | grep -v '^RESULT' >&2
}
target_args() {
	if [ "$1" = ours ]; then echo "${OURS[@]}"; else echo "${CHAIN[@]}"; fi
}

: >"$WORK/runs.txt"
# Cold caches: the first pass over the corpus (480 messages) of freshly started milters.
for t in ours chain; do
	# shellcheck disable=SC2046
	bench "$t/cold" $(target_args $t) --concurrency 8 --warmup 0 --count 480
done

# The matrix, alternating which milter runs first at each repetition.
for delay in $DELAYS; do
	for conc in $CONCS; do
		for per in $PERS; do
			for rep in $(seq 1 "$REPEAT"); do
				order="ours chain"
				if [ $((rep % 2)) -eq 0 ]; then order="chain ours"; fi
				for t in $order; do
					# shellcheck disable=SC2046
					bench "$t" $(target_args $t) --concurrency "$conc" --per-session "$per" --dns-delay "$delay" \
						--count "$COUNT" --duration "$DURATION" --warmup "$WARMUP"
				done
			done
		done
	done
done

# Latency below saturation: both at the same offered rate (--rate), alternating.
if [ "$RATE" != 0 ]; then
	for per in $PERS; do
		for rep in $(seq 1 "$REPEAT"); do
			order="ours chain"
			if [ $((rep % 2)) -eq 0 ]; then order="chain ours"; fi
			for t in $order; do
				# shellcheck disable=SC2046
				bench "$t/paced$RATE" $(target_args $t) --concurrency 8 --per-session "$per" --rate "$RATE" \
					--count "$COUNT" --duration "$DURATION" --warmup "$WARMUP"
			done
		done
	done
fi

# Memory: 64 concurrent sessions carrying 50 KB messages.
for t in ours chain; do
	# shellcheck disable=SC2046
	bench "$t/64x50KB" $(target_args $t) --concurrency 64 --body-min 51200 --body-max 51200 \
		--count 2000 --duration "$DURATION" --warmup 200
done

if [ "$PROFILE" = 1 ]; then
	echo "compare: profiling dmarc-milter (10 s at concurrency 8, $PROFILE_PER per session)" >&2
	curl -s -o "$WORK/dmarc-milter.cpu.pprof" "http://$METRICS/debug/pprof/profile?seconds=10" &
	CURL=$!
	"$WORK/milterbench" run --label ours/profile --dns-listen "$DNS_IP:53" "${OURS[@]}" --concurrency 8 \
		--per-session "$PROFILE_PER" --count 0 --duration 12s --warmup 0 >>"$WORK/profile-run.txt"
	wait "$CURL"
	go tool pprof -top -nodecount=40 "$WORK/dmarc-milter" "$WORK/dmarc-milter.cpu.pprof" >"$WORK/profile.txt" 2>&1 || true
	echo "compare: profile in $WORK/profile.txt" >&2
fi

{
	echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r)"
	echo "peers: $(opendkim -V 2>&1 | head -1); $(opendmarc -V 2>&1 | head -1)"
	echo
	"$WORK/milterbench" table <"$WORK/runs.txt"
} | tee "$WORK/table.md"
