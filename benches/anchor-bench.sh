#!/usr/bin/env bash
# The anchor beside us (BENCHMARKS.md): greymilter, the no-op milter and milter-greylist 4.6.2
# on the same milter_load load, interleaved round-robin in one run (each round runs every tool
# once, the starting tool rotating), with an empty table and after STATES inserted tuples.
# Per tool and state: RCPT decisions/s, milter CPU per decision (utime+stime of the daemon from
# /proc/PID/stat over the run, all threads), p99 RCPT latency, RSS per tuple (RSS after the
# prefill minus RSS before it, divided by the tuples the daemon reports holding).
#
#   cargo build --release --bin greymilter --examples
#   benches/anchor-bench.sh              # STATES="0 200k 1M" ROUNDS=3 DURATION=10s CONNECTIONS=64
#   TINY=1 benches/anchor-bench.sh       # the CI smoke size (.ci/bench-smoke.sh)
#
# milter-greylist is a benchmark dependency only: it is built from ANCHOR_TARBALL (BSD licence)
# under ANCHOR_DIR, outside the project tree, and the build is cached there (keyed by the
# tarball's checksum). It needs libmilter-dev, flex and bison: .ci/install-anchor.sh installs
# them (this script runs it when root and something is missing).
#
# Prefill: both greylisters get their tuples through the milter protocol (milter_load with
# every connection a new tuple), the path real mail takes; then each is stopped, which writes
# its state (greymilter's state file, milter-greylist's text dump), and every measured run
# starts a fresh daemon from a copy of that state, so the runs of a state all see the same
# table whatever the load before them inserted. The counts the daemons report (greymilter
# `stats` over the control socket, the summary line of milter-greylist's dump) must hold at
# least the tuples asked for, or the run fails.
#
# Fails on protocol errors, on a greylister that passes a new tuple or defers a whitelisted
# one. Asserts nothing about speed. Loopback only; all files under $OUT.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release}
if [ "${TINY:-0}" = 1 ]; then
    STATES=${STATES:-0 1k 5k} ROUNDS=${ROUNDS:-1} DURATION=${DURATION:-1s} CONNECTIONS=${CONNECTIONS:-4}
    POOL=${POOL:-20} WARMUP=${WARMUP:-0s} PREP_WAIT=${PREP_WAIT:-1500ms} SHAPES=${SHAPES:-persistent}
fi
STATES=${STATES:-0 200k 1M}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
POOL=${POOL:-500}
WARMUP=${WARMUP:-1s}
PREP_WAIT=${PREP_WAIT:-2s}
SHAPES=${SHAPES:-persistent per-txn}
TOOLS=${TOOLS:-noop greymilter milter-greylist}
PRIO=${PRIO:-}
MG_SUBNET=${MG_SUBNET:-32}   # milter-greylist's client network: 32 (its default) or 24
ANCHOR_TARBALL=${ANCHOR_TARBALL:-}
if [ -z "$ANCHOR_TARBALL" ]; then
    for t in "$ROOT/../shared/anchors/milter-greylist-4.6.2.tar.gz" /work/shared/anchors/milter-greylist-4.6.2.tar.gz; do
        [ -f "$t" ] && ANCHOR_TARBALL=$t && break
    done
fi
ANCHOR_DIR=${ANCHOR_DIR:-/var/tmp/greymilter-anchor}
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
bench_init anchor-bench
fail() { echo "anchor-bench: $*" >&2; exit 1; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
# 200k -> 200000, 1M -> 1000000.
count() {
    case $1 in
        *k) echo $(( ${1%k} * 1000 )) ;;
        *M) echo $(( ${1%M} * 1000000 )) ;;
        *) echo $(( $1 )) ;;
    esac
}

# wait_listening (benches/lib.sh) on a port: both milters listen only once ready to read
# (milter-greylist reloads its dump before opening the socket).

