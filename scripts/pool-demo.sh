#!/usr/bin/env bash
# A pool of three hosts on this one machine (scripts/pool-lab.sh), with VMs placed across them,
# listed and controlled from every host.
#
#   bash scripts/pool-demo.sh          makes the pool and the VMs, shows them; leaves it all up
#   bash scripts/pool-demo.sh down     removes everything the demo made
#
# Environment: VINE (the vine binary; default: scripts/build.sh's), VINE_LAB (default vinedemo),
# VINE_LAB_NET (default 10.249.0), VINE_KIT_DIR (the guest kit; default /var/lib/vine/kit).
set -euo pipefail
cd "$(dirname "$0")/.."
export VINE_LAB=${VINE_LAB:-vinedemo}
export VINE_LAB_DIR=${VINE_LAB_DIR:-/var/tmp/$VINE_LAB}
export VINE_LAB_NET=${VINE_LAB_NET:-10.249.0}

step() { printf '\n== %s\n' "$*"; }

if [ "${1:-}" = down ]; then
    bash scripts/pool-lab.sh down
    exit 0
fi
[ $# -eq 0 ] || { echo "usage: pool-demo.sh [down]" >&2; exit 2; }

if [ -z "${VINE:-}" ]; then
    step "building vine"
    VINE=$(bash scripts/build.sh)/vine
fi
export VINE
KIT=${VINE_KIT_DIR:-/var/lib/vine/kit}
step "the guest kit (a Debian kernel and a small initramfs) in $KIT"
bash scripts/guest-kit.sh "$KIT" >/dev/null
cmdline=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cmdline"])' "$KIT/kit.json")

step "three simulated hosts (network namespaces on one bridge, a vine daemon each, etcd on all three)"
bash scripts/pool-lab.sh down >/dev/null 2>&1 || true
env_file=$(bash scripts/pool-lab.sh up 3)
# shellcheck disable=SC1090
source "$env_file"
on() { local h=$1; shift; VINE_SOCKET=$(eval echo "\$LAB_${h}_SOCKET") "$VINE" "$@"; }

step "h1 makes the pool; h2 and h3 join it with one-time tokens"
on h1 cluster init --etcd "$LAB_ETCD" --name h1
for h in h2 h3; do
    on "$h" cluster join "$(on h1 cluster token "$h")"
done
on h2 host list

step "six VMs made through h1, placed by the pool (each placement says why)"
for i in 1 2 3 4 5 6; do
    on h1 vm create "demo$i" --memory 128 --kernel "$KIT/vmlinuz" --initrd "$KIT/initrd.img" \
        --append "$cmdline vine.counter=1"
done
on h1 events | grep "vm.placed" || true

step "started through h3, whichever host owns each"
for i in 1 2 3 4 5 6; do on h3 vm start "demo$i"; done

step "the same list from every host"
for h in h1 h2 h3; do
    echo "-- on $h:"
    on "$h" vm list
done

step "demo1 paused and resumed through h2; its guest's console read through h3"
on h2 vm pause demo1
on h3 vm show demo1 | grep -E "^(state|host)"
on h2 vm resume demo1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for _ in $(seq 120); do
    on h3 vm console demo1 --log >"$log"
    grep -q VINE-COUNTER "$log" && break
    sleep 1
done
grep VINE-COUNTER "$log" | tail -n 3 || { echo "demo1's guest printed no counter within 120 s" >&2; exit 1; }

cat <<EOF

The pool is up. Every host answers for all of it:

  source $env_file
  VINE_SOCKET=\$LAB_h2_SOCKET $VINE vm list
  VINE_SOCKET=\$LAB_h3_SOCKET $VINE events
  VINE_SOCKET=\$LAB_h1_SOCKET $VINE vm move demo2 --to h3   # after: vm off demo2

Each host's web UI is at \$LAB_hI_URL, inside the lab's network namespaces (for example
nsenter --net=/var/run/netns/\$LAB_h1_NS curl -k \$LAB_h1_URL); the pool's administrator
password is in \$LAB_h1_DATA/initial-admin-password.

Remove it all: bash scripts/pool-demo.sh down
EOF
