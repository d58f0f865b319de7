#!/usr/bin/env bash
# Smoke run of every benchmark (BENCHMARKS.md): tiny sizes, a few seconds each, so the tools
# keep compiling and working. It checks that each one runs and that the milters answered as
# the load expects; it asserts nothing about speed.
#
#   .ci/bench-smoke.sh          (the Postfix part runs only as root with Postfix installed)
set -euo pipefail
cd "$(dirname "$0")/.."

source .ci/lib.sh
ci_need_cargo bench-smoke

cargo build --release --bin greymilter --examples
BIN=target/release
TMP=$(mktemp -d)
# field, wait_line, wait_listening, start_greymilter, stop_pid: benches/lib.sh.
# shellcheck source=benches/lib.sh
source benches/lib.sh
# A global OUT (start_greymilter writes there): a prefix assignment would end with the call.
OUT=$TMP
bench_init bench-smoke
trap 'bench_cleanup; rm -rf "$TMP"' EXIT
fail() { echo "bench-smoke: $*" >&2; exit 1; }

echo "== criterion micro benchmarks (each once)"
GREYMILTER_BENCH_TUPLES=1000 cargo bench --bench codec --bench engine -- --test

echo "== state_bench: fill, write, fork a checkpoint, restore"
# 20k tuples filled, then 2k new-tuple decisions timed on the full table: 22000 in the end.
out=$("$BIN/examples/state_bench" --tuples 20k --decide 2k --out "$TMP/state" --keep --rate 2000)
echo "$out"
[ "$(field "$out" tuples)" = 22000 ] || fail "state_bench did not end with 20000 + 2000 tuples"
[ -s "$TMP/state" ] || fail "state_bench wrote no state file"

echo "== list_scale: list files loaded, compiled and decided against (tiny)"
out=$("$BIN/examples/list_scale" 2000 200 20000 1)
echo "$out"
[ "$(grep -c '^RESULT list=' <<<"$out")" = 5 ] || fail "list_scale did not measure every case"

echo "== dns_bench: spf=key warm and cold against off (tiny)"
out=$("$BIN/examples/dns_bench" --transactions 200 --cold-transactions 20)
echo "$out"
[ "$(grep -c '^RESULT run=' <<<"$out")" = 3 ] || fail "dns_bench did not measure every run"

echo "== fork_cost (16 MiB, with and without huge pages)"
for huge in "" huge; do
    # A failed madvise, fork or child exits 1 (set -e stops here); the RESULT line says all
    # three forks were measured.
    out=$("$BIN/examples/fork_cost" 16 $huge)
    echo "$out"
    [ "$(field "$out" forks)" = 3 ] || fail "fork_cost ${huge:-plain} did not measure 3 forks"
done

echo "== engine_memory: bytes per tuple and the worst maintain() slice (tiny)"
out=$("$BIN/examples/engine_memory" 20000 2000)
echo "$out"
grep -q '^tuples=20000 whitelisted=4000 ' <<<"$out" || fail "engine_memory did not fill 20000 tuples"
grep -q '^maintain: [0-9]* calls, .*expired 16000 pending' <<<"$out" || fail "engine_memory: pending tuples did not expire"

echo "== admin_walk: flush --pending and forget --network on a filled Redis (tiny)"
RPORT=$(port)
redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$TMP" --save "" --appendonly no \
    >"$TMP/redis.log" 2>&1 </dev/null &
PIDS+=($!)
wait_listening "$RPORT" 10
out=$("$BIN/examples/admin_walk" "redis://127.0.0.1:$RPORT/0" 2000)
echo "$out"
grep -q '^flush --pending: 1000 of 2000 tuples .*(complete: true)' <<<"$out" || fail "admin_walk: flush did not remove the 1000 pending tuples"
grep -q '^forget one network: .*(walk complete: true)' <<<"$out" || fail "admin_walk: forget did not complete"
stop_pid "${PIDS[-1]}"

echo "== callgrind-rcpt.sh: instructions per RCPT decision (tiny)"
out=$(DURATION=1s benches/callgrind-rcpt.sh "$BIN" "$(port)")
echo "$out"
grep -Eq '^instructions=[0-9]+ rcpts=[1-9][0-9]* per_rcpt=[0-9]+ ' <<<"$out" || fail "callgrind-rcpt.sh counted nothing"

