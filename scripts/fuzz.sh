#!/usr/bin/env bash
# Runs every Go fuzz target in the module for the given time each.
# Usage: scripts/fuzz.sh 30s [packages, default ./...]
#
# Go 1.26's fuzz coordinator can fail a target with a bare "context deadline
# exceeded" when -fuzztime's wall-clock deadline ends while a worker is still
# answering (go.dev/issue/75804, fixed in Go 1.27); the machine being busy is
# enough. Such a run found nothing: no failing input was written. The script
# then runs the same target once more for the same number of executions
# (-fuzztime Nx), which has no deadline and so cannot hit the race; a real
# crasher still fails, and so does that second run failing for any reason.
set -euo pipefail
t=${1:-30s}
pkgs=${2:-./...}
cd "$(dirname "$0")/.."
found=0
reruns=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
count() { if [ -d "$1" ]; then find "$1" -type f | wc -l; else echo 0; fi; }
while IFS= read -r pkg; do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    found=$((found+1))
    echo "fuzz: $pkg $f for $t"
    corpus="$dir/testdata/fuzz/$f"
    before=$(count "$corpus")
    if go test -run '^$' -fuzz "^${f}\$" -fuzztime "$t" "$pkg" 2>&1 | tee "$out"; then
      continue
    fi
    after=$(count "$corpus")
    execs=$(grep -o 'execs: [0-9]*' "$out" | tail -1 | grep -o '[0-9]*' || true)
    if grep -qx '    context deadline exceeded' "$out" && ! grep -q 'Failing input written' "$out" &&
      [ "$before" = "$after" ] && [ -n "$execs" ] && [ "$execs" -gt 0 ]; then
      reruns=$((reruns+1))
      echo "fuzz: $f hit Go's fuzztime deadline race with no failing input; again for ${execs} executions"
      go test -run '^$' -fuzz "^${f}\$" -fuzztime "${execs}x" "$pkg"
      continue
    fi
    exit 1
  done
done < <(go list "$pkgs")
echo "fuzz: $found targets, $reruns run again after the deadline race"
