#!/usr/bin/env bash
# What the operations tests need (Debian 12, as root): promtool, from
# Debian's prometheus package, validates the /metrics text
# (tests/daemon_metrics.rs); man-db renders the man pages
# (tests/man_pages.rs). No recommends: the web UI's assets are not needed.
set -euo pipefail
if command -v promtool >/dev/null 2>&1 && command -v man >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
packages=(prometheus man-db groff-base)
apt-get install -y --no-install-recommends "${packages[@]}" >/dev/null \
    || { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${packages[@]}" >/dev/null; }
# The package's service is not wanted on a CI machine.
if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
promtool --version | head -1
