#!/usr/bin/env bash
# Instructions per policy request in the whole daemon, counted by
# callgrind (repeatable whatever else the machine does): greymilter's
# policy front end alone (`[milter] enabled = false`, log at info as in
# benches/postfix-overhead.sh), the bench's tuple whitelisted first
# through the control socket so every request is a known tuple (as there),
# then benches/policy_load.py: CONNECTIONS connections, REQUESTS requests
# each, every request a new message of one recipient, Postfix 3.7's
# attributes. Zeroed once the tuple is whitelisted, dumped after the load.
#
#   cargo build --release --bin greymilter
#   benches/callgrind-policy.sh [BINDIR]     # default target/release; needs python3
#
# Loopback only; a few seconds under valgrind.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
BIN=${1:-$ROOT/target/release}
PORT=$(port)
CONNECTIONS=${CONNECTIONS:-4}
REQUESTS=${REQUESTS:-2500}
OUT=$(mktemp -d /tmp/gm-callgrind-policy.XXXXXX)
cat >"$OUT/c.toml" <<CONF
[milter]
enabled = false
[policy]
listen = "inet:$PORT@127.0.0.1"
[greylist]
delay = "1h"
skip_loopback = false
[control]
socket = "$OUT/control.sock"
[log]
level = "info"
CONF
valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" "$BIN/greymilter" --config "$OUT/c.toml" >"$OUT/greymilter.log" 2>&1 &
VG=$!
trap 'kill $VG 2>/dev/null || true' EXIT
wait_listening "$PORT" 30
for _ in $(seq 100); do [ -S "$OUT/control.sock" ] && break; sleep 0.1; done
"$BIN/greymilter" --config "$OUT/c.toml" allow --client 192.0.2.7 --from alice@example.org --to bob@example.net >/dev/null
callgrind_control -z "$VG" >/dev/null
python3 "$ROOT/benches/policy_load.py" "127.0.0.1:$PORT" "$CONNECTIONS" "$REQUESTS" 192.0.2.7 >"$OUT/result"
callgrind_control -d "$VG" >/dev/null
for _ in $(seq 100); do
    grep -qsE '^(summary|totals):' "$OUT"/cg.out.* && break
    sleep 0.1
done
kill -TERM "$VG"
wait "$VG" || true
trap - EXIT
ir=$(grep -hE '^(summary|totals):' "$OUT"/cg.out.* | head -1 | awk '{print $2}')
requests=$(sed -n 's/^RESULT requests=\([0-9]*\).*/\1/p' "$OUT/result")
[ -n "$ir" ] || { echo "callgrind-policy: no callgrind totals in $OUT" >&2; exit 1; }
[ "${requests:-0}" -gt 0 ] || { echo "callgrind-policy: no request answered ($OUT)" >&2; exit 1; }
grep -q ' other=0' "$OUT/result" || { echo "callgrind-policy: unexpected answers: $(cat "$OUT/result")" >&2; exit 1; }
echo "instructions=$ir requests=$requests per_request=$((ir / requests)) $(cat "$OUT/result") ($OUT)"