# ---- milter-greylist, built outside the project tree and cached ------------------------------
build_anchor() {
    [ -n "$ANCHOR_TARBALL" ] && [ -f "$ANCHOR_TARBALL" ] \
        || fail "no milter-greylist tarball (set ANCHOR_TARBALL)"
    local sum dir
    sum=$(sha256sum "$ANCHOR_TARBALL" | cut -c1-16)
    dir=$ANCHOR_DIR/build-$sum
    MG_BIN=$dir/milter-greylist
    if [ -x "$MG_BIN" ]; then
        echo "milter-greylist: cached build $MG_BIN" >&2
        return
    fi
    if ! bash "$ROOT/.ci/install-anchor.sh"; then
        fail "milter-greylist's build dependencies are missing (.ci/install-anchor.sh)"
    fi
    echo "milter-greylist: building from $ANCHOR_TARBALL in $dir" >&2
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    tar xzf "$ANCHOR_TARBALL" -C "$dir.tmp" --strip-components=1
    # No SPF library, no --enable-dnsrbl: the checks that would do DNS are not compiled in.
    # --enable-postfix: the load plays Postfix (no queue ID at the first RCPT).
    if ! (cd "$dir.tmp" && ./configure --enable-postfix --with-libmilter=/usr && make -j2 milter-greylist) \
        >"$ANCHOR_DIR/build-$sum.log" 2>&1; then
        tail -20 "$ANCHOR_DIR/build-$sum.log" >&2
        fail "milter-greylist did not build (log: $ANCHOR_DIR/build-$sum.log)"
    fi
    cp "$dir.tmp/milter-greylist" "$dir.tmp/milter-greylist.bin"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
}

# ---- the daemons -----------------------------------------------------------------------------
# Each start_* sets DPID (the daemon) and DSPEC (milter_load's --target).

