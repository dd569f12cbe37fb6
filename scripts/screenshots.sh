#!/usr/bin/env bash
# screenshots.sh: the dashboard's screenshots in docs/img/ (docs/dashboard.md),
# taken by the browser test over its fixture (headless chromium). Run by
# `make screenshots` by hand; CI never rewrites them.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p docs/img
SCREENSHOT_DIR="$PWD/docs/img" go test -count=1 -run '^TestBrowserPages$/^sqlite$' ./internal/web
ls -l docs/img/*.png
