#!/usr/bin/env bash
# The DNS checks at the milter level (issue 12, BENCHMARKS.md "DNS checks through the milter"):
# the real greymilter binary with `spf = "off"`, `spf = "key"` with a warm resolver cache and
# `spf = "key"` with the cache off (every MAIL asks the server), interleaved round by round,
# under the same milter_load run: senders of DOMAINS SPF domains, each client in a network its
# domain authorises, served by examples/spf_zone_server.rs on loopback (a process of its own:
# its CPU is not the daemon's). Then the p99 RCPT latency at half the peak rate: `off` and
# warm at half of `off`'s peak, cold at half its own. Every figure is the best of ROUNDS runs
# (by RCPT decisions/s); raw RESULT lines go to $OUT/results.txt.
#
#   cargo build --release --bin greymilter --examples
#   benches/dns-milter-bench.sh        # ROUNDS=3 DURATION=10s CONNECTIONS=64 DOMAINS=200
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
DOMAINS=${DOMAINS:-200}
POOL=${POOL:-500}
LOG_LEVEL=${LOG_LEVEL:-info}
# persistent: 20 transactions per milter connection (an SPF check per MAIL, the hard case);
# per-txn: one (Postfix with one message per SMTP connection).
SHAPES=${SHAPES:-persistent per-txn}
PRIO=${PRIO:-}
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
bench_init dns-bench
shape_args() {
    case $1 in
        persistent) echo "--txns 20 --rcpts 1 --pool $POOL" ;;
        per-txn) echo "--txns 1 --rcpts 1 --pool $(( POOL * 10 ))" ;;
        *) echo "dns-milter-bench: unknown shape $1" >&2; exit 2 ;;
    esac
}

"$BIN/examples/spf_zone_server" "$DOMAINS" >"$OUT/dns.log" 2>&1 </dev/null &
DNS_PID=$!
PIDS+=("$DNS_PID")
DNS_ADDR=$(wait_line "$OUT/dns.log" 'listening on' | sed 's/.*listening on \([^ ]*\).*/\1/')

# start_mode MODE: off | key-warm | key-cold; sets GM_PID and GM_SPEC.
start_mode() {
    local mode=$1 dns=""
    local spec; spec="inet:127.0.0.1:$(port)"
    case $mode in
        off) ;;
        key-warm) dns="[dns]
servers = [\"$DNS_ADDR\"]
timeout = \"2s\"" ;;
        key-cold) dns="[dns]
servers = [\"$DNS_ADDR\"]
timeout = \"2s\"
cache_size = 0" ;;
    esac
    local spf=off
    [ "$mode" != off ] && spf=key
    start_greymilter "$mode" "$spec" "[milter]
listen = \"$spec\"
[greylist]
delay = \"1h\"
spf = \"$spf\"
[lists]
recipient_domains = { \"pass.test\" = { action = \"greylist\", delay = \"1s\" }, \"list.test\" = \"accept\" }
[log]
level = \"$LOG_LEVEL\"
$dns"
}

# load LABEL ARGS...: one run against the daemon started last; prints and records RESULT.
load() {
    local label=$1; shift
    local out
    # shellcheck disable=SC2086
    out=$($PRIO "$BIN/examples/milter_load" --target "$GM_SPEC" --milter-pid "$GM_PID" \
        --connections "$CONNECTIONS" --duration "$DURATION" --spf-domains "$DOMAINS" "$@" \
        2>>"$OUT/load.stderr")
    local line; line=$(grep '^RESULT' <<<"$out")
    echo "$label ${line#RESULT } load1=$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$RESULTS" >&2
}
best() {  # LABEL: the recorded line with the highest rcpt_s
    grep "^$1 " "$RESULTS" | awk '{ for (i = 2; i <= NF; i++) if ($i ~ /^rcpt_s=/) { split($i, a, "="); print a[2], $0 } }' \
        | sort -rn | head -1 | cut -d' ' -f2-
}
rate_of() { field "RESULT $(best "$1" | cut -d' ' -f2-)" rcpt_s; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)" | tee -a "$RESULTS"
echo "connections: $CONNECTIONS, $DURATION per run, $DOMAINS SPF domains, log level: $LOG_LEVEL, prefix: ${PRIO:-none}" | tee -a "$RESULTS"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS"

for round in $(seq "$ROUNDS"); do
    for shape in $SHAPES; do
        for mode in off key-warm key-cold; do
            start_mode "$mode"
            # shellcheck disable=SC2046
            load "$mode/$shape" $(shape_args "$shape")
            stop_pid "$GM_PID"
        done
    done
done

# p99 at half the peak rate (persistent shape, the first of SHAPES if it is not there).
shape=persistent
[[ " $SHAPES " == *" persistent "* ]] || shape=${SHAPES%% *}
half_off=$(( $(rate_of "off/$shape") / 2 ))
half_cold=$(( $(rate_of "key-cold/$shape") / 2 ))
for round in $(seq "$ROUNDS"); do
    for mode in off key-warm key-cold; do
        rate=$half_off
        [ "$mode" = key-cold ] && rate=$half_cold
        start_mode "$mode"
        # shellcheck disable=SC2046
        load "half-$mode/$shape" $(shape_args "$shape") --rate "$rate"
        stop_pid "$GM_PID"
    done
done

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS"
echo "best of $ROUNDS (by RCPT decisions/s):"
for shape in $SHAPES; do
    for mode in off key-warm key-cold; do best "$mode/$shape"; done
    off=$(rate_of "off/$shape")
    for mode in key-warm key-cold; do
        awk -v k="$(rate_of "$mode/$shape")" -v o="$off" -v m="$mode/$shape" \
            'BEGIN { printf "%s: %.0f %% of off\n", m, (o > 0 ? 100 * k / o : 0) }'
    done
done
for mode in off key-warm key-cold; do best "half-$mode/$shape"; done
echo "all results: $RESULTS"
