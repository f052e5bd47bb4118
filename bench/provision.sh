#!/usr/bin/env bash
# Provisioning: from one call to N guests booted from linked clones of one base and holding DHCP
# leases, vine against doing the same by hand, side by side in one run (bench/provision_bench.py
# does the timing). The guest is the guest kit's boot disk with `vine.net=1` (it asks for a lease
# at once and prints "VINE-IP <addr>" on its console when it has one); both sides give each guest
# 128 MiB, one vCPU, a cloud-init NoCloud seed on an IDE CD/DVD and a virtio NIC on a bridge with
# a DHCP server, under the same accelerator (TCG on this machine).
#
# - vine: a private daemon with a storage pool, an internal network (vine's DHCP server) and a
#   template made from the boot disk; timed from one `POST /api/vms` with `template`, `count`,
#   `cloud_init` and `"start": true` until every guest's console shows its lease.
# - by hand: a bridge with dnsmasq as its DHCP server; timed from the first command until every
#   guest's console shows its lease: per guest `qemu-img create -f qcow2 -b BASE`, a seed from
#   `cloud-localds`, a tap on the bridge, and QEMU started with the overlay, the seed and the tap.
#
#   bash bench/provision.sh [N [ROUNDS]]      (defaults 20 guests, 3 rounds; sides alternate)
#
# Needs root. Installs cloud-image-utils (cloud-localds) if missing. VINE_BIN=PATH uses that vine
# binary instead of building the shipped one (scripts/build.sh). Uses the bridge vbprov0 with
# 10.252.1.0/24 for the by-hand side, and 10.252.2.0/24 for vine's network.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20}
ROUNDS=${2:-3}
[ "$(id -u)" = 0 ] || { echo "provision.sh: run as root" >&2; exit 1; }
if ! command -v cloud-localds >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cloud-image-utils >/dev/null
fi
command -v dnsmasq >/dev/null || { echo "provision.sh: dnsmasq is not installed (dnsmasq-base, scripts/setup.sh)" >&2; exit 1; }
bash scripts/guest-kit.sh >/dev/null
if [ -n "${VINE_BIN:-}" ]; then
    VINE=$VINE_BIN
else
    VINE=$(bash scripts/build.sh)/vine
fi
KIT=${VINE_KIT_DIR:-/var/lib/vine/kit}
# shellcheck source=bench/lib.sh
. bench/lib.sh
work=$(mktemp -d /var/tmp/vine-bench-provision.XXXXXX)
VINE_DAEMON=""
cleanup() {
    python3 bench/provision_bench.py cleanup "$VINE" "$work" "$KIT" "$N" 0 >/dev/null 2>&1 || true
    if [ -n "$VINE_DAEMON" ]; then
        kill "$VINE_DAEMON" 2>/dev/null || true
        wait "$VINE_DAEMON" 2>/dev/null || true
    fi
    for c in cpu cpuacct memory; do
        for d in /sys/fs/cgroup/$c/vine-bench-prov/*/ /sys/fs/cgroup/$c/vine-bench-prov/ /sys/fs/cgroup/$c/vine-bench-prov-daemon/; do
            rmdir "$d" 2>/dev/null || true
        done
    done
    rm -rf "$work"
}
trap cleanup EXIT
vine_start "$VINE" "$work" vine-bench-prov
echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%d), $(qemu-system-x86_64 --version | head -n1), $N guests, $ROUNDS rounds"
python3 bench/provision_bench.py run "$VINE" "$work" "$KIT" "$N" "$ROUNDS"