# greymilter NAME STATE_FILE: the load configuration of benches/milter-bench.sh, decision log off.
start_anchor_greymilter() {
    local name=$1 state=$2 p; p=$(port)
    start_greymilter "$name" "inet:127.0.0.1:$p" "[milter]
listen = \"inet:127.0.0.1:$p\"
[greylist]
delay = \"1h\"
retry_window = \"24h\"
whitelist_lifetime = \"36d\"
max_tuples = 30000000
[lists]
recipient_domains = { \"pass.test\" = { action = \"greylist\", delay = \"1s\" }, \"list.test\" = \"accept\" }
[state]
checkpoint_interval = \"24h\"
file = \"$state\"
[control]
socket = \"$OUT/$name.ctl\"
[log]
level = \"warn\""
    DPID=$GM_PID
    DSPEC=$GM_SPEC
}
greymilter_tuples() {
    "$BIN/greymilter" --config "$OUT/$1.toml" stats | awk '$1 == "Tuples" { print $2 }'
}

# milter-greylist NAME DUMPFILE: the same policy in its terms. greylist = delay, timeout =
# retry_window, autowhite = whitelist_lifetime, the same two recipient-domain rules (Postfix
# hands recipients over in angle brackets; its regexes are POSIX basic ones); no peers, no
# SPF/DNSRBL (not compiled in, none configured), no syslog (greymilter's decision log is off
# too), a dump only at exit. Client networks: its default, the whole address, unless
# MG_SUBNET=24 (subnetmatch /24 and /64 like greymilter): its tuple hash (32768 buckets) is
# the masked address XOR the first two characters of sender and recipient, which are both "<"
# from a Postfix or Sendmail, so with /24 every IPv4 tuple falls into one of 128 buckets and a
# lookup walks ~tuples/128 entries (BENCHMARKS.md measures it). For this load the verdicts are
# the same either way: a retry comes from the address of the first attempt.
start_milter_greylist() {
    local name=$1 dump=$2 p; p=$(port)
    local subnet=""
    [ "$MG_SUBNET" = 24 ] && subnet=$'subnetmatch /24\nsubnetmatch6 /64'
    cat >"$OUT/$name.conf" <<CONF
pidfile "$OUT/$name.pid"
socket "inet:$p@127.0.0.1"
dumpfile "$dump"
dumpfreq 1d
dump_no_time_translation
greylist 1h
timeout 24h
autowhite 36d
$subnet
report delays
multiracl
logfac none
racl whitelist rcpt /@list\\.test>*\$/
racl greylist rcpt /@pass\\.test>*\$/ delay 1s
racl greylist default
CONF
    # shellcheck disable=SC2086
    $PRIO "$MG_BIN" -D -f "$OUT/$name.conf" >>"$OUT/$name.log" 2>&1 </dev/null &
    DPID=$!
    PIDS+=("$DPID")
    wait_listening "$p" 300
    DSPEC=inet:127.0.0.1:$p
}
# The greylisted count of the summary line its dump ends with ("# Summary: N records, G
# greylisted, W whitelisted, T tarpitted"), written when it stops.
milter_greylist_tuples() {
    sed -n 's/^# Summary: [0-9]* records, \([0-9]*\) greylisted.*/\1/p' "$1"
}

# ---- runs ------------------------------------------------------------------------------------
# Samples the daemon's thread count while the load runs; prints the highest seen.
max_threads() {
    local pid=$1 stop=$2 most=0 n
    while [ ! -e "$stop" ]; do
        n=$(awk '/^Threads/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
        [ "${n:-0}" -gt "$most" ] && most=$n
        sleep 0.2
    done
    echo "$most"
}

# load LABEL TOOL SPEC PID ARGS...: one measured run; records the RESULT line and checks it.
load() {
    local label=$1 tool=$2 spec=$3 pid=$4; shift 4
    local out line threads
    rm -f "$OUT/load.done"
    max_threads "$pid" "$OUT/load.done" >"$OUT/threads" &
    local sampler=$!
    # shellcheck disable=SC2086
    out=$($PRIO "$BIN/examples/milter_load" --target "$spec" --milter-pid "$pid" \
        --connections "$CONNECTIONS" --duration "$DURATION" --warmup "$WARMUP" \
        --prep-wait "$PREP_WAIT" "$@" 2>>"$OUT/load.stderr") || fail "$label: milter_load failed"
    touch "$OUT/load.done"
    wait "$sampler"
    threads=$(cat "$OUT/threads")
    echo "$out" >>"$OUT/load.out"
    line=$(grep '^RESULT' <<<"$out")
    echo "$label threads=$threads load1=$(cut -d' ' -f1 /proc/loadavg) ${line#RESULT }" | tee -a "$RESULTS" >&2
    [ "$(field "$line" errors)" = 0 ] || fail "$label: protocol errors: $(grep 'error' <<<"$out" | head -3)"
    [ "$(field "$line" continue)" -gt 0 ] || fail "$label: no recipient was passed"
    if [ "$tool" != noop ]; then
        grep -Eq '^ +new: continue 0 accept 0 tempfail [1-9]' <<<"$out" \
            || fail "$label: a new tuple was not greylisted: $(grep -E '^ +new:' <<<"$out")"
        grep -Eq '^ +pass: continue [1-9][0-9]* accept 0 tempfail 0 ' <<<"$out" \
            || fail "$label: a whitelisted tuple was not passed: $(grep -E '^ +pass:' <<<"$out")"
    fi
}

# prefill TOOL LABEL N: a fresh daemon, N new tuples through the milter protocol, its RSS before
# and after, its own count; stopping it writes the state the measured runs start from.
prefill() {
    local tool=$1 label=$2 n=$3 name=$1-$2 before after held out
    case $tool in
        greymilter) start_anchor_greymilter "$name" "$OUT/$name.state" ;;
        milter-greylist) start_milter_greylist "$name" "$OUT/$name.db" ;;
    esac
    before=$(rss_kib "$DPID")
    # Each session: one client, 20 transactions of one new recipient (20 new tuples).
    out=$("$BIN/examples/milter_load" --target "$DSPEC" --connections "$CONNECTIONS" --warmup 0s \
        --mix new=100 --txns 20 --rcpts 1 --sessions $(( (n + 19) / 20 )) 2>>"$OUT/load.stderr") \
        || fail "prefill $name: milter_load failed"
    echo "$out" >>"$OUT/load.out"
    local line; line=$(grep '^RESULT' <<<"$out")
    [ "$(field "$line" errors)" = 0 ] || fail "prefill $name: protocol errors"
    after=$(rss_kib "$DPID")
    case $tool in
        greymilter)
            held=$(greymilter_tuples "$name")
            stop_pid "$DPID"
            [ -s "$OUT/$name.state" ] || fail "prefill $name: no state file written" ;;
        milter-greylist)
            stop_pid "$DPID"
            held=$(milter_greylist_tuples "$OUT/$name.db") ;;
    esac
    [ -n "$held" ] && [ "$held" -ge "$n" ] || fail "prefill $name: holds ${held:-?} tuples, wanted $n"
    local per; per=$(( (after - before) * 1024 / held ))
    echo "prefill/$label/$tool tuples=$held insert_s=$(field "$line" rcpt_s) rss_before_kib=$before rss_after_kib=$after bytes_per_tuple=$per" \
        | tee -a "$RESULTS" >&2
}

# ---- main ------------------------------------------------------------------------------------
for f in greymilter examples/milter_load examples/noop_milter; do
    [ -x "$BIN/$f" ] || fail "$BIN/$f missing: cargo build --release --bin greymilter --examples"
