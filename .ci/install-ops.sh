#!/usr/bin/env bash
# What the operations tests need (Debian 12, as root): promtool, from
# Debian's prometheus package, validates the /metrics text
# (tests/daemon_metrics.rs); man-db renders the man pages
# (tests/man_pages.rs). No recommends: the web UI's assets are not needed;
# no service starts (policy-rc.d guard in ci_install). Idempotent and
# silent when everything is in place.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
mapfile -t missing < <(ci_missing prometheus man-db groff-base)
ci_install install-ops.sh "${missing[@]}"
