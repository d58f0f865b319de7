#!/usr/bin/env bash
# [cluster] figures for BENCHMARKS.md: greymilter standalone vs with a private Redis on loopback
# (same config otherwise), 64 connections, default mix; Redis memory per tuple; the worst RCPT
# latency while Redis is killed and restarted mid-run. Needs redis-server and a release build:
#   cargo build --release --bin greymilter --example milter_load --example cluster_bench
#   benches/cluster-bench.sh                 # DURATION=10s TUPLES=1000000; OUT: a new /var/tmp dir
# PRIO="chrt -f 10" runs Redis, the daemons and the load generator with that prefix (shielded
# from other work on a shared machine). REDIS_VIA=unix points the cluster node at Redis' Unix
# socket instead of loopback TCP (a Redis on the same host). TLS=1 (the default) also starts a
# node on Redis' TLS port (rediss://, a throw-away CA made with openssl) and loads it at half the
# standalone peak right after the plain node, in the same run (TLS=0: no TLS node).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=target/release
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
TUPLES=${TUPLES:-1000000}
PRIO=${PRIO:-}
REDIS_VIA=${REDIS_VIA:-tcp}
TLS=${TLS:-1}
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
bench_init cluster-bench
# Redis is restarted mid-run: its current pid is in redis.pid, not in PIDS (at exit it may be
# gone already, hence `|| true`).
trap 'bench_cleanup; [ -f "$OUT/redis.pid" ] && kill -9 "$(cat "$OUT/redis.pid")" 2>/dev/null || true' EXIT

RPORT=$(port)
TPORT=$(port)
TLS_ARGS=()
if [ "$TLS" = 1 ]; then
    # A throw-away CA and a certificate naming 127.0.0.1 (rustls reads subjectAltName only).
    ossl() { openssl "$@" 2>>"$OUT/openssl.log"; }
    ossl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 2 \
        -keyout "$OUT/ca.key" -out "$OUT/ca.crt" -subj "/CN=cluster-bench CA"
    ossl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -keyout "$OUT/redis.key" -out "$OUT/redis.csr" -subj "/CN=127.0.0.1"
    printf 'subjectAltName=IP:127.0.0.1\n' >"$OUT/redis.ext"
    ossl x509 -req -in "$OUT/redis.csr" -CA "$OUT/ca.crt" -CAkey "$OUT/ca.key" -CAcreateserial \
        -days 2 -extfile "$OUT/redis.ext" -out "$OUT/redis.crt"
    TLS_ARGS=(--tls-port "$TPORT" --tls-cert-file "$OUT/redis.crt" --tls-key-file "$OUT/redis.key"
        --tls-ca-cert-file "$OUT/ca.crt" --tls-auth-clients no)
fi
start_redis() {
    # shellcheck disable=SC2086
    $PRIO redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$OUT" --save "" --appendonly no \
        --unixsocket "$OUT/redis.sock" --unixsocketperm 700 \
        --maxmemory-policy volatile-ttl "${TLS_ARGS[@]}" >"$OUT/redis.log" 2>&1 &
    REDIS_PID=$!
    echo "$REDIS_PID" >"$OUT/redis.pid"
    for _ in $(seq 100); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && return 0; sleep 0.05; done
    echo "cluster-bench: redis did not start" >&2; exit 1
}
start_redis
head -c 32 /dev/urandom >"$OUT/cluster.key"

# start NAME EXTRA: a daemon on a free port; sets GM_PID GM_SPEC.
start() {
    local name=$1 extra=$2 port; port=$(port)
    start_greymilter "$name" "inet:$port@127.0.0.1" "[milter]
listen = \"inet:$port@127.0.0.1\"
[greylist]
delay = \"1h\"
max_tuples = 30000000
[lists]
recipient_domains = { \"pass.test\" = { action = \"greylist\", delay = \"1s\" }, \"list.test\" = \"accept\" }
[log]
level = \"warn\"
[stats]
file = \"$OUT/$name.stats\"
$extra"
}
load() {
    local label=$1 spec=$2 pid=$3; shift 3
    local out
    # shellcheck disable=SC2086
    out=$($PRIO "$BIN/examples/milter_load" --target "$spec" --milter-pid "$pid" \
        --connections "$CONNECTIONS" --duration "$DURATION" "$@" 2>>"$OUT/load.stderr")
    echo "$label $(grep '^RESULT' <<<"$out")" | tee -a "$RESULTS" >&2
    LAST=$out
}
redis_cpu() { awk '{ print $14 + $15 }' "/proc/$REDIS_PID/stat"; }

echo "machine: $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RESULTS"
case $REDIS_VIA in
    tcp) REDIS_URL="redis://127.0.0.1:$RPORT/0" ;;
    unix) REDIS_URL="unix:$OUT/redis.sock" ;;
    *) echo "cluster-bench: REDIS_VIA must be tcp or unix" >&2; exit 2 ;;
esac
echo "redis via $REDIS_VIA: $REDIS_URL" | tee -a "$RESULTS"
CLUSTER="[cluster]
redis = \"$REDIS_URL\"
secret_file = \"$OUT/cluster.key\"
timeout = \"50ms\""

