#!/usr/bin/env bash
# End-to-end overhead of greymilter through a real Postfix 3.7 (issues 7, 15, 21): messages/s with
# no filter, with the no-op milter (examples/noop_milter.rs) in four conversations (floor: end of
# message only; full: CONNECT and MAIL answered too, as greymilter did before issue 15;
# noreply: CONNECT and MAIL without a reply, greymilter's with DNS checks; noop: CONNECT and MAIL
# skipped, the envelope in RCPT macros, greymilter's without) and with greymilter, interleaved, best of ROUNDS, tmpfs queue, discard delivery, smtp-source with SESSIONS parallel
# SMTP sessions. The milters listen on loopback TCP; noop-unix and greymilter-unix are the noop
# and greymilter scenarios over a Unix socket (a second greymilter with its own table). Every message passes greymilter as a whitelisted tuple (the tuple is
# whitelisted with `greymilter query` before the timed runs), so each one costs a full
# CONNECT/MAIL/RCPT/EOM milter conversation and a table look-up. Instance layout and the
# reason for each main.cf setting: see the comments in tests/support/e2e/postfix.rs.
#
# Postfix's policy protocol (issue 21): the policy scenarios have no milter but
#   smtpd_recipient_restrictions = reject_unauth_destination,
#       check_policy_service { inet:127.0.0.1:PORT, default_action=DUNNO }
# (docs/policy.md's line) with, as the service: policy-noop, examples/noop_policy.rs (answers
# DUNNO); greymilter-policy, greymilter with `[policy] listen` and `[milter] enabled = false`;
# postgrey, Debian's /usr/sbin/postgrey run privately (its own --dbdir in the work directory,
# --delay=1, its other options at their defaults). Before the timed runs the bench's tuple is
# whitelisted at both greylisters the way Postfix would get it through: one policy request by
# hand (deferred), the same again after the 1 s delay (passes), so every message passes as a
# known tuple. A policy service that fails is hidden by default_action=DUNNO, so each policy
# run also checks that the service answered every recipient (greymilter's and postgrey's pass
# lines, the no-op's request counts) and that Postfix logged no trouble talking to it.
#
#   cargo build --release --bin greymilter --example noop_milter --example noop_policy
#   sudo benches/postfix-overhead.sh            # MSGS=6000 SESSIONS=50 ROUNDS=3 by default
#
# Needs root (Postfix drops to the postfix user), the postfix package, and postgrey for the
# postgrey scenario. Everything lives in one directory under /dev/shm and listens on 127.0.0.1
# only; nothing system-wide is touched but cpuacct cgroups (v1, when /sys/fs/cgroup/cpuacct is
# writable) that hold Postfix, smtp-source and each filter while they run.
#
# Besides msg/s, each run reports the CPU per message of Postfix (all its processes, queue
# drained), of smtp-source and of the filter (milter or policy service: its cgroup's
# cpuacct.usage, or its /proc tick counts without cgroups, which under-read a perl postgrey by
# 20-30 %). smtp-source sends one recipient per message, so the filter's CPU per message is
# also its CPU per RCPT decision (policy request). On a shared or loaded machine msg/s swings
# with whatever else runs; CPU per message does not, and the ratio of the summed CPU per
# message (none / scenario) is the message rate a saturated machine reaches relative to no
# filter.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release}
MSGS=${MSGS:-6000}
SESSIONS=${SESSIONS:-50}
ROUNDS=${ROUNDS:-3}
SCENARIOS=${SCENARIOS:-"none floor full noreply noop greymilter noop-unix greymilter-unix policy-noop greymilter-policy postgrey"}
SMTP_PORT=${SMTP_PORT:-2625}
GM_PORT=${GM_PORT:-10040}
NOOP_PORT=${NOOP_PORT:-10041}
FULL_PORT=${FULL_PORT:-10042}
FLOOR_PORT=${FLOOR_PORT:-10043}
NR_PORT=${NR_PORT:-10044}
PNOOP_PORT=${PNOOP_PORT:-10045}
GMP_PORT=${GMP_PORT:-10046}
POSTGREY_PORT=${POSTGREY_PORT:-10047}
PFBIN=/usr/lib/postfix/sbin
FROM=a@sender.test
TO=user@example.test
HELO=client.test
WARMUP_MSGS=20
POSTGREY=/usr/sbin/postgrey