done
build_anchor
{
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
    echo "milter-greylist: $("$MG_BIN" -h 2>&1 | sed -n 's/^Version: \(milter-greylist [^,]*\).*/\1/p'), libmilter-dev $(dpkg-query -W -f='${Version}' libmilter-dev 2>/dev/null || echo '?')"
    echo "milter-greylist client network: /$MG_SUBNET"
    echo "states: $STATES; rounds: $ROUNDS; shapes: $SHAPES; $CONNECTIONS connections, $DURATION per run; prefix: ${PRIO:-none}"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$RESULTS" >&2

noop_port=$(port)
# shellcheck disable=SC2086
$PRIO "$BIN/examples/noop_milter" "inet:127.0.0.1:$noop_port" >"$OUT/noop.log" 2>&1 </dev/null &
NOOP_PID=$!
PIDS+=("$NOOP_PID")
wait_listening "$noop_port" 30

# The shapes of benches/milter-bench.sh: persistent = 20 transactions per milter connection;
# per-txn = one (Postfix with one message per SMTP connection: a libmilter thread each).
declare -A SHAPE_ARGS=(
    [persistent]="--txns 20 --rcpts 1 --pool $POOL"
    [per-txn]="--txns 1 --rcpts 1 --pool $(( POOL * 10 ))"
)
read -r -a tools <<<"$TOOLS"
for state in $STATES; do
    n=$(count "$state")
    label=$([ "$n" = 0 ] && echo empty || echo "$state")
    for tool in "${tools[@]}"; do
        if [ "$n" -gt 0 ] && [ "$tool" != noop ]; then
            prefill "$tool" "$label" "$n"
        fi
    done
    for shape in $SHAPES; do
        for round in $(seq "$ROUNDS"); do
            for i in $(seq 0 $(( ${#tools[@]} - 1 ))); do
                tool=${tools[$(( (i + round - 1) % ${#tools[@]} ))]}
                tag="$label/$shape/$tool round=$round"
                case $tool in
                    noop)
                        # shellcheck disable=SC2086
                        load "$tag" noop "inet:127.0.0.1:$noop_port" "$NOOP_PID" ${SHAPE_ARGS[$shape]} ;;
                    greymilter)
                        rm -f "$OUT/gm-run.state"
                        [ "$n" -gt 0 ] && cp "$OUT/greymilter-$label.state" "$OUT/gm-run.state"
                        start_anchor_greymilter gm-run "$OUT/gm-run.state"
                        held=$(greymilter_tuples gm-run)
                        [ "$held" -ge "$n" ] || fail "$tag: restored $held tuples, wanted $n"
                        # shellcheck disable=SC2086
                        load "$tag" greymilter "$DSPEC" "$DPID" ${SHAPE_ARGS[$shape]}
                        stop_pid "$DPID" ;;
                    milter-greylist)
                        rm -f "$OUT/mg-run.db"
                        [ "$n" -gt 0 ] && cp "$OUT/milter-greylist-$label.db" "$OUT/mg-run.db"
                        start_milter_greylist mg-run "$OUT/mg-run.db"
                        # shellcheck disable=SC2086
                        load "$tag" milter-greylist "$DSPEC" "$DPID" ${SHAPE_ARGS[$shape]}
                        stop_pid "$DPID"
                        # Its dump at exit: the table it ran with (and the run's new tuples).
                        held=$(milter_greylist_tuples "$OUT/mg-run.db")
                        [ -n "$held" ] && [ "$held" -ge "$n" ] || fail "$tag: dumped ${held:-?} tuples, wanted at least $n" ;;
                    *) fail "unknown tool $tool" ;;
                esac
            done
        done
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS" >&2

# ---- the table: medians over the rounds ------------------------------------------------------
values() {  # LABEL KEY: one value per recorded run of LABEL
    grep "^$1 round=" "$RESULTS" | tr ' ' '\n' | sed -n "s/^$2=//p"
}
echo
echo "Medians over $ROUNDS round(s); RSS per tuple from the prefill (bytes)."
for shape in $SHAPES; do
    echo
    echo "$shape:"
    echo
    echo "| state | tool | RCPT decisions/s | CPU µs/decision | p99 µs | RSS MiB (end of run) | bytes/tuple | threads |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    for state in $STATES; do
        n=$(count "$state")
        label=$([ "$n" = 0 ] && echo empty || echo "$state")
        for tool in "${tools[@]}"; do
            l="$label/$shape/$tool"
            per=$(sed -n "s/^prefill\/$label\/$tool .*bytes_per_tuple=\([0-9-]*\).*/\1/p" "$RESULTS")
            rss=$(values "$l" milter_rss_kib | median)
            printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$tool" \
                "$(values "$l" rcpt_s | median)" "$(values "$l" cpu_us_per_rcpt | median)" \
                "$(values "$l" p99_us | median)" "$(awk -v k="$rss" 'BEGIN { if (k == "-") print "-"; else printf "%.0f", k / 1024 }')" \
                "${per:--}" "$(values "$l" threads | median)"
        done
    done
done
echo
echo "all results: $RESULTS"
