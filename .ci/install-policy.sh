#!/usr/bin/env bash
# What the policy front end's and `greymilter import`'s tests need besides Postfix
# (.ci/install-mtas.sh), on Debian 12, as root, without starting any system daemon:
#
#   postgrey   the policy service greymilter replaces: tests/import_real.rs starts a private
#              one on loopback (its own --dbdir) to record tuples; benchmarks compare with it
#   db-util    db_dump, which prints postgrey's Berkeley DB databases as text for the import
#
# postgrey's package would start its daemon on port 10023: a policy-rc.d guard (removed again
# only if created here) keeps maintainer scripts from starting anything. Idempotent.
set -euo pipefail

PACKAGES=(postgrey db-util)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-policy.sh: postgrey $(dpkg-query -W -f='${Version}' postgrey) and db-util already in place"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-policy.sh: missing ${missing[*]}; run as root to install them" >&2
    exit 1
fi
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=300)
apt-get install "${APT_OPTS[@]}" "${missing[@]}" >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install "${APT_OPTS[@]}" "${missing[@]}" >/dev/null; }
echo "install-policy.sh: installed ${missing[*]}"
