#!/usr/bin/env bash
# release.sh [OUTDIR]: the release files of this checkout in OUTDIR (default
# dist/): the .deb for linux/amd64 and linux/arm64, the static binary of
# each (taken out of its package, so that the two are the same bytes), and
# SHA256SUMS over all of them. Everything is reproducible (build-deb.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/dist}
cd "$root"
mkdir -p "$out"
version=$(scripts/version.sh)
files=()
for arch in amd64 arm64; do
	deb=$(scripts/build-deb.sh "$arch" "$out")
	bin=dmarc-milter_${version}_linux_$arch
	dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/sbin/dmarc-milter >"$out/$bin"
	chmod 0755 "$out/$bin"
	touch -d "@$(git log -1 --format=%ct)" "$out/$bin"
	files+=("$(basename "$deb")" "$bin")
done
(cd "$out" && sha256sum "${files[@]}" >SHA256SUMS && cat SHA256SUMS)
