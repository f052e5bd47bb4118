#!/usr/bin/env bash
# A pool of simulated hosts on this one machine, for the pool's tests, scripts/pool-demo.sh and
# bench/pool.sh. Each host is a network namespace with its own vine daemon (data directory,
# socket, HTTPS address, cgroup parent); the hosts share one LAN, a bridge inside a switch
# namespace of the lab's own, so the lab's private addresses exist only inside namespaces it made
# and nothing of it is routed anywhere else. The first three hosts (or all, if fewer) also run
# the members of one etcd cluster (Debian's etcd-server).
#
#   bash scripts/pool-lab.sh up N       N hosts h1 … hN; prints the lab's environment file
#   bash scripts/pool-lab.sh down       stops and removes everything the lab made
#   bash scripts/pool-lab.sh status     what is running
#   bash scripts/pool-lab.sh daemon hI  starts hI's daemon again (after a test killed it); prints its pid
#   bash scripts/pool-lab.sh etcd hI    starts hI's etcd member again (after a test killed it)
#   bash scripts/pool-lab.sh cut hI     takes hI off the lab's LAN (its cable pulled: the
#                                       switch's port goes down); `plug hI` puts it back
#
# Environment: VINE (the vine binary; default: scripts/build.sh's), VINE_LAB (name prefix of
# the namespaces and cgroups; default vinelab), VINE_LAB_DIR (default /var/tmp/$VINE_LAB),
# VINE_LAB_NET (the LAN's first three octets; default 10.240.0), VINE_LAB_DAEMONS=0 (etcd and
# the network only), VINE_LAB_TLS=1 (etcd serves clients over TLS only and requires client
# certificates: a CA, a server certificate per member and one client certificate are made with
# openssl in $VINE_LAB_DIR/tls, and LAB_ETCD_CA, LAB_ETCD_CERT, LAB_ETCD_KEY name them),
# VINE_LAB_DAEMON_ARGS (more arguments of every `vine daemon`, e.g. --sample-interval 2). A
# daemon is started inside its namespace with `nsenter --net` (not `ip netns exec`, which would
# remount /sys and hide the cgroup v1 hierarchy).
#
# The environment file (`$VINE_LAB_DIR/lab.env`, shell syntax) names, for each host hI:
# LAB_hI_NS (namespace), LAB_hI_IP, LAB_hI_SOCKET (its daemon's socket), LAB_hI_URL (its HTTPS
# API), LAB_hI_DATA; and LAB_HOSTS (the names), LAB_ETCD (the etcd client URLs, comma-separated)
# and LAB_VINE (the binary the daemons run). Each host's daemon.pid, daemon.log, etcd.pid and
# etcd.log are in $VINE_LAB_DIR/hI/.
set -euo pipefail
cd "$(dirname "$0")/.."
P=${VINE_LAB:-vinelab}
LAB=${VINE_LAB_DIR:-/var/tmp/$P}
NET=${VINE_LAB_NET:-10.240.0}
SW=$P-sw

