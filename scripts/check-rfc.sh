#!/usr/bin/env bash
# Checks that every "RFC NNNN §x.y" cited in the Go sources has a row in
# docs/standards.md, so that the table of what we implement cannot fall
# behind the code. Usage: scripts/check-rfc.sh
set -euo pipefail
cd "$(dirname "$0")/.."
table=docs/standards.md
missing=0
while read -r ref; do
  if ! grep -qF "| $ref |" "$table"; then
    echo "check-rfc: $ref is cited in the code but has no row in $table:"
    grep -rnF --include='*.go' "$ref" . | head -3 | sed 's/^/    /'
    missing=$((missing+1))
  fi
done < <(git ls-files '*.go' | xargs grep -hoE 'RFC ?[0-9]{4} §[0-9]+(\.[0-9]+)*' | sed -E 's/RFC ?/RFC /' | sort -u)
if [ "$missing" -gt 0 ]; then
  echo "check-rfc: $missing references missing from $table"
  exit 1
fi
echo "check-rfc: every cited section has a row in $table"
