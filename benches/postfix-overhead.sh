#!/usr/bin/env bash
# End-to-end overhead of greymilter through a real Postfix 3.7 (issues 7, 15): messages/s with
# no milter, with the no-op milter (examples/noop_milter.rs) in four conversations (floor: end of
# message only; full: CONNECT and MAIL answered too, as greymilter did before issue 15;
# noreply: CONNECT and MAIL without a reply, greymilter's with DNS checks; noop: CONNECT and MAIL
# skipped, the envelope in RCPT macros, greymilter's without) and with greymilter, interleaved, best of ROUNDS, tmpfs queue, discard delivery, smtp-source with SESSIONS parallel
# SMTP sessions. The milters listen on loopback TCP; noop-unix and greymilter-unix are the noop
# and greymilter scenarios over a Unix socket (a second greymilter with its own table). Every message passes greymilter as a whitelisted tuple (the tuple is
# whitelisted with `greymilter query` before the timed runs), so each one costs a full
# CONNECT/MAIL/RCPT/EOM milter conversation and a table look-up. Instance layout and the
# reason for each main.cf setting: see the comments in tests/e2e/postfix.rs.
#
#   cargo build --release --bin greymilter --example noop_milter
#   sudo benches/postfix-overhead.sh            # MSGS=6000 SESSIONS=50 ROUNDS=3 by default
#
# Needs root (Postfix drops to the postfix user) and the postfix package. Everything lives in
# one directory under /dev/shm and listens on 127.0.0.1 only; nothing system-wide is touched
# but two cpuacct cgroups (v1, when /sys/fs/cgroup/cpuacct is writable) that hold Postfix and
# smtp-source while they run.
#
# Besides msg/s, each run reports the CPU per message of Postfix (all its processes, queue
# drained), of smtp-source and of the milter. On a shared or loaded machine msg/s swings with
# whatever else runs; CPU per message does not, and the ratio of the summed CPU per message
# (none / scenario) is the message rate a saturated machine reaches relative to no milter.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release}
MSGS=${MSGS:-6000}
SESSIONS=${SESSIONS:-50}
ROUNDS=${ROUNDS:-3}
SCENARIOS=${SCENARIOS:-"none floor full noreply noop greymilter noop-unix greymilter-unix"}
SMTP_PORT=${SMTP_PORT:-2625}
GM_PORT=${GM_PORT:-10040}
NOOP_PORT=${NOOP_PORT:-10041}
FULL_PORT=${FULL_PORT:-10042}
FLOOR_PORT=${FLOOR_PORT:-10043}
NR_PORT=${NR_PORT:-10044}
PFBIN=/usr/lib/postfix/sbin
FROM=a@sender.test
TO=user@example.test

for tool in "$BIN/greymilter" "$BIN/examples/noop_milter" /usr/sbin/smtp-source "$PFBIN/master"; do
    [ -x "$tool" ] || { echo "postfix-overhead: $tool is missing" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "postfix-overhead: must run as root" >&2; exit 2; }

WORKDIR=$(mktemp -d /dev/shm/gm-pf-bench.XXXXXX)
chmod 755 "$WORKDIR"
# The helpers of benches/lib.sh (not bench_init: this script keeps its own directory and
# cleanup); start_greymilter writes to $OUT.
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"
BENCH=postfix-overhead OUT=$WORKDIR
PF=$WORKDIR/postfix
PIDS=()
cleanup() {
    # Cleanup after success or failure: an instance already stopped, a process already gone,
    # a cgroup already removed are all fine here, hence the `|| true`s.
    postfix -c "$PF" stop >/dev/null 2>&1 || true
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORKDIR"
    for cg in $CG_PF $CG_SRC; do rmdir "$cg" 2>/dev/null || true; done
}
trap cleanup EXIT

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# CPU accounting for Postfix and smtp-source: cgroup v1 cpuacct, nanoseconds.
CG_ROOT=/sys/fs/cgroup/cpuacct
CG_PF="" CG_SRC=""
if [ -w "$CG_ROOT" ]; then
    CG_PF=$CG_ROOT/gm-pf-bench-$$-postfix
    CG_SRC=$CG_ROOT/gm-pf-bench-$$-source
    mkdir -p "$CG_PF" "$CG_SRC"
fi
cg_ns() { if [ -n "$1" ]; then cat "$1/cpuacct.usage"; else echo 0; fi; }
in_cgroup() {  # $1 cgroup (may be empty), then the command
    local cg=$1; shift
    ( if [ -n "$cg" ]; then echo "$BASHPID" >"$cg/cgroup.procs"; fi; exec "$@" )
}

