#!/bin/bash
# Loop lag of a running daemon with 100,000 CIDR + 10,000 name list lines
# (issue 24): starts BIN on loopback in a temp dir; gives N runtime
# allowances and forgets them (`greymilter allow/forget --network`,
# `--sender-domain`, through the control socket), then sends N SIGHUPs
# 300 ms apart; prints Loop-Lag-Max (the worst lateness of the daemon's
# 10 ms ticker since start, read with SIGUSR1) idle, after the allowances
# and after the reloads.
#   benches/reload-lag.sh [BIN] [N]   (default target/release/greymilter, 20)
set -eu
BIN=$(realpath "${1:-target/release/greymilter}"); N=${2:-20}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
# The shape of examples/list_scale's large case.
python3 - "$W/clients" <<'PY'
import ipaddress, random, sys
r = random.Random(7); out = []
for i in range(100000):
    if i % 10 == 9:
        p = 32 + r.randrange(33)
        bits = (0x20010db8 << 96) | (r.getrandbits(32) << 64)
        out.append(f"{ipaddress.IPv6Address(bits & ((2**128 - 1) << (128 - p)) & (2**128 - 1))}/{p}")
    else:
        p = 16 + r.randrange(17)
        a = (0x40000000 | r.getrandbits(30)) & ((0xffffffff << (32 - p)) & 0xffffffff)
        out.append(f"{ipaddress.IPv4Address(a)}/{p}")
out += [("." if i % 2 == 0 else "") + f"mta{i}.sender{i % 997}.example" for i in range(10000)]
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY
cat > "$W/greymilter.toml" <<TOML
[milter]
listen = "inet:0@127.0.0.1"
[stats]
file = "$W/stats"
[control]
socket = "$W/control.sock"
[lists.files]
accept_clients = ["$W/clients"]
TOML
"$BIN" --config "$W/greymilter.toml" >"$W/log" 2>&1 & P=$!
sleep 1.5; kill -USR1 $P; sleep 0.5
echo "idle: $(grep 'Loop-Lag-Max' "$W/stats")"
C=(--socket "$W/control.sock")
for i in $(seq "$N"); do
    "$BIN" allow --network "10.$i.0.0/16" --for 1h "${C[@]}" >/dev/null
    "$BIN" allow --sender-domain "partner$i.example" --for 1h "${C[@]}" >/dev/null
    sleep 0.1
done
for i in $(seq "$N"); do
    "$BIN" forget --network "10.$i.0.0/16" "${C[@]}" >/dev/null
    "$BIN" forget --sender-domain "partner$i.example" "${C[@]}" >/dev/null
done
kill -USR1 $P; sleep 0.5
echo "after $N allowances given and forgotten: $(grep 'Loop-Lag-Max' "$W/stats")"
for _ in $(seq "$N"); do kill -HUP $P; sleep 0.3; done
kill -USR1 $P; sleep 0.5
echo "after $N reloads ($(grep -c 'configuration reloaded' "$W/log") logged): $(grep 'Loop-Lag-Max' "$W/stats")"
kill -TERM $P; wait $P || true
