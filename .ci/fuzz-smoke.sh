#!/usr/bin/env bash
# Fuzz smoke test for CI: builds the cargo-fuzz crate in fuzz/ and runs every
# target for a short, bounded time, starting from the committed corpus in
# fuzz/corpus/<target>/ (seeds and past crashes). Fails on a crash, a panic,
# a hang (an input taking over FUZZ_TIMEOUT s) or a leak; the crashing input
# is left in fuzz/artifacts/<target>/.
#
#   FUZZ_SECONDS   time per target (default 10; 7 targets ≈ 70 s)
#   FUZZ_TIMEOUT   seconds one input may take (default 10)
#   FUZZ_SANITIZER address (default) or none
#   FUZZ_PROFILE   release (default) or dev: unoptimised, builds in less than
#                  half the time and runs each input slower; enough for a smoke
#                  run that replays the corpus (CI uses it)
#   FUZZ_TARGET_DIR where the fuzz crate builds (default fuzz/target). CI gives
#                  the main crate's target/: fuzz/Cargo.lock pins the same
#                  versions and the dev profiles match, so the corpus replay
#                  reuses most of what `cargo test` built. Not the default:
#                  cargo fuzz sets RUSTC_BOOTSTRAP, which proc-macro2's and
#                  thiserror's build scripts watch, so a later `cargo test`
#                  there would rebuild everything downstream of them.
#
# Needs only the stable toolchain: cargo-fuzz passes nightly-only flags, which
# RUSTC_BOOTSTRAP=1 allows. Installs cargo-fuzz if it is missing. New inputs
# the fuzzer finds go to a temporary directory, never into the repository.
# Long local runs: see fuzz/README.md.
set -euo pipefail

cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${FUZZ_SECONDS:-10}
TIMEOUT=${FUZZ_TIMEOUT:-10}
SANITIZER=${FUZZ_SANITIZER:-address}
case ${FUZZ_PROFILE:-release} in
    release) PROFILE=() ;;
    dev) PROFILE=(--dev) ;;
    *) echo "fuzz-smoke: FUZZ_PROFILE must be release or dev" >&2; exit 2 ;;
esac
TARGETS=(frame_decoder session config state_file address control_line postfix_request)

source .ci/lib.sh
ci_need_cargo fuzz-smoke
TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/fuzz/target}

# The corpus replay on the stable compiler (fuzz/tests/corpus.rs, its own workspace), the
# way developers run it without cargo-fuzz: kept compiling and passing.
cargo test --manifest-path fuzz/Cargo.toml --target-dir "$TARGET_DIR" --test corpus --quiet

export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

started=$(date +%s)
# Debug assertions on: integer overflow on hostile input is a finding too.
cargo fuzz build "${PROFILE[@]}" --sanitizer "$SANITIZER" --debug-assertions --target-dir "$TARGET_DIR"
built=$(date +%s)
echo "fuzz-smoke: build took $((built - started)) s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failed=()
for target in "${TARGETS[@]}"; do
    mkdir -p "$work/$target"
    log="$work/$target.log"
    if cargo fuzz run "${PROFILE[@]}" --sanitizer "$SANITIZER" --debug-assertions \
        --target-dir "$TARGET_DIR" "$target" \
        "$work/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout="$TIMEOUT" \
        -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
        echo "fuzz-smoke: $target ok: ${runs:-?} runs, ${rate:-?}/s"
    else
        echo "fuzz-smoke: $target FAILED; the end of its log:"
        tail -n 60 "$log"
        failed+=("$target")
    fi
done

echo "fuzz-smoke: $(($(date +%s) - started)) s in all"
if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz-smoke: failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
