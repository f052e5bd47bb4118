#!/usr/bin/env bash
# Live migration, vine beside QEMU driven by hand over QMP, between the same two simulated hosts
# (scripts/pool-lab.sh): an idle 256 MiB guest, an idle 1 GiB guest and a 512 MiB guest that
# dirties 256 MiB continuously; bench/migrate_bench.py does the migrations and the timing.
#
#   bash bench/migrate.sh                      (ROUNDS=3 migrations each way and guest)
#   VINE=/path/to/vine bash bench/migrate.sh   (default: the binary scripts/build.sh builds)
#
# Figures: QEMU's total time and downtime, the wall time, and the longest gap between two of the
# guest's 10 ms console ticks as they arrive on the hosts; and the physical limit, the guest's
# memory over what one TCP stream carries between the two namespaces. Results: a Markdown table
# on stdout and JSON in /var/tmp/vbench-results/.
#
# Needs root (network namespaces). The lab is VINE_LAB=vbmig in /var/tmp/vbmig on 10.253.0.0/24
# unless those are set; it is taken down at the start (left over from a failed run) and on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export VINE_LAB=${VINE_LAB:-vbmig} VINE_LAB_DIR=${VINE_LAB_DIR:-/var/tmp/vbmig} VINE_LAB_NET=${VINE_LAB_NET:-10.253.0}
RESULTS_DIR=/var/tmp/vbench-results
# shellcheck source=bench/lib.sh
source bench/lib.sh
lab_bench migrate.sh
lab() { bash scripts/pool-lab.sh "$@"; }
die() { bench_die "$@"; }
log() { bench_log "$@"; }

env_file=$(lab up 2) || die "scripts/pool-lab.sh up 2 failed"
set -a
# shellcheck disable=SC1090
source "$env_file"
set +a
on() { local h=$1; shift; VINE_SOCKET=$(eval echo "\$LAB_${h}_SOCKET") "$VINE" "$@"; }
on h1 cluster init --etcd "$LAB_ETCD" --name h1 >/dev/null || die "vine cluster init on h1 failed"
on h2 cluster join "$(on h1 cluster token h2)" >/dev/null || die "vine cluster join on h2 failed"

mkdir -p "$RESULTS_DIR"
commit=$(git rev-parse --short HEAD)
results=$RESULTS_DIR/migrate-$(date -u +%Y%m%dT%H%M%S)-$commit.json
log "commit $commit, $("$VINE" --version), results in $results"
/usr/bin/python3 bench/migrate_bench.py "$env_file" "$VINE" "$KIT" "$results"