wants() { [[ " $SCENARIOS " == *" $1 "* ]]; }  # is scenario $1 in SCENARIOS?
for tool in "$BIN/greymilter" "$BIN/examples/noop_milter" "$BIN/examples/noop_policy" \
    /usr/sbin/smtp-source "$PFBIN/master"; do
    [ -x "$tool" ] || { echo "postfix-overhead: $tool is missing" >&2; exit 2; }
done
if wants postgrey && ! [ -x "$POSTGREY" ]; then
    echo "postfix-overhead: $POSTGREY is missing (apt-get install postgrey, or leave the postgrey scenario out of SCENARIOS)" >&2
    exit 2
fi
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
declare -A FILTER_CG   # filter's pid -> its cgroup (cg_adopt)
cleanup() {
    # Cleanup after success or failure: an instance already stopped, a process already gone,
    # a cgroup already removed are all fine here, hence the `|| true`s.
    postfix -c "$PF" stop >/dev/null 2>&1 || true
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORKDIR"
    for cg in $CG_PF $CG_SRC "${FILTER_CG[@]}"; do rmdir "$cg" 2>/dev/null || true; done
}
trap cleanup EXIT

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# CPU accounting for Postfix, smtp-source and each filter: cgroup v1 cpuacct, nanoseconds.
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
# cg_adopt NAME PID: moves a filter just started (one process, and whatever it forks later)
# into a cgroup of its own, when cgroups are available. What it spent starting up stays
# outside, which does not matter: only the timed runs are counted.
cg_adopt() {
    [ -n "$CG_PF" ] || return 0
    local cg=$CG_ROOT/gm-pf-bench-$$-$1
    mkdir -p "$cg"
    echo "$2" >"$cg/cgroup.procs"
    FILTER_CG[$2]=$cg
}
# The CPU a filter has used so far, in nanoseconds: its cgroup's, or its /proc ticks.
filter_ns() {
    if [ -n "${FILTER_CG[$1]:-}" ]; then
        cat "${FILTER_CG[$1]}/cpuacct.usage"
    else
        awk -v t="$(cpu_ticks "$1")" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", t * 1e9 / hz }'
    fi
}

# --- the milters ----------------------------------------------------------------------------
# start_pf_greymilter NAME LISTEN [MILTER_LINES]: a greymilter with a 1 s delay; sets STARTED.
# smtp-source connects from 127.0.0.1, a loopback client greymilter would let through without
# a look-up (skip_loopback): the bench turns that off so that every message costs the
# whitelisted tuple's table look-up, as mail from any other client does.
start_pf_greymilter() {
    start_greymilter "$1" "$2" "[milter]
listen = \"$2\"
${3:-}
[greylist]
delay = \"1s\"
skip_loopback = false
[log]
level = \"info\""
    STARTED=$GM_PID
    cg_adopt "$1" "$GM_PID"
}
# (start_greymilter sets GM_PID for each greymilter it starts: the TCP one's pid is kept apart.)
start_pf_greymilter greymilter "inet:127.0.0.1:$GM_PORT"
GM_TCP_PID=$STARTED
# The same over a Unix socket that smtpd (user postfix, not chrooted) may connect to.
GMU_SOCK=$WORKDIR/greymilter.sock
start_pf_greymilter greymilter-unix "unix:$GMU_SOCK" 'socket_mode = "0666"'
GMU_PID=$STARTED
NOOPU_SOCK=$WORKDIR/noop.sock
# start_filter NAME COMMAND...: starts a filter in the background, its output in
# $WORKDIR/NAME.log, in a cgroup of its own; sets STARTED.
start_filter() {
    local name=$1; shift
    "$@" >"$WORKDIR/$name.log" 2>&1 </dev/null &
    STARTED=$!; PIDS+=("$STARTED")
    cg_adopt "$name" "$STARTED"
}
start_filter noop-unix "$BIN/examples/noop_milter" "unix:$NOOPU_SOCK"; NOOPU_PID=$STARTED
start_filter noop "$BIN/examples/noop_milter" "inet:127.0.0.1:$NOOP_PORT"; NOOP_PID=$STARTED
start_filter full "$BIN/examples/noop_milter" "inet:127.0.0.1:$FULL_PORT" full; FULL_PID=$STARTED
start_filter floor "$BIN/examples/noop_milter" "inet:127.0.0.1:$FLOOR_PORT" eom-only; FLOOR_PID=$STARTED
start_filter noreply "$BIN/examples/noop_milter" "inet:127.0.0.1:$NR_PORT" no-reply; NR_PID=$STARTED
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

