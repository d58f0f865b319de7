# Shared by the benchmark scripts: `source benches/lib.sh; bench_init NAME`.
# NAME names the default output directory and prefixes error messages.

# Sets OUT (default a new /var/tmp/gm-NAME.XXXXXX), an empty $OUT/results.txt as RESULTS, and
# PIDS, whose processes are killed when the script exits.
bench_init() {
    BENCH=$1
    OUT=${OUT:-$(mktemp -d "/var/tmp/gm-$BENCH.XXXXXX")}
    mkdir -p "$OUT"
    RESULTS=$OUT/results.txt
    : >"$RESULTS"
    PIDS=()
    trap bench_cleanup EXIT
}

# At exit, after success or failure: processes may have ended already, and their exit
# statuses are not what the run is judged by (hence `|| true`).
bench_cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}

# A free TCP port on 127.0.0.1.
port() { perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0)->sockport'; }
# The value of KEY in a `RESULT key=value …` line: field LINE KEY.
field() { sed -n "s/^RESULT.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
# Polls FILE for a line matching REGEX (default 10 s) and prints the first match.
wait_line() {  # FILE REGEX [SECONDS]
    for _ in $(seq $(( ${3:-10} * 10 ))); do
        grep -m1 -E "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$BENCH: no '$2' in $1" >&2; tail -5 "$1" >&2; exit 1
}

# Waits until something listens on SPEC (inet:PORT@HOST, inet:HOST:PORT, a bare PORT on
# 127.0.0.1, or unix:PATH), at most SECONDS (default 10); exits otherwise.
wait_listening() {  # SPEC [SECONDS]
    local spec=$1 port_hex p
    for _ in $(seq $(( ${2:-10} * 10 ))); do
        case $spec in
            unix:*) [ -S "${spec#unix:}" ] && return 0 ;;
            *)
                p=${spec#inet:}; p=${p%@*}; p=${p##*:}
                port_hex=$(printf '%04X' "$p")
                grep -q ":$port_hex 00000000:0000 0A " /proc/net/tcp && return 0 ;;
        esac
        sleep 0.1
    done
    echo "${BENCH:-bench}: nothing listens on $spec after ${2:-10} s" >&2; exit 1
}

# Ends a process we started and reaps it. Its exit status is not judged here (a daemon ended
# by SIGTERM, or one that already exited), hence `|| true`.
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# The median of the numbers on stdin (whitespace-separated): the middle one, or the mean of the
# two middle ones; "-" when there are none.
median() {
    tr -s ' \t' '\n\n' | sort -n \
        | awk 'NF { v[++n] = $1 } END { if (n == 0) print "-"; else if (n % 2) print v[(n + 1) / 2]; else print (v[n / 2] + v[n / 2 + 1]) / 2 }'
}

# Starts greymilter (as $BIN/greymilter, behind $PRIO) listening on SPEC with CONFIG written to
# $OUT/NAME.toml and its log appended to $OUT/NAME.log; returns once it answers a probe query
# (the socket listens before a state file is restored, the first answer comes after). Sets
# GM_PID (also added to PIDS) and GM_SPEC.
start_greymilter() {  # NAME SPEC CONFIG
    local name=$1 status=0
    GM_SPEC=$2
    printf '%s\n' "$3" >"$OUT/$name.toml"
    # shellcheck disable=SC2086
    ${PRIO:-} "$BIN/greymilter" --config "$OUT/$name.toml" 2>>"$OUT/$name.log" </dev/null &
    GM_PID=$!
    PIDS+=("$GM_PID")
    wait_listening "$GM_SPEC" 120
    # Any verdict will do (0 pass, 4 tempfail, 5 reject); 2 is "not reachable".
    "$BIN/greymilter" query --socket "$GM_SPEC" --client 192.0.2.1 --from probe@bench.test \
        --to probe@example.test --timeout 600s >/dev/null || status=$?
    case $status in
        0 | 4 | 5) ;;
        *) echo "${BENCH:-bench}: $name did not answer a probe (status $status)" >&2; tail -5 "$OUT/$name.log" >&2; exit 1 ;;
    esac
}
