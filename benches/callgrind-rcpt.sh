#!/usr/bin/env bash
# Instructions per RCPT decision in the whole daemon, counted by callgrind
# (repeatable whatever else the machine does, unlike decisions/s): start
# greymilter under callgrind, run milter_load, which zeroes the counters
# after its preparation and warm-up and dumps them when its measured phase
# ends, and divide by the recipients answered in that phase. (Until
# 2026-12-06 the counters were zeroed before the preparation: the figure
# then carried a fixed cost that weighed more the fewer recipients a run
# served.)
#
#   cargo build --release --bin greymilter --examples
#   benches/callgrind-rcpt.sh [BINDIR] [PORT]      # default target/release, a free port
#   EXTRA_CONF=$'[cluster]\nredis = "redis://127.0.0.1:6379/0"\nsecret_file = "/path/key"' \
#       benches/callgrind-rcpt.sh                   # appended to the config: a cluster node
#
# Compare two builds by running it on each, interleaved. Loopback only.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
BENCH=callgrind-rcpt
BIN=${1:-$ROOT/target/release}
PORT=${2:-$(port)}
DURATION=${DURATION:-8s}
OUT=$(mktemp -d /tmp/gm-callgrind.XXXXXX)
cat >"$OUT/c.toml" <<CONF
[milter]
listen = "inet:127.0.0.1:$PORT"
[greylist]
delay = "1h"
[lists]
recipient_domains = { "pass.test" = { action = "greylist", delay = "1s" }, "list.test" = "accept" }
[log]
level = "warn"
${EXTRA_CONF:-}
CONF
valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" "$BIN/greymilter" --config "$OUT/c.toml" 2>"$OUT/valgrind.log" &
VG=$!
# On a failure the daemon may be gone already: nothing to judge then.
trap 'kill $VG 2>/dev/null || true' EXIT
# Under valgrind the start takes seconds.
wait_listening "$PORT" 30
"$BIN/examples/milter_load" --target "inet:127.0.0.1:$PORT" --connections 8 --duration "$DURATION" \
    --txns 20 --rcpts 1 --pool 500 \
    --on-measure-start "callgrind_control -z $VG >/dev/null" \
    --on-measure-end "callgrind_control -d $VG >/dev/null" \
    2>"$OUT/load.stderr" | grep '^RESULT' >"$OUT/result"
# The dump is written by the daemon's process when it next runs: wait for its totals line.
for _ in $(seq 100); do
    grep -qsE '^(summary|totals):' "$OUT"/cg.out.* && break
    sleep 0.1
done
kill -TERM "$VG"
wait "$VG"
trap - EXIT
ir=$(grep -hE '^(summary|totals):' "$OUT"/cg.out.* | head -1 | awk '{print $2}')
rcpts=$(sed -n 's/.* continue=\([0-9]*\) accept=\([0-9]*\) tempfail=\([0-9]*\) reject=\([0-9]*\).*/\1 \2 \3 \4/p' "$OUT/result" | awk '{print $1+$2+$3+$4}')
[ -n "$ir" ] || { echo "callgrind-rcpt: no callgrind totals in $OUT" >&2; exit 1; }
[ "${rcpts:-0}" -gt 0 ] || { echo "callgrind-rcpt: no recipient answered ($OUT)" >&2; exit 1; }
echo "instructions=$ir rcpts=$rcpts per_rcpt=$((ir / rcpts)) ($OUT)"
