#!/usr/bin/env bash
# What building greymilter and its tools needs beside Rust (Debian 12, as root):
# a C and C++ toolchain (build-essential: libfuzzer-sys compiles libFuzzer from
# C++ for .ci/fuzz-smoke.sh; cc links every crate), pkg-config, perl (free ports
# in benches/lib.sh) and valgrind (benches/callgrind-rcpt.sh). Idempotent and
# silent when everything is in place.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ci_need_cargo install-build.sh
mapfile -t missing < <(ci_missing build-essential pkg-config perl valgrind)
ci_install install-build.sh "${missing[@]}"