# --- the policy services ---------------------------------------------------------------------
# policy_ask PORT: one policy request for the bench's tuple, with the attributes greymilter and
# postgrey read as Postfix's smtpd sends them at RCPT (client_name=unknown: the instance does no
# peer name look-ups), on a connection of its own; prints the answer's action= line.
policy_ask() {
    local fd line action=""
    exec {fd}<>"/dev/tcp/127.0.0.1/$1" || { echo "postfix-overhead: cannot connect to 127.0.0.1:$1" >&2; exit 1; }
    printf '%s\n' request=smtpd_access_policy protocol_state=RCPT protocol_name=ESMTP \
        client_address=127.0.0.1 client_name=unknown reverse_client_name=unknown \
        "helo_name=$HELO" "sender=$FROM" "recipient=$TO" recipient_count=0 \
        "instance=bench.$BASHPID.$RANDOM" "" >&"$fd"
    # Up to the answer's empty line; a read that times out (30 s) ends the loop too.
    while IFS= read -r -t 30 -u "$fd" line; do
        [ -z "$line" ] && break
        action=$line
    done
    exec {fd}>&-
    echo "$action"
}
# whitelist_policy NAME PORT: the bench's tuple through a greylisting policy service, as a
# sender that retries would take it: the first request is deferred, the same request once the
# 1 s delay is over passes (tried for up to 10 s), and from then on the tuple is known: DUNNO.
whitelist_policy() {
    local answer
    answer=$(policy_ask "$2")
    [[ $answer == action=DEFER_IF_PERMIT* ]] \
        || { echo "postfix-overhead: $1 answered the first request with '$answer', not DEFER_IF_PERMIT" >&2; exit 1; }
    for _ in $(seq 20); do
        sleep 0.5
        answer=$(policy_ask "$2")
        case $answer in action=DUNNO | action=PREPEND*) break ;; esac
    done
    case $answer in action=DUNNO | action=PREPEND*) ;; *)
        echo "postfix-overhead: $1 still answered '$answer' to the tuple after 10 s" >&2; exit 1 ;;
    esac
    answer=$(policy_ask "$2")
    [ "$answer" = action=DUNNO ] \
        || { echo "postfix-overhead: $1 answered '$answer' to a known tuple, not DUNNO" >&2; exit 1; }
}
PNOOP_PID="" GMP_PID="" POSTGREY_PID=""
if wants policy-noop; then
    start_filter policy-noop "$BIN/examples/noop_policy" "inet:127.0.0.1:$PNOOP_PORT"; PNOOP_PID=$STARTED
    wait_listening "inet:127.0.0.1:$PNOOP_PORT" 10
    [ "$(policy_ask "$PNOOP_PORT")" = action=DUNNO ] \
        || { echo "postfix-overhead: the no-op policy service did not answer DUNNO" >&2; exit 1; }
fi
if wants greymilter-policy; then
    # The policy front end alone, with the milter scenarios' settings.
    printf '%s\n' "[milter]" "enabled = false" "[policy]" "listen = \"inet:127.0.0.1:$GMP_PORT\"" \
        "[greylist]" 'delay = "1s"' "skip_loopback = false" "[log]" 'level = "info"' \
        >"$WORKDIR/greymilter-policy.toml"
    start_filter greymilter-policy "$BIN/greymilter" --config "$WORKDIR/greymilter-policy.toml"
    GMP_PID=$STARTED
    wait_listening "inet:127.0.0.1:$GMP_PORT" 120
    whitelist_policy greymilter-policy "$GMP_PORT"
fi
if wants postgrey; then
    # postgrey drops to its own user, which must own its database directory.
    mkdir "$WORKDIR/postgrey-db"
    chown postgrey:postgrey "$WORKDIR/postgrey-db"
    start_filter postgrey "$POSTGREY" "--inet=127.0.0.1:$POSTGREY_PORT" --delay=1 \
        "--dbdir=$WORKDIR/postgrey-db"
    POSTGREY_PID=$STARTED
    wait_listening "inet:127.0.0.1:$POSTGREY_PORT" 30
    whitelist_policy postgrey "$POSTGREY_PORT"
fi

