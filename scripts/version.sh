#!/usr/bin/env bash
# version.sh: the version of this checkout, as a Debian version (valid for
# the package and printed by `dmarc-milter version`):
#   a commit tagged v1.2.3                   -> 1.2.3
#   5 commits after the tag v1.2.3           -> 1.2.3+git5.abcdef012345
#   no tag yet                               -> 0~git20261207081100.abcdef012345
#                                               (the commit's UTC time, so later commits sort higher)
# and "+dirty" when the tree has uncommitted changes to tracked files.
set -euo pipefail
cd "$(dirname "$0")/.."

short=$(git rev-parse --short=12 HEAD)
if desc=$(git describe --tags --match 'v[0-9]*' --long 2>/dev/null); then
	# v1.2.3-5-gabcdef0: the tag may itself contain dashes (v1.2.3-rc1).
	n=${desc%-g*}
	n=${n##*-}
	tag=${desc%-*-g*}
	base=${tag#v}
	base=${base//-/\~}
	if [ "$n" = 0 ]; then
		v=$base
	else
		v=$base+git$n.$short
	fi
else
	v=0~git$(TZ=UTC git log -1 --date=format-local:%Y%m%d%H%M%S --format=%cd).$short
fi
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
	v=$v+dirty
fi
echo "$v"
