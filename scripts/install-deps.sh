#!/usr/bin/env bash
# install-deps.sh: install the Debian packages the tests need: Postfix,
# Dovecot LMTP and Pigeonhole Sieve (integration/), PostgreSQL (the shared
# report store), xmllint (RFC 9990 XSD validation of the reports we build)
# and python3-dkim (an independent ARC implementation; its ARC signer needs
# python3-authres, which Debian lists only as a suggestion), lintian (the
# checks of the .deb; packaging/), groff and man (the man page tests and the
# install test). Idempotent and fast when
# everything is present: it asks dpkg first and runs apt-get only for what
# is missing.
#
# Not root, or not Debian: it prints a loud message and, under CI=true,
# exits non-zero (the integration tests would fail anyway; this says why
# earlier). Locally it exits 0 so that `make test` can go on and the
# integration package skips loudly.
set -euo pipefail

pkgs=(postfix dovecot-core dovecot-lmtpd dovecot-sieve postgresql libxml2-utils python3-dkim python3-authres lintian groff-base man-db chromium)

missing=()
for p in "${pkgs[@]}"; do
	# dpkg -s says "Status: install ok installed" only for a configured package.
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

fail() {
	echo "************************************************************************" >&2
	echo "install-deps: $*" >&2
	echo "install-deps: missing Debian packages: ${missing[*]}" >&2
	echo "install-deps: the integration, store, report and ARC tests need them;" >&2
	echo "install-deps: as root run: apt-get install ${missing[*]}" >&2
	echo "************************************************************************" >&2
	if [ "${CI:-}" = "true" ]; then
		exit 1
	fi
	exit 0
}

if ! command -v apt-get >/dev/null 2>&1; then
	fail "no apt-get here (not Debian?): cannot install"
fi
if [ "$(id -u)" -ne 0 ]; then
	fail "not root: cannot install"
fi

export DEBIAN_FRONTEND=noninteractive
# Without this preseed the postfix package stops at its configuration dialog.
# "No configuration" leaves /etc/postfix without a main.cf: the tests run
# their own private instance and never touch the system one.
echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections

install() {
	apt-get install -y -q --no-install-recommends "${missing[@]}"
}

echo "install-deps: installing ${missing[*]}" >&2
# apt-get update only when the package lists do not know a candidate yet
# (fresh machine) or the install fails with stale lists.
need_update=0
for p in "${missing[@]}"; do
	if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
		need_update=1
	fi
done
if [ $need_update -eq 1 ]; then
	apt-get update -q || fail "apt-get update failed"
fi
if ! install; then
	apt-get update -q || fail "apt-get update failed"
	install || fail "apt-get install failed"
fi
echo "install-deps: done" >&2