# --- the milters ----------------------------------------------------------------------------
# start_pf_greymilter NAME LISTEN [MILTER_LINES]: a greymilter with a 1 s delay; sets STARTED.
start_pf_greymilter() {
    start_greymilter "$1" "$2" "[milter]
listen = \"$2\"
${3:-}
[greylist]
delay = \"1s\"
[log]
level = \"info\""
    STARTED=$GM_PID
}
start_pf_greymilter greymilter "inet:127.0.0.1:$GM_PORT"
GM_PID=$STARTED
# The same over a Unix socket that smtpd (user postfix, not chrooted) may connect to.
GMU_SOCK=$WORKDIR/greymilter.sock
start_pf_greymilter greymilter-unix "unix:$GMU_SOCK" 'socket_mode = "0666"'
GMU_PID=$STARTED
NOOPU_SOCK=$WORKDIR/noop.sock
"$BIN/examples/noop_milter" "unix:$NOOPU_SOCK" >"$WORKDIR/noop-unix.log" 2>&1 </dev/null &
NOOPU_PID=$!; PIDS+=("$NOOPU_PID")
"$BIN/examples/noop_milter" "inet:127.0.0.1:$NOOP_PORT" >"$WORKDIR/noop.log" 2>&1 </dev/null &
NOOP_PID=$!; PIDS+=("$NOOP_PID")
"$BIN/examples/noop_milter" "inet:127.0.0.1:$FULL_PORT" full >"$WORKDIR/full.log" 2>&1 </dev/null &
FULL_PID=$!; PIDS+=("$FULL_PID")
"$BIN/examples/noop_milter" "inet:127.0.0.1:$FLOOR_PORT" eom-only >"$WORKDIR/floor.log" 2>&1 </dev/null &
FLOOR_PID=$!; PIDS+=("$FLOOR_PID")
"$BIN/examples/noop_milter" "inet:127.0.0.1:$NR_PORT" no-reply >"$WORKDIR/noreply.log" 2>&1 </dev/null &
NR_PID=$!; PIDS+=("$NR_PID")
for spec in "unix:$NOOPU_SOCK" "inet:127.0.0.1:$NOOP_PORT" "inet:127.0.0.1:$FULL_PORT" \
    "inet:127.0.0.1:$FLOOR_PORT" "inet:127.0.0.1:$NR_PORT"; do
    wait_listening "$spec" 10
done
chmod 666 "$NOOPU_SOCK"   # the no-op milter binds with the library's default mode
# Whitelist the one tuple smtp-source uses: first attempt deferred (status 4), retried until it
# passes once the 1 s delay is over (at most 10 s).
for socket in "inet:127.0.0.1:$GM_PORT" "unix:$GMU_SOCK"; do
    query=("$BIN/greymilter" query --socket "$socket" --client 127.0.0.1 --from "$FROM" --to "$TO")
    status=0; "${query[@]}" >/dev/null || status=$?
    [ "$status" = 4 ] || { echo "postfix-overhead: the first attempt got status $status, not 4 (deferred)" >&2; exit 1; }
    for _ in $(seq 100); do
        status=0; "${query[@]}" >/dev/null || status=$?
        [ "$status" = 0 ] && break
        sleep 0.1
    done
    [ "$status" = 0 ] || { echo "postfix-overhead: the tuple did not pass after the delay" >&2; exit 1; }
done

