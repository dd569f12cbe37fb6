#!/usr/bin/env bash
# webbench.sh: server time of every dashboard page over a year of generated
# data, on SQLite and PostgreSQL (internal/web TestWebBench). Not in CI.
#
# The issue's size is the default: 100 of our domains x 365 days x 50
# reporters x 20 sources per report (36.5 million received records), and a
# year of inbound data for 1 000 sending domains. On a small machine pass a
# smaller WEBBENCH_REPORTERS (or DOMAINS, DAYS) and say so with the figures:
#
#   WEBBENCH_REPORTERS=10 scripts/webbench.sh
#
# Other knobs: WEBBENCH_LOADS (30), WEBBENCH_ENGINES (sqlite,postgresql),
# WEBBENCH_DIR (where the SQLite file goes; default a temp dir).
# The query plans are written to bench/webbench-plans.txt (those of the
# last full-size run are in docs/webbench-plans.md).
set -euo pipefail
cd "$(dirname "$0")/.."
export WEBBENCH=1
export WEBBENCH_PLANS="${WEBBENCH_PLANS:-$PWD/bench/webbench-plans.txt}"
rm -f "$WEBBENCH_PLANS"
go test -count=1 -timeout 6h -run '^TestWebBench$' -v ./internal/web | grep --line-buffered -E 'RESULT|generated|day [0-9]+ of|FAIL|ok|PASS'
echo "query plans: $WEBBENCH_PLANS"
