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
