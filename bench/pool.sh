#!/usr/bin/env bash
# A pool of hosts at scale: 50 hosts and 10,000 VMs on this one machine (scripts/pool-lab.sh),
# measured beside etcd itself; bench/pool_bench.py does the clients and the timing.
#
#   bash bench/pool.sh [HOSTS [VMS]]          (default 50 hosts, 10,000 VMs)
#   VINE=/path/to/vine bash bench/pool.sh     (default: the binary scripts/build.sh builds)
#
# Every host is a real vine daemon in its own network namespace; the first three also run the
# three etcd members. The VMs are real definitions, created pinned (VMS / HOSTS per host) and left
# off, so no emulator process runs for them; one guest-kit VM runs under QEMU on h2 for the
# control measurements. Measured: creates per second (pinned, in parallel; then without a host,
# placed); etcd's database size per 1,000 VMs; a pool-wide list on h1 against etcd's own range
# read of the same keys; pause/resume sent to the owner (h2) and through h1 (forwarded); the
# daemons' memory. Results: a Markdown table on stdout and in /var/tmp/vbench-results/.
#
# Needs root (network namespaces). The lab is VINE_LAB=vbench in /var/tmp/vbench on 10.247.0.0/24
# unless those are set; it is taken down at the start (left over from a failed run) and on exit.
# Knobs: WORKERS (parallel creates, 4), ROUNDS (list rounds, 30), CONTROLS (pause/resume pairs
# per side, 50), PLACED (creates without a host, 100).
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTS=${1:-50}
VMS=${2:-10000}
WORKERS=${WORKERS:-4}
ROUNDS=${ROUNDS:-30}
CONTROLS=${CONTROLS:-50}
PLACED=${PLACED:-100}
export VINE_LAB=${VINE_LAB:-vbench} VINE_LAB_DIR=${VINE_LAB_DIR:-/var/tmp/vbench} VINE_LAB_NET=${VINE_LAB_NET:-10.247.0}
RESULTS_DIR=/var/tmp/vbench-results