log() { printf 'pool-lab: %s\n' "$*" >&2; }
die() { printf 'pool-lab: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (it makes network namespaces)"

ns_exec() { local ns=$1; shift; nsenter --net="/var/run/netns/$ns" "$@"; }
# Starts a program in a host's namespace in the background and records its pid. nsenter execs
# the program (it forks only to enter a PID namespace) and is itself started directly, not
# through a shell function (which `&` would run in a subshell), so the pid is the program's.
start_in() {
    local ns=$1 pidfile=$2 log=$3; shift 3
    nsenter --net="/var/run/netns/$ns" "$@" >>"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
}

# Processes the lab started (pid files), then any process still running from the lab's
# directory or in its cgroups (QEMU, disk servers, console loggers and DHCP servers outlive their
# daemon by design).
stop_all() {
    local f pid pids c
    for f in "$LAB"/*/daemon.pid "$LAB"/*/etcd.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null || true
    done
    sleep 0.5
    for f in "$LAB"/*/daemon.pid "$LAB"/*/etcd.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$f"
    done
    pids=$(pgrep -f -- "$LAB/" || true)
    [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
    for c in /sys/fs/cgroup/*/"$P"-h* /sys/fs/cgroup/"$P"-h*; do
        [ -d "$c" ] || continue
        find "$c" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    done
    sleep 0.2
    for c in /sys/fs/cgroup/*/"$P"-h* /sys/fs/cgroup/"$P"-h*; do
        [ -d "$c" ] || continue
        find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
}

down() {
    stop_all
    local ns
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^$P-(h[0-9]+|sw)$" || true); do
        ip netns delete "$ns" 2>/dev/null || true
    done
    rm -rf "$LAB"
    log "down: $P removed"
}

# start_daemon I VINE: host hI's daemon, in its namespace (its log appended to).
start_daemon() {
    local i=$1 vine=$2
    # VINE_LAB_DAEMON_ARGS: extra arguments of every daemon (words split on spaces).
    # shellcheck disable=SC2086
    start_in "$P-h$i" "$LAB/h$i/daemon.pid" "$LAB/h$i/daemon.log" "$vine" -v daemon \
        --data-dir "$LAB/h$i/data" --socket "$LAB/h$i/vine.sock" --cgroup-parent "$P-h$i" \
        --listen "$NET.$((10 + i)):8443" ${VINE_LAB_DAEMON_ARGS:-}
}

# daemon hI: starts host hI's daemon again (after a test stopped or killed it) and waits for it.
restart_daemon() {
    local h=${1:-} i
    [[ "$h" =~ ^h([0-9]+)$ ]] || die "daemon hI: expected a host name like h2, got '$h'"
    i=${BASH_REMATCH[1]}
    [ -f "$LAB/lab.env" ] || die "no lab named $P is up"
    # shellcheck disable=SC1091
    source "$LAB/lab.env"
    [ -d "$LAB/h$i" ] || die "the lab has no host $h"
    local old
    old=$(cat "$LAB/h$i/daemon.pid" 2>/dev/null || true)
    if [ -n "$old" ] && kill -0 "$old" 2>/dev/null; then die "the daemon of $h runs (pid $old)"; fi
    rm -f "$LAB/h$i/vine.sock"
    start_daemon "$i" "$LAB_VINE"
    for _ in $(seq 150); do [ -S "$LAB/h$i/vine.sock" ] && break; sleep 0.1; done
    [ -S "$LAB/h$i/vine.sock" ] || { tail -n 20 "$LAB/h$i/daemon.log" >&2; die "the daemon of $h did not start"; }
    cat "$LAB/h$i/daemon.pid"
}

# start_etcd I: host hI's etcd member (a restarted member finds its data directory and rejoins).
start_etcd() {
    local i=$1 ip=$NET.$((10 + $1)) scheme=http tls=()
    if [ -d "$LAB/tls" ]; then
        scheme=https
        tls=(--cert-file "$LAB/tls/h$i.pem" --key-file "$LAB/tls/h$i-key.pem" --client-cert-auth
            --trusted-ca-file "$LAB/tls/ca.pem")
    fi
    start_in "$P-h$i" "$LAB/h$i/etcd.pid" "$LAB/h$i/etcd.log" etcd --name "h$i" --data-dir "$LAB/h$i/etcd" \
        --listen-client-urls "$scheme://$ip:2379" --advertise-client-urls "$scheme://$ip:2379" \
        --listen-peer-urls "http://$ip:2380" --initial-advertise-peer-urls "http://$ip:2380" \
        --initial-cluster "$(cat "$LAB/etcd-cluster")" --initial-cluster-token "$P" --initial-cluster-state new \
        --heartbeat-interval 100 --election-timeout 1000 "${tls[@]}"
}

# make_tls N: a CA, a server certificate for each of the first N hosts' addresses, one client
# certificate (openssl; RSA 2048, valid for a week: a lab's lifetime).
make_tls() {
    local n=$1 i d=$LAB/tls
    mkdir -p "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=$P etcd CA" \
        -keyout "$d/ca-key.pem" -out "$d/ca.pem" 2>/dev/null
    for i in $(seq "$n"); do
        openssl req -newkey rsa:2048 -nodes -subj "/CN=h$i" -keyout "$d/h$i-key.pem" -out "$d/h$i.csr" 2>/dev/null
        printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$NET.$((10 + i))" >"$d/h$i.ext"
        openssl x509 -req -in "$d/h$i.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" -CAcreateserial -days 7 \
            -extfile "$d/h$i.ext" -out "$d/h$i.pem" 2>/dev/null
    done
    openssl req -newkey rsa:2048 -nodes -subj "/CN=vine" -keyout "$d/client-key.pem" -out "$d/client.csr" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >"$d/client.ext"
    openssl x509 -req -in "$d/client.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" -CAcreateserial -days 7 \
        -extfile "$d/client.ext" -out "$d/client.pem" 2>/dev/null
    chmod 0600 "$d"/*-key.pem
}

# etcdctl as a client of the lab's etcd (with the client certificate under TLS).
lab_etcdctl() {
    if [ -d "$LAB/tls" ]; then
        ns_exec "$P-h1" etcdctl --cacert "$LAB/tls/ca.pem" --cert "$LAB/tls/client.pem" \
            --key "$LAB/tls/client-key.pem" "$@"
    else
        ns_exec "$P-h1" etcdctl "$@"
    fi
}

# host_index hI: I, after checking the lab is up and has that host.
host_index() {
    local h=${1:-}
    [[ "$h" =~ ^h([0-9]+)$ ]] || die "expected a host name like h2, got '$h'"
    [ -f "$LAB/lab.env" ] || die "no lab named $P is up"
    [ -d "$LAB/${h}" ] || die "the lab has no host $h"
    echo "${BASH_REMATCH[1]}"
}

# etcd hI: starts host hI's etcd member again.
restart_etcd() {
    local i old
    i=$(host_index "${1:-}")
    [ -d "$LAB/h$i/etcd" ] || die "host h$i runs no etcd member"
    old=$(cat "$LAB/h$i/etcd.pid" 2>/dev/null || true)
    if [ -n "$old" ] && kill -0 "$old" 2>/dev/null; then die "the etcd member of h$i runs (pid $old)"; fi
    start_etcd "$i"
    cat "$LAB/h$i/etcd.pid"
}

# cut hI / plug hI: the switch's port of host hI down or up.
port() {
    local i
    i=$(host_index "${2:-}")
    ns_exec "$SW" ip link set "$P-h$i" "$1"
}

up() {
    local n=$1 i ns ip members=() urls=() cluster=""
    [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "up N: N must be 1 to 200, got '$n'"
    if ip netns list | grep -qE "^$SW( |$)"; then
        die "a lab named $P is up already (bash scripts/pool-lab.sh down, or VINE_LAB=another)"
    fi
    command -v etcd >/dev/null || die "etcd not found (scripts/setup.sh installs etcd-server)"
    local with_daemons=${VINE_LAB_DAEMONS:-1}
    local vine=${VINE:-}
    if [ "$with_daemons" != 0 ] && [ -z "$vine" ]; then
        vine=$(bash scripts/build.sh)/vine
    fi
    rm -rf "$LAB"
    mkdir -p "$LAB"
    chmod 0755 "$LAB" # the emulator user reaches the VMs' directories through it

    ip netns add "$SW"
    ns_exec "$SW" ip link set lo up
    ns_exec "$SW" ip link add br0 type bridge
    ns_exec "$SW" ip link set br0 up
    local nmembers=$((n < 3 ? n : 3))
    for i in $(seq "$n"); do
        ns=$P-h$i
        ip=$NET.$((10 + i))
        ip netns add "$ns"
        ns_exec "$ns" ip link set lo up
        ip link add "$P-h$i" netns "$SW" type veth peer name eth0 netns "$ns"
        ns_exec "$SW" ip link set "$P-h$i" master br0 up
        ns_exec "$ns" ip addr add "$ip/24" dev eth0
        ns_exec "$ns" ip link set eth0 up
        mkdir -p "$LAB/h$i"
        if [ "$i" -le "$nmembers" ]; then
            members+=("h$i=http://$ip:2380")
            if [ "${VINE_LAB_TLS:-0}" = 1 ]; then urls+=("https://$ip:2379"); else urls+=("http://$ip:2379"); fi
        fi
    done
    cluster=$(IFS=,; echo "${members[*]}")

    echo "$cluster" >"$LAB/etcd-cluster"
    if [ "${VINE_LAB_TLS:-0}" = 1 ]; then
        command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
        make_tls "$nmembers"
    fi
    for i in $(seq "$nmembers"); do
        start_etcd "$i"
    done
    local etcd
    etcd=$(IFS=,; echo "${urls[*]}")
    for _ in $(seq 100); do
        lab_etcdctl --endpoints "$etcd" endpoint health >/dev/null 2>&1 && break
        sleep 0.2
    done
    lab_etcdctl --endpoints "$etcd" endpoint health >/dev/null 2>&1 ||
        { tail -n 20 "$LAB/h1/etcd.log" >&2; die "etcd did not become healthy"; }
    log "etcd: ${#urls[@]} members healthy ($etcd)"

    {
        echo "LAB_NAME=$P"
        echo "LAB_DIR=$LAB"
        echo "LAB_ETCD=$etcd"
        echo "LAB_VINE=$vine"
        if [ -d "$LAB/tls" ]; then
            echo "LAB_ETCD_CA=$LAB/tls/ca.pem"
            echo "LAB_ETCD_CERT=$LAB/tls/client.pem"
            echo "LAB_ETCD_KEY=$LAB/tls/client-key.pem"
        fi
        echo "LAB_HOSTS=\"$(for i in $(seq "$n"); do printf 'h%s ' "$i"; done | sed 's/ $//')\""
        for i in $(seq "$n"); do
            echo "LAB_h${i}_NS=$P-h$i"
            echo "LAB_h${i}_IP=$NET.$((10 + i))"
            echo "LAB_h${i}_SOCKET=$LAB/h$i/vine.sock"
            echo "LAB_h${i}_URL=https://$NET.$((10 + i)):8443"
            echo "LAB_h${i}_DATA=$LAB/h$i/data"
        done
    } >"$LAB/lab.env"

    if [ "$with_daemons" != 0 ]; then
        for i in $(seq "$n"); do
            start_daemon "$i" "$vine"
        done
        for i in $(seq "$n"); do
            for _ in $(seq 150); do [ -S "$LAB/h$i/vine.sock" ] && break; sleep 0.1; done
            [ -S "$LAB/h$i/vine.sock" ] || { tail -n 20 "$LAB/h$i/daemon.log" >&2; die "the daemon of h$i did not start"; }
        done
        log "$n daemons up"
    fi
    echo "$LAB/lab.env"
}

status() {
    [ -f "$LAB/lab.env" ] || { echo "no lab named $P"; return 0; }
    cat "$LAB/lab.env"
    local f
    for f in "$LAB"/*/daemon.pid "$LAB"/*/etcd.pid; do
        [ -f "$f" ] || continue
        if kill -0 "$(cat "$f")" 2>/dev/null; then echo "running: ${f#"$LAB"/}"; else echo "gone: ${f#"$LAB"/}"; fi
    done
}

case "${1:-}" in
    up) up "${2:-3}" ;;
    down) down ;;
    status) status ;;
    daemon) restart_daemon "${2:-}" ;;
    etcd) restart_etcd "${2:-}" ;;
    cut) port down "${2:-}" ;;
    plug) port up "${2:-}" ;;
    *) die "usage: pool-lab.sh up N | down | status | daemon hI | etcd hI | cut hI | plug hI" ;;
esac
