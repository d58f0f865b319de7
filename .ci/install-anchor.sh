#!/usr/bin/env bash
# What benches/anchor-bench.sh needs to build milter-greylist 4.6.2, the anchor measured beside
# greymilter (Debian 12, as root): Debian's libmilter (the Sendmail milter library the anchor
# links), flex and bison for its configuration and dump parsers, and a C toolchain. Build
# dependencies of a benchmark only: nothing of milter-greylist enters the project or the package.
# Idempotent; a re-run on a ready machine touches nothing.
set -euo pipefail
packages=(libmilter-dev flex bison gcc make libc6-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-anchor.sh: missing ${missing[*]}; run as root to install them" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=300)
apt-get install "${apt_opts[@]}" "${missing[@]}" >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install "${apt_opts[@]}" "${missing[@]}" >/dev/null; }
echo "install-anchor.sh: installed ${missing[*]}"
