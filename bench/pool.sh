#!/usr/bin/env bash
# A pool of hosts at scale: 50 hosts and 10,000 VMs on this one machine (scripts/pool-lab.sh),
# measured beside etcd itself; bench/pool_bench.py does the clients and the timing.
#
#   bash bench/pool.sh [HOSTS [VMS]]          (default 50 hosts, 10,000 VMs)
#   VINE=/path/to/vine bash bench/pool.sh     (default: the binary scripts/build.sh builds)
#
# Every host is a real vine daemon in its own network namespace; the first three also run the
# three etcd members. The VMs are real definitions, created pinned (an equal share per host) and
# left off, so no emulator process runs for them; one guest-kit VM (g1) runs under QEMU on h2 for
# the control measurements. The VMs are created in steps of STEP, and after each step (and with
# none) everything is measured: etcd's database size; the daemons' and etcd's CPU at rest, hosts
# online, memory; a pool-wide list on h1 against etcd's own range read of the same keys;
# pause/resume sent to the owner (h2) and through h1 (forwarded). The run stops at the step where
# creates fail or a host drops offline, and says so. After the last step: creates without a host
# (placement). Results: Markdown tables on stdout and in /var/tmp/vbench-results/.
#
# Needs root (network namespaces). The lab is VINE_LAB=vbench in /var/tmp/vbench on 10.247.0.0/24
# unless those are set; it is taken down at the start (left over from a failed run) and on exit.
# Knobs: STEP (VMs a step, 2000), WORKERS (parallel creates, 4), ROUNDS (list rounds a step, 20),
# CONTROLS (pause/resume pairs a side and step, 30), PLACED (creates without a host, 100).
#
#   HOLLOW=1 bash bench/pool.sh [HOSTS [VMS]]
#
# measures with hollow VMs instead: VMS records of an off VM written straight into etcd (owner
# key and published record, as an owner writes them) that no daemon has, so the pool-wide list
# reads VMS records without VMS VM actors on this machine (each actor is a thread that wakes
# every 100 ms, off or not: 10,000 of them take both cores of this machine).
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTS=${1:-50}
VMS=${2:-10000}
WORKERS=${WORKERS:-4}
ROUNDS=${ROUNDS:-20}
CONTROLS=${CONTROLS:-30}
STEP=${STEP:-2000}
PLACED=${PLACED:-100}
HOLLOW=${HOLLOW:-0}
export VINE_LAB=${VINE_LAB:-vbench} VINE_LAB_DIR=${VINE_LAB_DIR:-/var/tmp/vbench} VINE_LAB_NET=${VINE_LAB_NET:-10.247.0}
RESULTS_DIR=/var/tmp/vbench-results

# shellcheck source=bench/lib.sh
source bench/lib.sh
log() { bench_log "$@"; }
die() { bench_die "$@"; }
BENCH_TAG=pool.sh
[ "$HOSTS" -ge 3 ] && [ $((STEP % HOSTS)) -eq 0 ] && [ $((VMS % STEP)) -eq 0 ] ||
    die "HOSTS must be at least 3 and divide STEP, which must divide VMS ($HOSTS, $STEP, $VMS)"
lab_bench pool.sh
lab() { bash scripts/pool-lab.sh "$@"; }
err=$(mktemp)
bench_cleanup() { rm -f "$err"; }

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

# measure N: everything measured with N VMs created (h1 lists N + 1 with g1). Returns non-zero
# (and says why in $broke) if a host went offline or a measurement failed.
broke=""
measure() {
    local n=$1 failed=()
    log "measuring with $n VMs"
    bench etcd "$n" || failed+=("reading etcd's size")
    bench rest "$n" "$HOSTS" 10 || failed+=("not every host was online")
    bench list "$n" "$ROUNDS" || failed+=("the list failed")
    bench control "$n" g1 "$CONTROLS" || failed+=("the controls failed")
    [ ${#failed[@]} -eq 0 ] || { broke="with $n VMs: $(IFS=';'; echo "${failed[*]}" | sed 's/;/; /g')"; return 1; }
}
measure 0 || die "$broke (with no VM at all)"
reached=0
if [ "$HOLLOW" = 1 ]; then
    log "writing $VMS hollow VMs straight into etcd (records of an off VM, no daemon has them)"
    on h1 vm create template --memory 64 --kernel "$KIT/vmlinuz" --host h1 >/dev/null
    sleep 3 # h1 publishes its full record, the hollow VMs' template
    bench hollow "$VMS" "$HOSTS" template
    reached=$VMS
    measure "$VMS" || true
else
    for ((n = STEP; n <= VMS; n += STEP)); do
        log "creating VMs $reached..$((n - 1)) ($((STEP / HOSTS)) more per host, pinned, $WORKERS in parallel)"
        if ! bench create "$HOSTS" "$reached" "$n" "$WORKERS" "$KIT/vmlinuz"; then
            broke="a create failed between $reached and $n VMs"
            break
        fi
        reached=$n
        measure "$n" || break
    done
fi
if [ -z "$broke" ]; then
    log "creates without a host, placed ($PLACED, through h1)"
    bench placed "$PLACED" "$KIT/vmlinuz" || broke="placed creates failed"
fi
bench set "$(printf '{"reached": %d, "stopped": "%s"}' "$reached" "${broke:+Stopped: $broke.}")"
bench report | tee "${results%.json}.md"
log "results: ${results%.json}.md (figures: $results)"
