# Shared by the .ci/ scripts: `source "$(dirname "$0")/lib.sh"`. Debian 12.
#
# ci_need_root NAME          exit 1 unless root
# ci_need_cargo NAME         exit 1, in one line, unless cargo is recent enough
# ci_missing PACKAGE...      prints the packages not installed
# ci_install NAME PACKAGE... installs them with apt-get: quiet on success (one
#                            line), the whole apt output on failure; no service
#                            starts meanwhile; waits for another dpkg's lock

# Edition 2024 needs cargo 1.85; Debian 12's own cargo (1.63) cannot build it.
CI_CARGO_MIN=1.85

ci_need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "$1: must run as root (it installs Debian packages)" >&2
        exit 1
    fi
}

ci_need_cargo() {
    local v
    v=$(cargo --version 2>/dev/null | awk '{ print $2 }') || v=
    if [ -z "$v" ] || [ "$(printf '%s\n%s\n' "$CI_CARGO_MIN" "${v%%-*}" | sort -V | head -n1)" != "$CI_CARGO_MIN" ]; then
        echo "$1: needs cargo >= $CI_CARGO_MIN (found: ${v:-none}); install stable Rust with rustup (https://rustup.rs), Debian's cargo is too old for edition 2024" >&2
        exit 1
    fi
}

ci_missing() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
    done
}

ci_install() {
    local name=$1; shift
    [ "$#" -gt 0 ] || return 0
    ci_need_root "$name"
    export DEBIAN_FRONTEND=noninteractive
    local log guard=
    log=$(mktemp)
    # Maintainer scripts must not start services (prometheus, redis...) on a
    # host where they would autostart; only a guard we created is removed.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        guard=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    # The package lists first (a fresh image has none); another apt or dpkg
    # run holding the lock is waited for, up to 5 minutes.
    local status=0
    {
        apt-get -o DPkg::Lock::Timeout=300 update -q &&
            apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "$@"
    } >"$log" 2>&1 || status=$?
    if [ -n "$guard" ]; then
        rm -f /usr/sbin/policy-rc.d
        trap - EXIT
    fi
    if [ "$status" != 0 ]; then
        cat "$log" >&2
        rm -f "$log"
        echo "$name: apt-get could not install $*" >&2
        exit 1
    fi
    rm -f "$log"
    echo "$name: installed $*"
}
