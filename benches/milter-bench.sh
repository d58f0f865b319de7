#!/usr/bin/env bash
# The milter-level benchmarks of BENCHMARKS.md in one run: greymilter (empty table and
# TUPLES-tuple table) against the no-op milter on the same load, with persistent and with
# per-transaction connections; the p99 at half the peak rate; a checkpoint under load.
# Every figure is the best of ROUNDS runs (by RCPT decisions/s); raw RESULT lines go to
# $OUT/results.txt.
#
#   cargo build --release --bin greymilter --examples
#   benches/milter-bench.sh                  # TUPLES=10M ROUNDS=3 DURATION=10s CONNECTIONS=64
#
# TUPLES=0 skips the large-table part. Loopback only; all files under $OUT (default a new
# directory in /var/tmp: the checkpoint should be written to a disk, as in production).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release}
TUPLES=${TUPLES:-10M}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
LOG_LEVEL=${LOG_LEVEL:-info}
SOCKET=${SOCKET:-inet}           # inet (loopback TCP) or unix
# A command prefix for the milters and the load generator, e.g. PRIO="chrt -f 10" to shield
# them from other (nice 19) work on a shared machine. Empty: ordinary scheduling.
PRIO=${PRIO:-}
CHECKPOINT_RUN=${CHECKPOINT_RUN:-10s}   # the checkpoint run, and when in it SIGUSR2 is sent
CHECKPOINT_AT=${CHECKPOINT_AT:-5s}
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
bench_init milter-bench

# A listening address for milter NAME.
spec_for() {
    case $SOCKET in
        inet) echo "inet:127.0.0.1:$(port)" ;;
        unix) echo "unix:$OUT/$1.sock" ;;
        *) echo "milter-bench: SOCKET must be inet or unix" >&2; exit 2 ;;
    esac
}

