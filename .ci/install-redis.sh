#!/usr/bin/env bash
# Install redis-server, redis-sentinel and redis-cli (redis-tools: `redis-cli --cluster
# create` joins the sharded cluster of tests/cluster_sharded.rs) for the cluster tests, on
# Debian 12, as root, without starting any system service: every test starts its own
# redis-server on a free loopback port with a temporary directory. Idempotent and silent
# when everything is in place.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
mapfile -t missing < <(ci_missing redis-server redis-sentinel redis-tools)
ci_install install-redis.sh "${missing[@]}"
