#!/usr/bin/env bash
# Instructions per RCPT decision in the whole daemon, counted by callgrind
# (repeatable whatever else the machine does, unlike decisions/s): start
# greymilter under callgrind, zero the counters once it listens, run
# milter_load, dump, divide by the recipients answered.
#
#   cargo build --release --bin greymilter --examples
#   benches/callgrind-rcpt.sh [BINDIR] [PORT]      # default target/release, 18031
#
# Compare two builds by running it on each, interleaved. Loopback only.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/target/release}
PORT=${2:-18031}
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
CONF
valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" "$BIN/greymilter" --config "$OUT/c.toml" 2>"$OUT/valgrind.log" &
VG=$!
trap 'kill $VG 2>/dev/null || true' EXIT
for _ in $(seq 150); do
    grep -q ":$(printf '%04X' "$PORT") 00000000:0000 0A " /proc/net/tcp && break
    sleep 0.2
done
callgrind_control -z "$VG" >/dev/null
"$BIN/examples/milter_load" --target "inet:127.0.0.1:$PORT" --connections 8 --duration "$DURATION" \
    --txns 20 --rcpts 1 --pool 500 2>/dev/null | grep '^RESULT' >"$OUT/result"
callgrind_control -d "$VG" >/dev/null
sleep 1
kill -TERM "$VG"; wait "$VG" || true
ir=$(grep -hE '^(summary|totals):' "$OUT"/cg.out.* | head -1 | awk '{print $2}')
rcpts=$(sed -n 's/.* continue=\([0-9]*\) accept=\([0-9]*\) tempfail=\([0-9]*\) reject=\([0-9]*\).*/\1 \2 \3 \4/p' "$OUT/result" | awk '{print $1+$2+$3+$4}')
echo "instructions=$ir rcpts=$rcpts per_rcpt=$((ir / rcpts)) ($OUT)"