start standalone ""
SA_PID=$GM_PID SA_SPEC=$GM_SPEC
start cluster "$CLUSTER"
CL_PID=$GM_PID CL_SPEC=$GM_SPEC
if [ "$TLS" = 1 ]; then
    start cluster-tls "[cluster]
redis = \"rediss://127.0.0.1:$TPORT/0\"
secret_file = \"$OUT/cluster.key\"
ca_file = \"$OUT/ca.crt\"
timeout = \"50ms\""
    TL_PID=$GM_PID TL_SPEC=$GM_SPEC
fi

load standalone "$SA_SPEC" "$SA_PID" --txns 20 --rcpts 1 --pool 500
before=$(redis_cpu)
load cluster "$CL_SPEC" "$CL_PID" --txns 20 --rcpts 1 --pool 500
after=$(redis_cpu)
echo "redis CPU during the cluster run (incl. pool preparation): $(( (after - before) * 10 )) ms" | tee -a "$RESULTS"
rate=$(grep '^cluster ' "$RESULTS" | sed 's/.*rcpt_s=\([0-9.]*\).*/\1/' | cut -d. -f1)
sa_rate=$(grep '^standalone ' "$RESULTS" | sed 's/.*rcpt_s=\([0-9.]*\).*/\1/' | cut -d. -f1)
half=$(( sa_rate / 2 ))
load "cluster-half-standalone-peak($half/s)" "$CL_SPEC" "$CL_PID" --txns 20 --rcpts 1 --pool 500 --rate "$half"
if [ "$TLS" = 1 ]; then
    # TLS against plain, same rate, same Redis, right after: cpu_us_per_rcpt is greymilter's.
    load "cluster-tls-half-standalone-peak($half/s)" "$TL_SPEC" "$TL_PID" --txns 20 --rcpts 1 \
        --pool 500 --rate "$half"
    # The BENCHMARKS.md row: TLS against plain at the same rate, from the two RESULT lines.
    field() { grep "^$1" "$RESULTS" | tail -1 | sed -n "s/.* $2=\([0-9.]*\).*/\1/p"; }
    pl=cluster-half-standalone-peak tl=cluster-tls-half-standalone-peak
    echo "tls vs plain at $half/s: rcpt_s $(field $tl rcpt_s) vs $(field $pl rcpt_s)" \
        "($(awk -v a="$(field $tl rcpt_s)" -v b="$(field $pl rcpt_s)" \
            'BEGIN { if (b > 0) printf "%.0f", 100 * a / b; else printf "?" }') %)," \
        "p99_us $(field $tl p99_us) vs $(field $pl p99_us)," \
        "cpu_us_per_rcpt $(field $tl cpu_us_per_rcpt) vs $(field $pl cpu_us_per_rcpt)" |
        tee -a "$RESULTS"
    kill -USR1 "$TL_PID"; sleep 0.5
    grep -E '^Redis-(Calls|Fallbacks)' "$OUT/cluster-tls.stats" | sed 's/^/tls node: /' |
        tee -a "$RESULTS" || true
fi
redis-cli -p "$RPORT" info stats | grep -E 'total_commands_processed|instantaneous' | tee -a "$RESULTS"

# Redis killed 4 s after the paced run starts (its pool preparation, prep-wait and warm-up
# take about 3 s), restarted 3 s later; the run lasts KILL_RUN whatever DURATION is, so both
# land inside it and the breaker's probe (every 5 s) finds Redis back before it ends.
KILL_RUN=${KILL_RUN:-10s}
(sleep 4; kill -9 "$REDIS_PID"; sleep 3; start_redis; echo "redis restarted" >&2) &
RESTARTER=$!
DURATION=$KILL_RUN load "cluster-redis-killed" "$CL_SPEC" "$CL_PID" --txns 20 --rcpts 1 \
    --pool 500 --rate 2000 --timeline
grep -E '^t=' <<<"$LAST" | tee -a "$RESULTS"
wait "$RESTARTER"
REDIS_PID=$(cat "$OUT/redis.pid")
rm -f "$OUT/cluster.stats"
kill -USR1 "$CL_PID"
wait_line "$OUT/cluster.stats" '^Redis-Local-Secs' >/dev/null
grep -E '^Redis-' "$OUT/cluster.stats" | tee -a "$RESULTS"
stat_of() { awk -v k="$1" '$1 == k { print $2 }' "$OUT/cluster.stats"; }
# Only this run met a dead Redis: an opening proves the kill landed in it, local seconds
# (counted when Redis answers again) that the restart did too.
[ "$(stat_of Redis-Breaker)" -ge 1 ] || { echo "cluster-bench: the Redis kill did not land in the run" >&2; exit 1; }
[ "$(stat_of Redis-Local-Secs)" -ge 1 ] || { echo "cluster-bench: Redis was not back before the run ended" >&2; exit 1; }

# Memory per tuple at $TUPLES tuples, on a flushed Redis.
redis-cli -p "$RPORT" flushall >/dev/null
"$BIN/examples/cluster_bench" "redis://127.0.0.1:$RPORT/0" "$TUPLES" 64 | tee -a "$RESULTS"
echo "results in $RESULTS"