# --- the Postfix instance ----------------------------------------
QUEUE=$WORKDIR/queue
mkdir -p "$PF" "$QUEUE" "$WORKDIR/data"
chown postfix:postfix "$WORKDIR/data"
write_config() {  # $1: smtpd_milters value (empty: none)
    cat >"$PF/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $QUEUE
data_directory = $WORKDIR/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = $WORKDIR/maillog
maillog_file_prefixes = /var, /dev/stdout, $WORKDIR
myhostname = mx.example.test
mydomain = example.test
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
biff = no
append_dot_mydomain = no
smtputf8_enable = no
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
maximal_queue_lifetime = 1h
bounce_queue_lifetime = 1h
notify_classes =
smtpd_client_connection_rate_limit = 0
smtpd_client_connection_count_limit = 0
in_flow_delay = 0
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
default_process_limit = 100
mydestination =
local_recipient_maps =
virtual_mailbox_domains = example.test
virtual_transport = discard:
default_transport = discard:
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_milters = $1
non_smtpd_milters =
milter_protocol = 6
milter_default_action = tempfail
CONF
    cat >"$PF/master.cf" <<CONF
127.0.0.1:$SMTP_PORT inet n - n - - smtpd
pickup    unix  n - n 60    1 pickup
cleanup   unix  n - n -     0 cleanup
qmgr      unix  n - n 300   1 qmgr
rewrite   unix  - - n -     - trivial-rewrite
bounce    unix  - - n -     0 bounce
defer     unix  - - n -     0 bounce
trace     unix  - - n -     0 bounce
verify    unix  - - n -     1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -     - proxymap
proxywrite unix - - n -     1 proxymap
smtp      unix  - - n -     - smtp
relay     unix  - - n -     - smtp
showq     unix  n - n -     - showq
error     unix  - - n -     - error
retry     unix  - - n -     - error
discard   unix  - - n -     - discard
anvil     unix  - - n -     1 anvil
scache    unix  - - n -     1 scache
postlog   unix-dgram n - n - 1 postlogd
CONF
}
write_config ""
# post-install complains about parts of a full installation this private instance does not
# have; `postfix check` right after judges what the instance needs.
"$PFBIN/post-install" config_directory="$PF" create-missing >/dev/null 2>&1 || true
postfix -c "$PF" check

start_postfix() {
    write_config "$1"
    in_cgroup "$CG_PF" postfix -c "$PF" start >/dev/null 2>&1
    for _ in $(seq 100); do
        grep -q ":$(printf %04X "$SMTP_PORT") 00000000:0000 0A " /proc/net/tcp && return 0
        sleep 0.1
    done
    echo "postfix-overhead: smtpd is not listening" >&2; exit 1
}
stop_postfix() {
    # `stop` fails on an instance already down; master -t below is the check that it is.
    postfix -c "$PF" stop >/dev/null 2>&1 || true
    for _ in $(seq 300); do
        "$PFBIN/master" -c "$PF" -t 2>/dev/null && return 0
        sleep 0.1
    done
    echo "postfix-overhead: Postfix did not stop within 30 s" >&2; exit 1
}

