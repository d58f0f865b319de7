#!/usr/bin/env bash
# Install redis-server and redis-sentinel for the cluster tests (tests/cluster_*.rs), on
# Debian 12, as root, without starting any system service: every test starts its own
# redis-server on a free loopback port with a temporary directory. Idempotent; a re-run on a
# ready machine touches nothing.
set -euo pipefail

PACKAGES=(redis-server redis-sentinel)

if [ "$(id -u)" != 0 ]; then
    echo "install-redis.sh: must run as root" >&2
    exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    # Maintainer scripts must not start the system redis; only remove the guard if we created it.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" ||
        { apt-get update -q && apt-get install -y -q --no-install-recommends \
            -o DPkg::Lock::Timeout=300 "${missing[@]}"; }
fi

# The packages' services may have been started by an earlier install without the guard;
# the tests never use them, so they are left alone rather than stopped here.
redis-server --version
echo "install-redis.sh: done"