log() { printf 'pool.sh: %s\n' "$*" >&2; }
die() { printf 'pool.sh: error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (the lab makes network namespaces)"
[ "$HOSTS" -ge 3 ] && [ $((VMS % HOSTS)) -eq 0 ] || die "HOSTS must be at least 3 and divide VMS ($HOSTS, $VMS)"
VINE=${VINE:-$(bash scripts/build.sh)/vine}
export VINE
[ -x "$VINE" ] || die "no vine binary at $VINE"
bash scripts/guest-kit.sh >/dev/null || die "scripts/guest-kit.sh failed"
KIT=${VINE_KIT_DIR:-/var/lib/vine/kit}

lab() { bash scripts/pool-lab.sh "$@"; }
err=$(mktemp)
cleanup() {
    local rc=$?
    set +e
    rm -f "$err"
    [ $rc -eq 0 ] || log "failed (exit $rc); the daemons' logs were in $VINE_LAB_DIR/hI/daemon.log"
    lab down
}
lab down 2>/dev/null || true
trap cleanup EXIT

log "lab: $HOSTS hosts"
env_file=$(lab up "$HOSTS") || die "scripts/pool-lab.sh up $HOSTS failed"
set -a
# shellcheck disable=SC1090
source "$env_file"
set +a
sock() { local v="LAB_${1}_SOCKET"; echo "${!v}"; }
on() { local h=$1; shift; VINE_SOCKET=$(sock "$h") "$VINE" "$@"; }
in_h1() { nsenter --net="/var/run/netns/$LAB_h1_NS" "$@"; }

mkdir -p "$RESULTS_DIR"
commit=$(git rev-parse --short HEAD)
results=$RESULTS_DIR/pool-$(date -u +%Y%m%dT%H%M%S)-$commit.json
bench() { in_h1 /usr/bin/python3 bench/pool_bench.py "$results" "$@"; }

log "pool: h1 makes it, $((HOSTS - 1)) hosts join"
on h1 cluster init --etcd "$LAB_ETCD" --name h1 >/dev/null || die "vine cluster init on h1 failed"
for i in $(seq 2 "$HOSTS"); do
    token=$(on h1 cluster token "h$i" 2>"$err") || die "vine cluster token h$i on h1 failed: $(cat "$err")"
    on "h$i" cluster join "$token" >/dev/null || die "vine cluster join on h$i failed"
    [ $((i % 10)) -ne 0 ] || log "  $i hosts in the pool"
done
online=$(on h1 host list --json | /usr/bin/python3 -c 'import json,sys; print(sum(h["state"] == "online" for h in json.load(sys.stdin)))')
[ "$online" -eq "$HOSTS" ] || die "vine host list on h1: $online hosts online, expected $HOSTS"
log "pool: $online hosts online"

bench set "$(printf '{"date": "%s", "commit": "%s", "vine": "%s", "hosts": %d}' \
    "$(date -u +%Y-%m-%d)" "$commit" "$("$VINE" --version)" "$HOSTS")"
bench etcd empty
log "creating $VMS VMs ($((VMS / HOSTS)) per host, pinned, $WORKERS in parallel)"
bench create "$HOSTS" "$VMS" "$WORKERS" "$KIT/vmlinuz"
bench etcd vms

log "booting one guest-kit VM (g1) on h2"
on h2 vm create g1 --memory 128 --kernel "$KIT/vmlinuz" --initrd "$KIT/initrd.img" \
    --append "$(sed -n 's/^  "cmdline": "\(.*\)"$/\1/p' "$KIT/kit.json")" --host h2 >/dev/null
on h2 vm start g1 >/dev/null || die "vine vm start g1 on h2 failed"
for _ in $(seq 120); do
    curl -sf --unix-socket "$(sock h2)" http://localhost/api/vms/g1/console | grep -q VINE-BOOT-OK && break
    sleep 1
done
curl -sf --unix-socket "$(sock h2)" http://localhost/api/vms/g1/console | grep -q VINE-BOOT-OK ||
    die "g1 on h2 did not print VINE-BOOT-OK within 120 s"
sleep 3 # h2 publishes g1's view; the guest settles

log "pool-wide list on h1 against etcd's range read ($ROUNDS rounds)"
bench list "$ROUNDS"
log "pause/resume of g1: to h2 (its owner) and through h1 ($CONTROLS rounds)"
bench control g1 "$CONTROLS"
log "creates without a host, placed ($PLACED, through h1)"
bench placed "$PLACED" "$KIT/vmlinuz"

# CPU time (clock ticks) of the daemons and of etcd's members: at rest, the pool's own work
# (liveness leases, each host republishing what changed of its VMs every 2 s).
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cpu_of() {
    local f t=0
    for f in "$@"; do t=$((t + $(ticks "$(cat "$f")"))); done
    echo "$t"
}
sleep 5
d0=$(cpu_of "$LAB_DIR"/h*/daemon.pid) e0=$(cpu_of "$LAB_DIR"/h[123]/etcd.pid)
sleep 20
d1=$(cpu_of "$LAB_DIR"/h*/daemon.pid) e1=$(cpu_of "$LAB_DIR"/h[123]/etcd.pid)
hz=$(getconf CLK_TCK)
bench set "$(awk -v d=$((d1 - d0)) -v e=$((e1 - e0)) -v hz="$hz" \
    'BEGIN { printf "{\"rest\": {\"seconds\": 20, \"daemons_cpu\": %.3f, \"etcd_cpu\": %.3f}}", d / hz / 20, e / hz / 20 }')"

rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
daemons=0
for i in $(seq "$HOSTS"); do daemons=$((daemons + $(rss "$(cat "$LAB_DIR/h$i/daemon.pid")"))); done
etcds=0
for i in 1 2 3; do etcds=$((etcds + $(rss "$(cat "$LAB_DIR/h$i/etcd.pid")"))); done
h1=$(rss "$(cat "$LAB_DIR/h1/daemon.pid")")
bench set "$(printf '{"memory": {"daemons_mb": %s, "etcd_mb": %s, "h1_mb": %s}}' \
    "$((daemons / 1024))" "$((etcds / 1024))" "$((h1 / 1024))")"

bench report | tee "${results%.json}.md"
log "results: ${results%.json}.md (figures: $results)"
