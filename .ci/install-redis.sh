#!/usr/bin/env bash
# Install redis-server and redis-sentinel for the cluster tests (tests/cluster_*.rs), on
# Debian 12, as root, without starting any system service: every test starts its own
# redis-server on a free loopback port with a temporary directory. Idempotent and silent
# when everything is in place.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
mapfile -t missing < <(ci_missing redis-server redis-sentinel)
ci_install install-redis.sh "${missing[@]}"
