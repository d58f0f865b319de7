#!/usr/bin/env bash
# What benches/anchor-bench.sh needs to build milter-greylist 4.6.2, the anchor measured beside
# greymilter (Debian 12, as root): Debian's libmilter (the Sendmail milter library the anchor
# links), flex and bison for its configuration and dump parsers, and a C toolchain. Build
# dependencies of a benchmark only: nothing of milter-greylist enters the project or the package.
# Idempotent and silent when everything is in place.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
mapfile -t missing < <(ci_missing libmilter-dev flex bison gcc make libc6-dev)
ci_install install-anchor.sh "${missing[@]}"