# --- the Postfix instance ----------------------------------------
QUEUE=$WORKDIR/queue
mkdir -p "$PF" "$QUEUE" "$WORKDIR/data"
chown postfix:postfix "$WORKDIR/data"
write_config() {  # $1: smtpd_milters value (empty: none); $2: policy service port (empty: none)
    local restrictions=""
    if [ -n "${2:-}" ]; then
        restrictions="reject_unauth_destination, check_policy_service { inet:127.0.0.1:$2, default_action=DUNNO }"
    fi
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
smtpd_recipient_restrictions = $restrictions
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
write_config "" ""
# post-install complains about parts of a full installation this private instance does not
# have; `postfix check` right after judges what the instance needs.
"$PFBIN/post-install" config_directory="$PF" create-missing >/dev/null 2>&1 || true
postfix -c "$PF" check

start_postfix() {  # $1, $2: as write_config
    write_config "$1" "$2"
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
    in_cgroup "$CG_SRC" smtp-source -4 -s "$1" -m "$2" -f "$FROM" -t "$TO" -M "$HELO" \
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
# Lines of the maillog matching $1 so far.
maillog_count() {
    [ -f "$WORKDIR/maillog" ] || { echo 0; return; }
    grep -c -- "$1" "$WORKDIR/maillog" || [ $? = 1 ]
}
# answered SCENARIO: recipients the scenario's greylister or policy service has passed so far,
# from its log: greymilter's and postgrey's decision lines; the no-op policy service's request
# counts, printed when each connection ends (once Postfix stopped). Empty for the others.
answered() {
    local log=$WORKDIR/$1.log
    case $1 in
        greymilter | greymilter-unix) grep -c 'action=pass ' "$log" || [ $? = 1 ] ;;
        greymilter-policy) grep -c 'action=pass .*proto=policy' "$log" || [ $? = 1 ] ;;
        postgrey) grep -c 'action=pass, reason=triplet found' "$log" || [ $? = 1 ] ;;
        policy-noop) awk '$3 == "closed" && $4 == "after" { n += $5 } END { print n + 0 }' "$log" ;;
    esac
}
# Waits (up to 10 s: the no-op policy service counts when Postfix's connections close) until
# the scenario's filter has passed at least $1 recipients in all.
wait_answered() {
    for _ in $(seq 100); do
        [ "$(answered "$scenario")" -ge "$1" ] && return 0
        sleep 0.1
    done
    echo "postfix-overhead: $scenario: its filter passed $(( $(answered "$scenario") - $2 )) of $(( $1 - $2 )) recipients" >&2
    exit 1
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-17s %5s %7s %8s %9s %14s %10s %10s %10s\n' scenario round msgs seconds msg/s \
    filter_cpu_s postfix_us source_us filter_us
declare -A BEST CPU_PF CPU_SRC CPU_FILTER
for round in $(seq "$ROUNDS"); do
    for scenario in $SCENARIOS; do
        policy=""
        case $scenario in
            none) milter=""; pid="" ;;
            noop) milter="inet:127.0.0.1:$NOOP_PORT"; pid=$NOOP_PID ;;
            full) milter="inet:127.0.0.1:$FULL_PORT"; pid=$FULL_PID ;;
            floor) milter="inet:127.0.0.1:$FLOOR_PORT"; pid=$FLOOR_PID ;;
            noreply) milter="inet:127.0.0.1:$NR_PORT"; pid=$NR_PID ;;
            greymilter) milter="inet:127.0.0.1:$GM_PORT"; pid=$GM_TCP_PID ;;
            noop-unix) milter="unix:$NOOPU_SOCK"; pid=$NOOPU_PID ;;
            greymilter-unix) milter="unix:$GMU_SOCK"; pid=$GMU_PID ;;
            policy-noop) milter=""; policy=$PNOOP_PORT; pid=$PNOOP_PID ;;
            greymilter-policy) milter=""; policy=$GMP_PORT; pid=$GMP_PID ;;
            postgrey) milter=""; policy=$POSTGREY_PORT; pid=$POSTGREY_PID ;;
            *) echo "unknown scenario $scenario" >&2; exit 2 ;;
        esac
        # Counted from before the warm-up: the no-op policy service counts at connection close.
        answered_before=$(answered "$scenario")
        trouble_before=$(maillog_count 'problem talking to server')
        start_postfix "$milter" "$policy"
        source_mail 5 "$WARMUP_MSGS"          # warm-up: spawns smtpd and cleanup processes
        queue_drained
        sent_before=$(delivered)
        cpu_before=${pid:+$(filter_ns "$pid")}
        pf_before=$(cg_ns "$CG_PF") src_before=$(cg_ns "$CG_SRC")
        start=$(date +%s.%N)
        source_mail "$SESSIONS" "$MSGS"
        end=$(date +%s.%N)
        queue_drained
        wait_delivered $(( sent_before + MSGS )) "$sent_before"
        cpu=${pid:+$(awk -v a="$cpu_before" -v b="$(filter_ns "$pid")" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')}
        pf_us=$(awk -v a="$pf_before" -v b="$(cg_ns "$CG_PF")" -v m="$MSGS" 'BEGIN { printf "%.0f", (b - a) / 1000 / m }')
        src_us=$(awk -v a="$src_before" -v b="$(cg_ns "$CG_SRC")" -v m="$MSGS" 'BEGIN { printf "%.0f", (b - a) / 1000 / m }')
        filter_us=0
        if [ -n "$pid" ]; then
            filter_us=$(awk -v a="$cpu_before" -v b="$(filter_ns "$pid")" -v m="$MSGS" 'BEGIN { printf "%.1f", (b - a) / 1000 / m }')
        fi
        CPU_PF[$scenario]+="$pf_us " CPU_SRC[$scenario]+="$src_us " CPU_FILTER[$scenario]+="$filter_us "
        stop_postfix
        # Every message, warm-up included, passed the greylister or policy service: with
        # default_action=DUNNO, mail would also pass a policy service that failed.
        if [ -n "$answered_before" ]; then
            wait_answered $(( answered_before + WARMUP_MSGS + MSGS )) "$answered_before"
        fi
        trouble=$(( $(maillog_count 'problem talking to server') - trouble_before ))
        [ "$trouble" = 0 ] || { echo "postfix-overhead: $scenario: Postfix logged $trouble policy service problems" >&2; exit 1; }
        rate=$(awk -v m="$MSGS" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", m / (e - s) }')
        printf '%-17s %5s %7s %8.2f %9s %14s %10s %10s %10s\n' "$scenario" "$round" "$MSGS" \
            "$(awk -v s="$start" -v e="$end" 'BEGIN { print e - s }')" "$rate" "${cpu:--}" \
            "$pf_us" "$src_us" "$filter_us"
        if [ -z "${BEST[$scenario]:-}" ] || [ "$rate" -gt "${BEST[$scenario]}" ]; then BEST[$scenario]=$rate; fi
    done
done
echo "best of $ROUNDS:"
for scenario in $SCENARIOS; do
    ratio=""
    if [ -n "${BEST[none]:-}" ] && [ "$scenario" != none ]; then
        ratio=$(awk -v a="${BEST[$scenario]}" -v b="${BEST[none]}" 'BEGIN { printf " = %.1f %% of no filter", 100 * a / b }')
    fi
    echo "RESULT scenario=$scenario msg_s=${BEST[$scenario]}$ratio"
done
if [ -n "$CG_PF" ]; then
    echo "CPU per message, median of $ROUNDS (postfix + smtp-source + filter = total; one recipient per"
    echo "message, so filter_us is also the filter's CPU per RCPT decision or policy request):"
    declare -A TOTAL FILTER
    for scenario in $SCENARIOS; do
        pf=$(median <<<"${CPU_PF[$scenario]}") src=$(median <<<"${CPU_SRC[$scenario]}")
        fl=$(median <<<"${CPU_FILTER[$scenario]}")
        total=$(awk -v a="$pf" -v b="$src" -v c="$fl" 'BEGIN { printf "%.0f", a + b + c }')
        TOTAL[$scenario]=$total FILTER[$scenario]=$fl
        ratio=""
        if [ -n "${TOTAL[none]:-}" ] && [ "$scenario" != none ]; then
            ratio=$(awk -v a="${TOTAL[none]}" -v b="$total" 'BEGIN { printf " cpu_rate=%.1f%%", 100 * a / b }')
        fi
        echo "RESULT-CPU scenario=$scenario postfix_us=$pf source_us=$src filter_us=$fl total_us=$total$ratio"
    done
    # Issue 21's targets: greymilter-policy >= 95 % of no filter by summed CPU; greymilter's own
    # CPU per policy request <= 25 us and >= 15 times less than postgrey's.
    if [ -n "${TOTAL[greymilter-policy]:-}" ]; then
        line="RESULT-POLICY greymilter_us=${FILTER[greymilter-policy]}"
        if [ -n "${TOTAL[none]:-}" ]; then
            line+=$(awk -v a="${TOTAL[none]}" -v b="${TOTAL[greymilter-policy]}" 'BEGIN { printf " cpu_rate=%.1f%%", 100 * a / b }')
        fi
        if [ -n "${FILTER[postgrey]:-}" ]; then
            line+=" postgrey_us=${FILTER[postgrey]}"
            line+=$(awk -v g="${FILTER[greymilter-policy]}" -v p="${FILTER[postgrey]}" 'BEGIN { if (g > 0) printf " postgrey_over_greymilter=%.1f", p / g }')
        fi
        echo "$line"
    fi
fi