source_mail() {  # $1 sessions, $2 messages
    in_cgroup "$CG_SRC" smtp-source -4 -s "$1" -m "$2" -f "$FROM" -t "$TO" -M client.test \
        "127.0.0.1:$SMTP_PORT"
}
# Waits (up to 30 s) until Postfix has delivered everything it accepted.
queue_drained() {
    for _ in $(seq 300); do
        [ -z "$(find "$QUEUE/incoming" "$QUEUE/active" "$QUEUE/deferred" -type f 2>/dev/null | head -1)" ] \
            && return 0
        sleep 0.1
    done
    echo "postfix-overhead: the queue did not drain within 30 s" >&2; exit 1
}
# Messages delivered (to discard:) so far, from the instance's maillog.
delivered() {
    [ -f "$WORKDIR/maillog" ] || { echo 0; return; }
    grep -c 'status=sent' "$WORKDIR/maillog" || [ $? = 1 ]  # 1: counted none (it prints 0)
}
# Waits (up to 10 s: postlogd writes asynchronously) until at least $1 messages were delivered.
wait_delivered() {
    for _ in $(seq 100); do
        [ "$(delivered)" -ge "$1" ] && return 0
        sleep 0.1
    done
    echo "postfix-overhead: $scenario delivered $(( $(delivered) - ${2:-0} )) of $MSGS messages" >&2; exit 1
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-15s %5s %7s %8s %9s %14s %10s %10s %10s\n' scenario round msgs seconds msg/s \
    milter_cpu_s postfix_us source_us milter_us
declare -A BEST CPU_PF CPU_SRC CPU_MILTER
for round in $(seq "$ROUNDS"); do
    for scenario in $SCENARIOS; do
        case $scenario in
            none) milter=""; pid="" ;;
            noop) milter="inet:127.0.0.1:$NOOP_PORT"; pid=$NOOP_PID ;;
            full) milter="inet:127.0.0.1:$FULL_PORT"; pid=$FULL_PID ;;
            floor) milter="inet:127.0.0.1:$FLOOR_PORT"; pid=$FLOOR_PID ;;
            noreply) milter="inet:127.0.0.1:$NR_PORT"; pid=$NR_PID ;;
            greymilter) milter="inet:127.0.0.1:$GM_PORT"; pid=$GM_PID ;;
            noop-unix) milter="unix:$NOOPU_SOCK"; pid=$NOOPU_PID ;;
            greymilter-unix) milter="unix:$GMU_SOCK"; pid=$GMU_PID ;;
            *) echo "unknown scenario $scenario" >&2; exit 2 ;;
        esac
        start_postfix "$milter"
        source_mail 5 20                      # warm-up: spawns smtpd and cleanup processes
        gm_log=$WORKDIR/${scenario}.log
        # grep -c prints 0 and exits 1 where nothing matched (or no milter log at all).
        passes_before=$(grep -c 'action=pass' "$gm_log" 2>/dev/null || true)
        queue_drained
        sent_before=$(delivered)
        cpu_before=${pid:+$(cpu_ticks "$pid")}
        pf_before=$(cg_ns "$CG_PF") src_before=$(cg_ns "$CG_SRC")
        start=$(date +%s.%N)
        source_mail "$SESSIONS" "$MSGS"
        end=$(date +%s.%N)
        queue_drained
        wait_delivered $(( sent_before + MSGS )) "$sent_before"
        cpu=${pid:+$(awk -v a="$cpu_before" -v b="$(cpu_ticks "$pid")" 'BEGIN { printf "%.2f", (b - a) / 100 }')}
        pf_us=$(awk -v a="$pf_before" -v b="$(cg_ns "$CG_PF")" -v m="$MSGS" 'BEGIN { printf "%.0f", (b - a) / 1000 / m }')
        src_us=$(awk -v a="$src_before" -v b="$(cg_ns "$CG_SRC")" -v m="$MSGS" 'BEGIN { printf "%.0f", (b - a) / 1000 / m }')
        milter_us=$(awk -v c="${cpu:-0}" -v m="$MSGS" 'BEGIN { printf "%.0f", c * 1e6 / m }')
        CPU_PF[$scenario]+="$pf_us " CPU_SRC[$scenario]+="$src_us " CPU_MILTER[$scenario]+="$milter_us "
        stop_postfix
        if [ "$scenario" = greymilter ] || [ "$scenario" = greymilter-unix ]; then
            passes=$(( $(grep -c 'action=pass' "$gm_log") - passes_before ))
            [ "$passes" -ge "$MSGS" ] || { echo "greymilter passed $passes of $MSGS" >&2; exit 1; }
        fi
        rate=$(awk -v m="$MSGS" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", m / (e - s) }')
        printf '%-15s %5s %7s %8.2f %9s %14s %10s %10s %10s\n' "$scenario" "$round" "$MSGS" \
            "$(awk -v s="$start" -v e="$end" 'BEGIN { print e - s }')" "$rate" "${cpu:--}" \
            "$pf_us" "$src_us" "$milter_us"
        if [ -z "${BEST[$scenario]:-}" ] || [ "$rate" -gt "${BEST[$scenario]}" ]; then BEST[$scenario]=$rate; fi
    done
done
echo "best of $ROUNDS:"
for scenario in $SCENARIOS; do
    ratio=""
    if [ -n "${BEST[none]:-}" ] && [ "$scenario" != none ]; then
        ratio=$(awk -v a="${BEST[$scenario]}" -v b="${BEST[none]}" 'BEGIN { printf " = %.1f %% of no milter", 100 * a / b }')
    fi
    echo "RESULT scenario=$scenario msg_s=${BEST[$scenario]}$ratio"
done
if [ -n "$CG_PF" ]; then
    echo "CPU per message, median of $ROUNDS (postfix + smtp-source + milter = total):"
    for scenario in $SCENARIOS; do
        pf=$(median <<<"${CPU_PF[$scenario]}") src=$(median <<<"${CPU_SRC[$scenario]}")
        ml=$(median <<<"${CPU_MILTER[$scenario]}")
        total=$(awk -v a="$pf" -v b="$src" -v c="$ml" 'BEGIN { printf "%.0f", a + b + c }')
        [ "$scenario" = none ] && NONE_TOTAL=$total
        ratio=""
        if [ -n "${NONE_TOTAL:-}" ] && [ "$scenario" != none ]; then
            ratio=$(awk -v a="$NONE_TOTAL" -v b="$total" 'BEGIN { printf " cpu_rate=%.1f%%", 100 * a / b }')
        fi
        echo "RESULT-CPU scenario=$scenario postfix_us=$pf source_us=$src milter_us=$ml total_us=$total$ratio"
    done
fi
