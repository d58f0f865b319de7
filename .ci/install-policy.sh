#!/usr/bin/env bash
# What the policy front end's and `greymilter import`'s tests need besides Postfix
# (.ci/install-mtas.sh), on Debian 12, as root, without starting any system daemon:
#
#   postgrey   the policy service greymilter replaces: tests/import_real.rs starts a private
#              one on loopback (its own --dbdir) to record tuples; benchmarks compare with it
#   db-util    db_dump, which prints postgrey's Berkeley DB databases as text for the import
#
# postgrey's package would start its daemon on port 10023: ci_install's policy-rc.d guard
# keeps maintainer scripts from starting anything. Idempotent and silent when in place.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
mapfile -t missing < <(ci_missing postgrey db-util)
ci_install install-policy.sh "${missing[@]}"