# start_bench_greymilter NAME [STATE_FILE]: starts a daemon; sets GM_PID and GM_SPEC.
start_bench_greymilter() {
    local name=$1 state=${2:-}
    local spec; spec=$(spec_for "$name")
    local state_line=""
    [ -n "$state" ] && state_line="file = \"$state\""
    start_greymilter "$name" "$spec" "[milter]
listen = \"$spec\"
[greylist]
delay = \"1h\"
max_tuples = 30000000
[lists]
recipient_domains = { \"pass.test\" = { action = \"greylist\", delay = \"1s\" }, \"list.test\" = \"accept\" }
[state]
checkpoint_interval = \"24h\"
$state_line
[log]
level = \"$LOG_LEVEL\""
}

# load LABEL SPEC PID ARGS...: one run of the load generator; prints and records RESULT.
load() {
    local label=$1 spec=$2 pid=$3; shift 3
    local out
    # shellcheck disable=SC2086
    out=$($PRIO "$BIN/examples/milter_load" --target "$spec" --milter-pid "$pid" \
        --connections "$CONNECTIONS" --duration "$DURATION" "$@" 2>>"$OUT/load.stderr")
    local line; line=$(grep '^RESULT' <<<"$out")
    echo "$label ${line#RESULT }" | tee -a "$RESULTS" >&2
    LAST=$out
}
best() {  # LABEL: the recorded line with the highest rcpt_s
    grep "^$1 " "$RESULTS" | awk '{ for (i = 2; i <= NF; i++) if ($i ~ /^rcpt_s=/) { split($i, a, "="); print a[2], $0 } }' \
        | sort -rn | head -1 | cut -d' ' -f2-
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)" | tee -a "$RESULTS"
echo "socket: $SOCKET, log level: $LOG_LEVEL, connections: $CONNECTIONS, $DURATION per run, prefix: ${PRIO:-none}" | tee -a "$RESULTS"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS"

# shellcheck disable=SC2086
$PRIO "$BIN/examples/noop_milter" "$(spec_for noop)" >"$OUT/noop.log" 2>&1 </dev/null &
NOOP_PID=$!
PIDS+=("$NOOP_PID")
NOOP_SPEC=$(wait_line "$OUT/noop.log" 'listening on' | sed 's/.*listening on \([^ ]*\).*/\1/')

FULL_PID=""
if [ "$TUPLES" != 0 ]; then
    echo "filling $TUPLES tuples into $OUT/state" >&2
    "$BIN/examples/state_bench" --tuples "$TUPLES" --out "$OUT/state" --keep --no-fork | tee -a "$RESULTS" >&2
    start_bench_greymilter full "$OUT/state"
    FULL_PID=$GM_PID FULL_SPEC=$GM_SPEC
    # Logged at info only: with LOG_LEVEL=warn there is no such line.
    restored=$(grep -m1 'restored state' "$OUT/full.log" | sed 's/.*ms=\([0-9]*\).*/\1/' || true)
    echo "daemon restore: ${restored:-? (logged at info)} ms; RSS $(awk '/VmRSS/ { print $2 }' "/proc/$FULL_PID/status") KiB" | tee -a "$RESULTS"
fi

# persistent: 20 transactions per milter connection; per-txn: one (Postfix's pattern for
# one message per SMTP connection); pass-only: persistent, every recipient whitelisted,
# so both milters see exactly the same packets (with the default mix the no-op milter
# passes everyone and gets an EOM per transaction, greymilter mostly ABORTs).
declare -A SHAPES=(
    [persistent]="--txns 20 --rcpts 1 --pool 500"
    [per-txn]="--txns 1 --rcpts 1 --pool 5000"
    [pass-only]="--txns 20 --rcpts 1 --pool 500 --mix pass=100"
)
for shape in persistent per-txn pass-only; do
    for round in $(seq "$ROUNDS"); do
        # shellcheck disable=SC2086
        load "noop/$shape" "$NOOP_SPEC" "$NOOP_PID" ${SHAPES[$shape]}
        start_bench_greymilter empty
        # shellcheck disable=SC2086
        load "empty/$shape" "$GM_SPEC" "$GM_PID" ${SHAPES[$shape]}
        stop_pid "$GM_PID"
        if [ -n "$FULL_PID" ]; then
            # shellcheck disable=SC2086
            load "full/$shape" "$FULL_SPEC" "$FULL_PID" ${SHAPES[$shape]}
        fi
    done
done

# p99 at half the peak rate: the peak is the best persistent greymilter run on an empty table.
peak=$(field "RESULT $(best empty/persistent | cut -d' ' -f2-)" rcpt_s)
half=$(( peak / 2 ))
for round in $(seq "$ROUNDS"); do
    start_bench_greymilter empty
    # shellcheck disable=SC2086
    load "half-empty/persistent" "$GM_SPEC" "$GM_PID" ${SHAPES[persistent]} --rate "$half"
    stop_pid "$GM_PID"
    if [ -n "$FULL_PID" ]; then
        # shellcheck disable=SC2086
        load "half-full/persistent" "$FULL_SPEC" "$FULL_PID" ${SHAPES[persistent]} --rate "$half"
    fi
done

if [ -n "$FULL_PID" ]; then
    # A checkpoint of the full table under half-peak load, in the middle of the run; the
    # timeline shows the worst RCPT latency of each second.
    # shellcheck disable=SC2086
    DURATION=$CHECKPOINT_RUN load "checkpoint-full/persistent" "$FULL_SPEC" "$FULL_PID" \
        ${SHAPES[persistent]} --rate "$half" --signal-at "$CHECKPOINT_AT" --signal SIGUSR2 --timeline
    grep '^t=' <<<"$LAST" | tee -a "$RESULTS"
    if [ "$LOG_LEVEL" = info ]; then
        written=$(wait_line "$OUT/full.log" 'checkpoint written' 120)
        echo "daemon checkpoint child: $(sed 's/.*ms=\([0-9]*\).*/\1/' <<<"$written") ms" | tee -a "$RESULTS"
    fi
fi

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS"
echo "best of $ROUNDS (by RCPT decisions/s):"
for label in noop/persistent empty/persistent full/persistent noop/per-txn empty/per-txn full/per-txn \
    noop/pass-only empty/pass-only full/pass-only half-empty/persistent half-full/persistent; do
    line=$(best "$label" || true)   # labels of the TUPLES part are absent with TUPLES=0
    if [ -n "$line" ]; then echo "$line"; fi
done
echo "all results: $RESULTS"
