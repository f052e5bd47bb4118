#!/usr/bin/env bash
# Energy and SLA of a live mini-pool under a load schedule, the pool's policy off against on
# (three simulated hosts, scripts/pool-lab.sh); bench/pool_policy_bench.py runs the schedule and
# does the figures (its docstring says how each is measured).
#
#   bash bench/pool-policy.sh                      (120 s of low load, then 120 s of high load)
#   LOW_S=60 HIGH_S=60 bash bench/pool-policy.sh   (a shorter schedule)
#   VINE=/path/to/vine bash bench/pool-policy.sh   (default: the binary scripts/build.sh builds)
#
# Each host's VMs get a third of this machine's two cores (HOST_CPU_PCT, 66 % of one CPU: the
# CPU quota of the host's cgroup parent), so a host is a real third of the machine: guests
# crowded onto one host wait for CPU there, and that shows in its throttling. Results: a
# Markdown table on stdout and JSON (every sample) in /var/tmp/vbench-results/.
#
# Needs root (network namespaces). The lab is VINE_LAB=vbpol in /var/tmp/vbpol on 10.238.0.0/24
# unless those are set; it is taken down at the start (left over from a failed run) and on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export VINE_LAB=${VINE_LAB:-vbpol} VINE_LAB_DIR=${VINE_LAB_DIR:-/var/tmp/vbpol} VINE_LAB_NET=${VINE_LAB_NET:-10.238.0}
export VINE_LAB_DAEMON_ARGS="--sample-interval 2"
HOST_CPU_PCT=${HOST_CPU_PCT:-66}
RESULTS_DIR=/var/tmp/vbench-results
# shellcheck source=bench/lib.sh
source bench/lib.sh
lab_bench pool-policy.sh
lab() { bash scripts/pool-lab.sh "$@"; }
die() { bench_die "$@"; }
log() { bench_log "$@"; }
[ -d /sys/fs/cgroup/cpu ] && [ -d /sys/fs/cgroup/cpuacct ] || die "needs cgroup v1's cpu and cpuacct controllers"

env_file=$(lab up 3) || die "scripts/pool-lab.sh up 3 failed"
set -a
# shellcheck disable=SC1090
source "$env_file"
set +a
export VINE_LAB
on() { local h=$1; shift; VINE_SOCKET=$(eval echo "\$LAB_${h}_SOCKET") "$VINE" "$@"; }
on h1 cluster init --etcd "$LAB_ETCD" --name h1 >/dev/null || die "vine cluster init on h1 failed"
for h in h2 h3; do
    on "$h" cluster join "$(on h1 cluster token "$h")" >/dev/null || die "vine cluster join on $h failed"
done
# Each host a third of the machine: its VMs' cgroup parent gets a CPU quota (cgroup v1).
for h in h1 h2 h3; do
    for c in cpu cpuacct; do mkdir -p "/sys/fs/cgroup/$c/$VINE_LAB-$h"; done
    echo 100000 >"/sys/fs/cgroup/cpu/$VINE_LAB-$h/cpu.cfs_period_us"
    echo $((HOST_CPU_PCT * 1000)) >"/sys/fs/cgroup/cpu/$VINE_LAB-$h/cpu.cfs_quota_us"
done

mkdir -p "$RESULTS_DIR"
commit=$(git rev-parse --short HEAD)
results=$RESULTS_DIR/pool-policy-$(date -u +%Y%m%dT%H%M%S)-$commit.json
log "commit $commit, $("$VINE" --version), hosts of ${HOST_CPU_PCT} % of one CPU, results in $results"
/usr/bin/python3 bench/pool_policy_bench.py "$env_file" "$VINE" "$KIT" "$results" \
    "$(awk -v p="$HOST_CPU_PCT" 'BEGIN { print p / 100 }')"
