#!/usr/bin/env bash
# build-deb.sh ARCH [OUTDIR]: build dmarc-milter_VERSION_ARCH.deb (ARCH is a
# Go and Debian architecture: amd64, arm64) from this checkout into OUTDIR
# (default dist/), with dpkg-deb over a staged tree. No network beyond the Go
# module proxy (for modules not in the module cache yet).
#
# Reproducible: the same commit gives the same bytes in any checkout
# (scripts/check-reproducible.sh). The binary is static (CGO_ENABLED=0),
# built with -trimpath and no build id; every file's time is
# SOURCE_DATE_EPOCH (the last commit's time unless set), modes are fixed
# here, owners are root (--root-owner-group), dpkg-deb sorts the members and
# takes its archive times from SOURCE_DATE_EPOCH, man pages and the
# changelog are compressed with gzip -9n (no name, no time), and xz runs on
# one thread at a fixed level.
set -euo pipefail

arch=${1:?usage: build-deb.sh ARCH [OUTDIR]}
root=$(cd "$(dirname "$0")/.." && pwd)
out=${2:-$root/dist}
cd "$root"
export PATH=$PATH:/usr/local/go/bin

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
export TZ=UTC LC_ALL=C
version=$(scripts/version.sh)
commit=$(git rev-parse HEAD)
umask 022

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pkg=$work/pkg
doc=$pkg/usr/share/doc/dmarc-milter

# The binary. GOFLAGS is ours alone: a -buildvcs or -race in the caller's
# environment must not change the package.
GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOOS=linux GOARCH=$arch \
	go build -trimpath -ldflags "-s -w -buildid= -X main.version=$version -X main.commit=$commit" \
	-o "$pkg/usr/sbin/dmarc-milter" ./cmd/dmarc-milter

install -D -m 0644 packaging/debian/dmarc-milter.toml "$pkg/etc/dmarc-milter/dmarc-milter.toml"
install -D -m 0644 deploy/systemd/dmarc-milter.service "$pkg/lib/systemd/system/dmarc-milter.service"
install -D -m 0644 docs/man/dmarc-milter.8 "$pkg/usr/share/man/man8/dmarc-milter.8"
install -D -m 0644 docs/man/dmarc-milter.toml.5 "$pkg/usr/share/man/man5/dmarc-milter.toml.5"
install -D -m 0644 docs/install.md "$doc/install.md"
install -D -m 0644 deploy/postfix/main.cf.fragment "$doc/postfix/main.cf.fragment"
install -D -m 0644 deploy/postfix/master.cf.md "$doc/postfix/master.cf.md"
install -D -m 0644 deploy/dovecot/90-dmarc-milter.conf "$doc/dovecot/90-dmarc-milter.conf"
install -D -m 0644 deploy/dovecot/dmarc-quarantine.sieve "$doc/dovecot/dmarc-quarantine.sieve"
install -D -m 0644 deploy/dmarc-milter.toml "$doc/examples/dmarc-milter.toml"
install -D -m 0644 packaging/debian/lintian-overrides "$pkg/usr/share/lintian/overrides/dmarc-milter"

# The changelog of a native package: one entry for this build.
{
	echo "dmarc-milter ($version) unstable; urgency=medium"
	echo
	echo "  * Built from commit"
	echo "    $commit."
	echo
	echo " -- dmarc-milter maintainers <maintainers@users.noreply.r-seed-6344a87f.example>  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} >"$doc/changelog"

# The copyright file: ours, then the licences of everything linked into the
# static binary (the Go standard library and each module), from the module
# cache.
{
	cat packaging/debian/copyright.in
	printf '\nThe binary /usr/sbin/dmarc-milter is statically linked with the Go\nstandard library and these modules; their licences follow.\n'
	goroot=$(go env GOROOT)
	printf '\n%s\nGo standard library %s\n\n' "------------------------------------------------------------------------" "$(go env GOVERSION)"
	cat "$goroot/LICENSE"
	GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOOS=linux GOARCH=$arch \
		go list -deps -f '{{with .Module}}{{if not .Main}}{{.Path}} {{.Version}} {{.Dir}}{{end}}{{end}}' ./cmd/dmarc-milter |
		sort -u | while read -r path ver dir; do
			printf '\n%s\n%s %s\n\n' "------------------------------------------------------------------------" "$path" "$ver"
			lic=$(find "$dir" -maxdepth 1 -type f \( -iname 'LICENSE*' -o -iname 'COPYING*' -o -iname 'LICENCE*' \) | sort | head -1)
			if [ -z "$lic" ]; then
				echo "build-deb: no licence file in $dir" >&2
				exit 1
			fi
			# Debian ships the Apache licence (Policy 12.5): refer to it.
			if grep -q 'Apache License' "$lic" && grep -q 'Version 2.0' "$lic"; then
				echo "Licensed under the Apache License, Version 2.0; on Debian systems its"
				echo "text is in /usr/share/common-licenses/Apache-2.0."
			else
				cat "$lic"
			fi
		done
} >"$doc/copyright"

gzip -9n "$pkg/usr/share/man/man8/dmarc-milter.8" "$pkg/usr/share/man/man5/dmarc-milter.toml.5" "$doc/changelog"

# Control files.
mkdir -p "$pkg/DEBIAN"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$pkg/DEBIAN/"
echo /etc/dmarc-milter/dmarc-milter.toml >"$pkg/DEBIAN/conffiles"
(cd "$pkg" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' | sort -z |
	xargs -0 md5sum) >"$pkg/DEBIAN/md5sums"
# Installed-Size in KiB, as dpkg-gencontrol counts it: each file rounded up
# to a KiB, one per directory.
size=$(cd "$pkg" && find . -path ./DEBIAN -prune -o \( -type f -printf '%s\n' \) -o \( -type d -printf '1024\n' \) |
	awk '{ s += int(($1 + 1023) / 1024) } END { print s }')
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" packaging/debian/control.in >"$pkg/DEBIAN/control"
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles" "$pkg/DEBIAN/md5sums"

# Fixed modes and times whatever the checkout's umask and clock.
find "$pkg" -type d -exec chmod 0755 {} +
find "$pkg" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$out"
deb=$out/dmarc-milter_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz -z6 --threads-max=1 --build "$pkg" "$deb" >/dev/null
echo "$deb"
