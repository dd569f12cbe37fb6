#!/usr/bin/env bash
# check-reproducible.sh [ARCH]: build the .deb of HEAD in two fresh clones
# and check that the two files are byte for byte the same.
#
# The two builds differ in what must not matter: the checkout's path, the
# umask at clone time (file modes in the checkout), the time zone, the
# locale, the files' times (the second clone is made a second later), and
# the Go build cache (the second build starts from an empty one unless
# REPRO_SHARED_CACHE=1, so that a cached artefact cannot hide a difference).
# Prints the SHA-256 of the package; exits 1 when the builds differ, with
# diffoscope's report when it is installed, else the differing members.
set -euo pipefail
arch=${1:-amd64}
root=$(cd "$(dirname "$0")/.." && pwd)
commit=$(git -C "$root" rev-parse HEAD)
export PATH=$PATH:/usr/local/go/bin

work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

clone() { # clone DIR UMASK
	(umask "$2" && git clone -q --no-checkout "$root" "$1" && git -C "$1" checkout -q --detach "$commit")
}

clone "$work/a" 022
sleep 1
clone "$work/b" 077

debA=$(TZ=UTC LANG=C.UTF-8 "$work/a/scripts/build-deb.sh" "$arch" "$work/out-a")
if [ "${REPRO_SHARED_CACHE:-}" = 1 ]; then
	cache=$(go env GOCACHE)
else
	cache=$work/gocache
fi
debB=$(TZ=Pacific/Auckland LANG=de_DE.UTF-8 GOCACHE=$cache "$work/b/scripts/build-deb.sh" "$arch" "$work/out-b")

if [ "$(basename "$debA")" != "$(basename "$debB")" ]; then
	echo "check-reproducible: file names differ: $(basename "$debA") $(basename "$debB")" >&2
	exit 1
fi
if cmp -s "$debA" "$debB"; then
	sha256sum "$debA" | sed "s|$work/out-a/||"
	exit 0
fi
echo "check-reproducible: $(basename "$debA") differs between the two builds of $commit" >&2
if command -v diffoscope >/dev/null; then
	diffoscope "$debA" "$debB" >&2 || true
else
	for d in a b; do
		mkdir -p "$work/x-$d"
		deb=$work/out-$d/$(basename "$debA")
		dpkg-deb -R "$deb" "$work/x-$d"
		(cd "$work/x-$d" && find . -type f -exec sha256sum {} + | sort -k2) >"$work/sums-$d"
		dpkg-deb -c "$deb" >"$work/list-$d"
		ar tv "$deb" >>"$work/list-$d"
	done
	diff "$work/sums-a" "$work/sums-b" >&2 || true
	diff "$work/list-a" "$work/list-b" >&2 || true
fi
exit 1
