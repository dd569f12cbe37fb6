#!/usr/bin/env bash
# Import speed of `dmarc-milter report import` (not run in CI): writes N
# gzipped aggregate reports (R records each, 20 reporters, a year of days,
# 200 source addresses) and imports them into a fresh SQLite store (or the
# store named by STORE=postgres://...), without reverse DNS, then prints
# reports/s and rows/s. The files and the store are removed afterwards.
# Usage: scripts/importbench.sh [N=10000] [R=10]
set -euo pipefail
n=${1:-10000}
r=${2:-10}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/dmarc-milter" ./cmd/dmarc-milter
/usr/bin/python3 - "$work/reports" "$n" "$r" <<'PY'
import gzip, os, sys
out, n, r = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out)
day0 = 1733011200  # 2024-12-01 00:00 UTC
rec = ("<record><row><source_ip>{ip}</source_ip><count>{c}</count><policy_evaluated><disposition>none</disposition>"
       "<dkim>{dk}</dkim><spf>{sp}</spf></policy_evaluated></row><identifiers><header_from>example.com</header_from>"
       "<envelope_from>{ef}</envelope_from></identifiers><auth_results><dkim><domain>example.com</domain><selector>s{s}</selector>"
       "<result>{dk}</result></dkim><spf><domain>{ef}</domain><scope>mfrom</scope><result>pass</result></spf></auth_results></record>")
for i in range(n):
    org, day = i % 20, (i // 20) % 365
    begin = day0 + day * 86400
    recs = "".join(rec.format(ip="198.51.%d.%d" % ((i + j) % 4, (i * 7 + j) % 50 + 1), c=1 + (i + j) % 97,
                              dk="pass" if j % 5 else "fail", sp="pass" if j % 3 else "fail",
                              ef="example.com" if j % 3 else "bounce.esp%d.example" % (j % 4), s=j % 3) for j in range(r))
    doc = ("<?xml version=\"1.0\"?><feedback xmlns=\"urn:ietf:params:xml:ns:dmarc-2.0\"><version>1.0</version>"
           "<report_metadata><org_name>reporter%d.example</org_name><email>noreply@reporter%d.example</email>"
           "<report_id>%d</report_id><date_range><begin>%d</begin><end>%d</end></date_range></report_metadata>"
           "<policy_published><domain>example.com</domain><p>reject</p></policy_published>%s</feedback>"
           % (org, org, i, begin, begin + 86400, recs))
    with gzip.open(os.path.join(out, "reporter%d!example.com!%d!%d!%d.xml.gz" % (org, begin, begin + 86400, i)), "wb", 6) as f:
        f.write(doc.encode())
PY
printf '[intake]\ndomains = ["example.com"]\n' > "$work/c.toml"
store=${STORE:-sqlite:$work/store.db}
echo "importbench: $n reports of $r records, store ${store%%:*}, $(nproc) CPUs, $(go version | cut -d' ' -f3)"
echo "importbench: load average $(cut -d' ' -f1-3 /proc/loadavg) (a shared machine makes the wall-clock rate noisy; CPU time below)"
TIMEFORMAT='importbench: import CPU time %Us user + %Ss system, %Rs wall'
time "$work/dmarc-milter" report import --config "$work/c.toml" --store "$store" --no-ptr --quiet "$work/reports"
