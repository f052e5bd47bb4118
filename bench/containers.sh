#!/usr/bin/env bash
# Containers: (1) start to the container's userspace marker, vine against the same container
# started with LXC's own commands by hand, side by side, rounds alternating; (2) host memory per
# idle container against per idle VM of the guest kit, 20 of each, in the same run
# (bench/containers_bench.py does the work and prints the table).
#
#   bash bench/containers.sh [ROUNDS [N]]      (defaults 10 rounds, 20 instances; N=0: start only)
#
# The container is the busybox image (scripts/ct-image.sh busybox): its init prints
# "vine-ct: up NAME boot K" on the console once its boot script ran. Both sides give it the same
# LXC configuration (unprivileged, its own id range, 128 MiB limit, no NIC), from a root
# unpacked from the same image; vine's is `vine ct start` (API, definition, admission, cgroups,
# configuration, lxc-start, console relay), by hand it is one `lxc-start -d` of a configuration
# written beforehand, run twice: as a user would (LXC then writes the id maps through shadow's
# newuidmap/newgidmap) and with the PATH vine gives LXC (it writes them itself: the floor). Needs root. VINE_BIN=PATH uses that vine binary instead of building the
# shipped one (scripts/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-10}
N=${2:-20}
[ "$(id -u)" = 0 ] || { echo "containers.sh: run as root" >&2; exit 1; }
command -v lxc-start >/dev/null || { echo "containers.sh: lxc is not installed (scripts/setup.sh)" >&2; exit 1; }
bash scripts/guest-kit.sh >/dev/null
IMAGE=$(bash scripts/ct-image.sh busybox | tail -n1)
if [ -n "${VINE_BIN:-}" ]; then
    VINE=$VINE_BIN
else
    VINE=$(bash scripts/build.sh)/vine
fi
KIT=${VINE_KIT_DIR:-/var/lib/vine/kit}
# shellcheck source=bench/lib.sh
. bench/lib.sh
work=$(mktemp -d /var/tmp/vine-bench-ct.XXXXXX)
chmod 711 "$work"
VINE_DAEMON=""
cleanup() {
    python3 bench/containers_bench.py cleanup "$VINE" "$work" "$KIT" "$IMAGE" 0 "$N" >/dev/null 2>&1 || true
    if [ -n "$VINE_DAEMON" ]; then
        kill "$VINE_DAEMON" 2>/dev/null || true
        wait "$VINE_DAEMON" 2>/dev/null || true
    fi
    for root in /sys/fs/cgroup/*/vine-bench-ct /sys/fs/cgroup/*/vine-bench-ct-daemon /sys/fs/cgroup/*/vine-bench-hand; do
        [ -d "$root" ] || continue
        find "$root" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
vine_start "$VINE" "$work" vine-bench-ct
echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%d), $(lxc-start --version | sed 's/^/LXC /'), $(nproc) cores, $ROUNDS rounds, $N instances"
python3 bench/containers_bench.py run "$VINE" "$work" "$KIT" "$IMAGE" "$ROUNDS" "$N"