echo "== milter_load against the no-op milter"
"$BIN/examples/noop_milter" inet:127.0.0.1:0 >"$TMP/noop.out" 2>&1 </dev/null &
PIDS+=($!)
noop=$(wait_line "$TMP/noop.out" 'listening on' | sed 's/.*listening on \([^ ]*\).*/\1/')
out=$("$BIN/examples/milter_load" --target "$noop" --connections 4 --duration 1s --warmup 0s \
    --pool 20 --prep-wait 0s --txns 3 --rcpts 2 --milter-pid "${PIDS[0]}")
echo "$out"
[ "$(field "$out" errors)" = 0 ] || fail "protocol errors against the no-op milter"
[ "$(field "$out" tempfail)" = 0 ] || fail "the no-op milter deferred a recipient"
[ "$(field "$out" continue)" -gt 0 ] || fail "no recipient was decided"

echo "== milter_load against greymilter restored from the state_bench file, with a checkpoint"
gm=inet:127.0.0.1:$(port)
start_greymilter greymilter "$gm" "[milter]
listen = \"$gm\"
[greylist]
delay = \"1h\"
max_tuples = 1000000
[lists]
recipient_domains = { \"pass.test\" = { action = \"greylist\", delay = \"1s\" }, \"list.test\" = \"accept\" }
[state]
file = \"$TMP/state\""
grep -q 'restored state' "$TMP/greymilter.log" || fail "greymilter did not restore the state_bench file"
out=$("$BIN/examples/milter_load" --target "$gm" --connections 4 --duration 2s --warmup 0s \
    --pool 20 --prep-wait 1500ms --milter-pid "$GM_PID" --signal-at 500ms --signal SIGUSR2 --timeline)
echo "$out"
[ "$(field "$out" errors)" = 0 ] || fail "protocol errors against greymilter"
grep -Eq '^ +new: continue 0 ' <<<"$out" || fail "greymilter passed a new tuple"
grep -Eq '^ +pass: continue [1-9][0-9]* accept 0 tempfail 0 ' <<<"$out" || fail "a whitelisted tuple was not passed"
wait_line "$TMP/greymilter.log" 'checkpoint written' >/dev/null

echo "== milter-bench.sh (the whole milter matrix, tiny)"
TUPLES=20k ROUNDS=1 DURATION=1s CONNECTIONS=4 CHECKPOINT_RUN=2s CHECKPOINT_AT=500ms \
    OUT="$TMP/milter-bench" benches/milter-bench.sh >"$TMP/milter-bench.out" 2>&1 \
    || fail "milter-bench.sh failed: $(tail -5 "$TMP/milter-bench.out")"
tail -12 "$TMP/milter-bench.out"
grep -q '^checkpoint-full/persistent .* errors=0 ' "$TMP/milter-bench/results.txt" \
    || fail "milter-bench.sh: no clean checkpoint run"
[ "$(grep -c ' errors=0 ' "$TMP/milter-bench/results.txt")" = "$(grep -c ' errors=' "$TMP/milter-bench/results.txt")" ] \
    || fail "milter-bench.sh: protocol errors"

echo "== anchor-bench.sh (greymilter, no-op milter and milter-greylist interleaved, tiny)"
if [ -n "${ANCHOR_TARBALL:-}" ] || [ -f ../shared/anchors/milter-greylist-4.6.2.tar.gz ] \
    || [ -f /work/shared/anchors/milter-greylist-4.6.2.tar.gz ]; then
    TINY=1 OUT="$TMP/anchor-bench" benches/anchor-bench.sh >"$TMP/anchor-bench.out" 2>&1 \
        || fail "anchor-bench.sh failed: $(tail -5 "$TMP/anchor-bench.out")"
    tail -14 "$TMP/anchor-bench.out"
else
    # The anchor's source lives outside the repository (it is never part of
    # the project): a machine without it skips this benchmark, CI included.
    echo "== anchor-bench.sh: skipped (no milter-greylist tarball; set ANCHOR_TARBALL)"
fi

echo "== dns-milter-bench.sh (spf off / key warm / key cold through the milter, tiny)"
ROUNDS=1 DURATION=1s CONNECTIONS=4 DOMAINS=20 POOL=20 SHAPES=persistent \
    OUT="$TMP/dns-bench" benches/dns-milter-bench.sh >"$TMP/dns-bench.out" 2>&1 \
    || fail "dns-milter-bench.sh failed: $(tail -5 "$TMP/dns-bench.out")"
tail -4 "$TMP/dns-bench.out"
[ "$(grep -c ' errors=0 ' "$TMP/dns-bench/results.txt")" = 6 ] \
    || fail "dns-milter-bench.sh: a run is missing or had protocol errors"
grep -q 'spf=pass' "$TMP/dns-bench/key-warm.log" || fail "dns-milter-bench.sh: no SPF pass in the warm run"

echo "== cluster-bench.sh (standalone vs [cluster], plain and TLS, Redis killed mid-run, memory per tuple; tiny)"
# The killed run lasts 8 s so the kill (+4 s), the restart (+7 s) and the breaker's probe
# land inside it; cluster-bench.sh fails if they did not.
DURATION=1s KILL_RUN=8s CONNECTIONS=4 TUPLES=2000 OUT="$TMP/cluster-bench" benches/cluster-bench.sh \
    >"$TMP/cluster-bench.out" 2>&1 || fail "cluster-bench.sh failed: $(tail -5 "$TMP/cluster-bench.out")"
grep -E '^(standalone|cluster) ' "$TMP/cluster-bench/results.txt"
# standalone, cluster, cluster at half the standalone peak, the same over TLS, Redis killed.
[ "$(grep -cE '^(standalone|cluster)[^ ]* RESULT .* errors=0 ' "$TMP/cluster-bench/results.txt")" = 5 ] \
    || fail "cluster-bench.sh: a run is missing or had protocol errors"
grep -q 'bytes per pending tuple' "$TMP/cluster-bench/results.txt" || fail "cluster-bench.sh: no memory figure"

echo "== multi_mx: the multi-MX retry experiment (tiny)"
out=$("$BIN/examples/multi_mx" --messages 20)
echo "$out" | grep -v '^RESULT'
[ "$(grep -c '^RESULT scenario=' <<<"$out")" = 10 ] || fail "multi_mx did not run every scenario"

if [ "$(id -u)" = 0 ] && [ -x /usr/sbin/smtp-source ]; then
    echo "== Postfix end-to-end overhead (tiny)"
    # Every default scenario, the policy ones (policy-noop, greymilter-policy, postgrey:
    # .ci/install-policy.sh installs postgrey) included.
    MSGS=100 SESSIONS=10 ROUNDS=1 SMTP_PORT=$(port) GM_PORT=$(port) NOOP_PORT=$(port) \
        FULL_PORT=$(port) FLOOR_PORT=$(port) NR_PORT=$(port) PNOOP_PORT=$(port) \
        GMP_PORT=$(port) POSTGREY_PORT=$(port) \
        benches/postfix-overhead.sh >"$TMP/postfix-overhead.out" 2>&1 \
        || fail "postfix-overhead.sh failed: $(tail -5 "$TMP/postfix-overhead.out")"
    tail -14 "$TMP/postfix-overhead.out"
    # Every scenario ran and delivered, and each greylister or policy service passed every
    # recipient (the script checks both per run).
    [ "$(grep -cE '^RESULT scenario=[a-z-]+ msg_s=[1-9]' "$TMP/postfix-overhead.out")" = 11 ] \
        || fail "postfix-overhead.sh: a scenario is missing"
    # CPU figures come with cpuacct cgroups only.
    if grep -q '^RESULT-CPU ' "$TMP/postfix-overhead.out"; then
        grep -Eq '^RESULT-POLICY greymilter_us=[0-9.]+ .*postgrey_us=[0-9.]+' "$TMP/postfix-overhead.out" \
            || fail "postfix-overhead.sh: no policy figures"
    fi
else
    echo "== Postfix end-to-end overhead: skipped (needs root and Postfix)"
fi
echo "bench-smoke: all benchmarks ran"
