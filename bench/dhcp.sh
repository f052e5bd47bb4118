#!/usr/bin/env bash
# DHCP leases per second: vine's DHCP server against dnsmasq, on the same bridge, driven by the
# same load generator (crates/dhcp/examples/dhcp_load.rs: CLIENTS simulated clients doing
# DISCOVER/OFFER/REQUEST/ACK, WINDOW in flight, from a network namespace on the bridge), each
# server ROUNDS times alternately, in one run. Prints every round and the medians; run as root.
#
#   bench/dhcp.sh                      (CLIENTS=2000 WINDOW=64 ROUNDS=3)
#
# Both servers start with an empty lease file each round, answer with broadcasts (the clients
# set the broadcast flag), and write their lease file; vine syncs its journal (fdatasync) before
# the replies of each batch leave. dnsmasq runs with --no-ping (vine does no ping check either)
# and --dhcp-authoritative. A third row runs dnsmasq with --leasefile-ro (no lease file at all: not
# durable, a reference for its protocol path alone). Only the bridge, namespace and veth this script creates are used.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-2000}
WINDOW=${WINDOW:-64}
ROUNDS=${ROUNDS:-3}
command -v dnsmasq >/dev/null || { echo "dhcp.sh: dnsmasq is not installed (dnsmasq-base, scripts/setup.sh)" >&2; exit 1; }

VINE=$(bash scripts/build.sh)/vine
LOAD=$(bash scripts/build.sh -p dhcp --example dhcp_load)/examples/dhcp_load

ID=$$
BR=vbbench$((ID % 100000))
NS=vinebench-$ID
VH=vbh$((ID % 100000))
VN=vbn$((ID % 100000))
TMP=$(mktemp -d /tmp/vine-dhcp-bench.XXXXXX)
SERVER_PID=

cleanup() {
    [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true
    ip link del "$VH" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    ip link del "$BR" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

ip link add "$BR" type bridge
ip addr add 10.250.0.1/16 dev "$BR"
ip link set "$BR" up
ip netns add "$NS"
ip link add "$VH" type veth peer name "$VN"
ip link set "$VN" netns "$NS"
ip link set "$VH" master "$BR" up
ip -n "$NS" link set lo up
ip -n "$NS" link set "$VN" up

cat >"$TMP/vine.json" <<EOF
{ "server": "10.250.0.1", "network": "10.250.0.0", "prefix": 16,
  "range_start": "10.250.1.0", "range_end": "10.250.120.255",
  "router": "10.250.0.1", "dns": ["10.250.0.1"], "lease_s": 3600 }
EOF

wait_port67() { # until a socket listens on UDP 67 (the server is ready)
    for _ in $(seq 1 200); do
        if ss -Hlnup 'sport = :67' | grep -q "pid=$SERVER_PID,"; then return 0; fi
        sleep 0.05
    done
    echo "dhcp.sh: the server did not bind port 67" >&2
    return 1
}

run_vine() {
    rm -f "$TMP/vine.leases"
    "$VINE" network dhcp-serve --interface "$BR" --config "$TMP/vine.json" --leases "$TMP/vine.leases" \
        >"$TMP/vine.log" 2>&1 &
    SERVER_PID=$!
    wait_port67
    ip netns exec "$NS" "$LOAD" "$VN" "$CLIENTS" "$WINDOW"
    kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
}

run_dnsmasq() { # [--leasefile-ro]: the reference without a lease file
    rm -f "$TMP/dnsmasq.leases"
    local leasefile=(--dhcp-leasefile="$TMP/dnsmasq.leases")
    [ "${1:-}" != --leasefile-ro ] || leasefile=(--leasefile-ro)
    dnsmasq --keep-in-foreground --port=0 --interface="$BR" --bind-interfaces --except-interface=lo \
        --dhcp-range=10.250.1.0,10.250.120.255,255.255.0.0,1h --dhcp-option=option:router,10.250.0.1 \
        --dhcp-option=option:dns-server,10.250.0.1 "${leasefile[@]}" \
        --dhcp-authoritative --no-ping --dhcp-lease-max=1000000 --log-facility="$TMP/dnsmasq.log" \
        --pid-file= --conf-file=/dev/null &
    SERVER_PID=$!
    wait_port67
    ip netns exec "$NS" "$LOAD" "$VN" "$CLIENTS" "$WINDOW"
    kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
}

echo "clients=$CLIENTS window=$WINDOW rounds=$ROUNDS commit=$(git rev-parse --short HEAD) $(date -u +%FT%TZ)"
echo "dnsmasq: $(dnsmasq --version | head -n1)"
: >"$TMP/results"
for r in $(seq 1 "$ROUNDS"); do
    v=$(run_vine); echo "round $r vine    $v"; echo "vine $v" >>"$TMP/results"
    d=$(run_dnsmasq); echo "round $r dnsmasq $d"; echo "dnsmasq $d" >>"$TMP/results"
    n=$(run_dnsmasq --leasefile-ro); echo "round $r dnsmasq-no-leasefile $n"
    echo "dnsmasq-ro $n" >>"$TMP/results"
done
python3 - "$TMP/results" <<'PY'
import json, statistics, sys
rates = {"vine": [], "dnsmasq": [], "dnsmasq-ro": []}
for line in open(sys.argv[1]):
    who, js = line.split(" ", 1)
    r = json.loads(js)
    if r["leases"] != r["clients"]:
        print(f"{who}: only {r['leases']} of {r['clients']} clients got a lease")
    rates[who].append(r["leases_per_s"])
v, d = statistics.median(rates["vine"]), statistics.median(rates["dnsmasq"])
ro = statistics.median(rates["dnsmasq-ro"])
print(f"median leases/s: vine {v:.0f}, dnsmasq {d:.0f}, vine/dnsmasq = {v / d:.2f}")
print(f"reference: dnsmasq without a lease file (--leasefile-ro, nothing persisted) {ro:.0f}, vine/that = {v / ro:.2f}")
PY
