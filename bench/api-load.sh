#!/usr/bin/env bash
# The management API under load: vine's HTTPS API against libvirt (Debian's libvirtd with the
# QEMU driver), side by side in one run; bench/api_load.py does the clients and the timing.
#
#   bash bench/api-load.sh [DURATION_S [CONCURRENCY...]]     (default: 60 s at 10, 50 and 200)
#   THINK_MS=1000 bash bench/api-load.sh ...                 (clients pause 0-2 s between requests)
#   SIDES=vine CYCLE=0 bash bench/api-load.sh ...            (vine alone; VMs left running)
#   VINE=/path/to/vine bash bench/api-load.sh ...            (default: the binary scripts/build.sh builds)
#   CLIENT_RT=0 bash bench/api-load.sh ...                   (clients on the normal policy; by
#                                                             default they run on the real-time
#                                                             round-robin policy, the same for both
#                                                             sides, so they never wait for a core
#                                                             behind the guests and measure the
#                                                             servers, as clients on another
#                                                             machine would)
#
# Each side holds four running VMs booted from the guest kit (256 MiB, one vCPU, TCG) which cycle
# start, save, restore, off during each load phase. Needs root. Installs libvirt-daemon-system,
# libvirt-clients and python3-libvirt if missing and starts its own virtlogd and libvirtd unless
# they run; a private vine daemon lives in a temporary directory. Everything it made goes at the
# end: VMs, domains (with their managed-save images), daemons it started, the directory.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-60}
shift || true
LEVELS=("$@")
[ ${#LEVELS[@]} -gt 0 ] || LEVELS=(10 50 200)
VINE=${VINE:-$(bash scripts/build.sh)/vine}
bash scripts/guest-kit.sh >/dev/null
KIT=${VINE_KIT_DIR:-/var/lib/vine/kit}
source bench/lib.sh
libvirt_install
work=$(mktemp -d /var/tmp/vine-bench-load.XXXXXX)
chmod 0755 "$work" # libvirt's QEMU (libvirt-qemu) reads the kernel and initrd copied here
VINE_DAEMON=""
LIBVIRT_STARTED=()
lv() { virsh -q -c qemu:///system "$@"; }
cleanup() {
    set +e
    if [ -n "$VINE_DAEMON" ]; then
        for i in 0 1 2 3; do
            VINE_SOCKET=$work/vine.sock "$VINE" vm off "load-$i" >/dev/null 2>&1
        done
        kill "$VINE_DAEMON" 2>/dev/null
        wait "$VINE_DAEMON" 2>/dev/null
    fi
    if lv version >/dev/null 2>&1; then
        for i in 0 1 2 3; do
            lv destroy "load-$i" >/dev/null 2>&1
            lv undefine "load-$i" --managed-save >/dev/null 2>&1
        done
    fi
    for pid in "${LIBVIRT_STARTED[@]}"; do kill "$pid" 2>/dev/null; done
    [ -n "$CLIENTS_CG" ] && rmdir "$CLIENTS_CG" 2>/dev/null
    rmdir /sys/fs/cgroup/*/vine-bench-load /sys/fs/cgroup/*/vine-bench-load-daemon 2>/dev/null
    rm -rf "$work"
}
# The clients run on this machine beside the guests; a client woken by its answer that waits for
# a core measures its own delay, not the server's (in the slowest 1% of requests, more than half
# of their time, measured with schedstat). The clients (the same for both sides) get a CPU group
# of their own with ten times the default weight, as clients on another machine would never wait
# behind these guests; they use little CPU, so the weight only lets them run when woken.
CLIENTS_CG=""
clients_cgroup() {
    if [ -f /sys/fs/cgroup/cpu/cpu.shares ]; then
        CLIENTS_CG=/sys/fs/cgroup/cpu/vine-bench-clients
        mkdir -p "$CLIENTS_CG" && echo 10240 >"$CLIENTS_CG/cpu.shares"
        # Real-time clients (CLIENT_RT=1, the default) need a real-time budget in the group: 20 %
        # of a core.
        if [ "${CLIENT_RT:-1}" = 1 ] && [ -f "$CLIENTS_CG/cpu.rt_runtime_us" ]; then
            echo 200000 >"$CLIENTS_CG/cpu.rt_runtime_us"
        fi
    elif grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
        CLIENTS_CG=/sys/fs/cgroup/vine-bench-clients
        mkdir -p "$CLIENTS_CG" && echo 1000 >"$CLIENTS_CG/cpu.weight"
    fi
}
trap cleanup EXIT

SIDES=${SIDES:-vine libvirt}
with_libvirt=false
case " $SIDES " in *" libvirt "*) with_libvirt=true ;; esac
if $with_libvirt; then
    libvirt_start "$work"
fi
vine_start "$VINE" "$work" vine-bench-load
port=$VINE_PORT

cmdline="$(sed -n 's/^  "cmdline": "\(.*\)"$/\1/p' "$KIT/kit.json") vine.counter=1"
cp "$KIT/vmlinuz" "$KIT/initrd.img" "$work/"
chmod 0644 "$work/vmlinuz" "$work/initrd.img"
echo "starting 4 VMs in vine and 4 domains in libvirt" >&2
for i in 0 1 2 3; do
    "$VINE" vm create "load-$i" --memory 256M --kernel "$KIT/vmlinuz" --initrd "$KIT/initrd.img" \
        --append "$cmdline" >/dev/null
    "$VINE" vm start "load-$i" >/dev/null
    cat >"$work/load-$i.xml" <<EOF
<domain type='qemu'><name>load-$i</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><kernel>$work/vmlinuz</kernel>
<initrd>$work/initrd.img</initrd><cmdline>$cmdline</cmdline></os><features><acpi/></features>
<devices><serial type='pty'><log file='$work/load-$i.console.log'/></serial><console type='pty'/></devices></domain>
EOF
    if $with_libvirt; then
        lv define "$work/load-$i.xml" >/dev/null
        lv start "load-$i" >/dev/null
    fi
done
# Nothing is measured until every guest on both sides has booted (its counter has begun) and the
# machine has settled: four TCG boots on two cores take longer than any fixed pause.
booted() { grep -qa "VINE-COUNTER" "$1" 2>/dev/null; }
for _ in $(seq 1 240); do
    up=0
    for i in 0 1 2 3; do
        booted "$work/data/vms/load-$i/run/console.log" && up=$((up + 1))
        if $with_libvirt; then booted "$work/load-$i.console.log" && up=$((up + 1)); fi
    done
    want=4
    $with_libvirt && want=8
    [ "$up" -ge "$want" ] && break
    sleep 0.5
done
[ "$up" -ge "$want" ] || { echo "api-load.sh: only $up of $want guests booted within 120 s" >&2; exit 1; }
sleep 5
password=$(cat "$work/data/initial-admin-password")
token=$(vine_token "$work" "$port" "$password")
echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%d), $(virsh --version | sed 's/^/libvirt /'), $(nproc) CPUs, ${DURATION} s per phase, sides: $SIDES"
export SIDES
clients_cgroup
(
    [ -z "$CLIENTS_CG" ] || echo "$BASHPID" >"$CLIENTS_CG/cgroup.procs"
    exec /usr/bin/python3 bench/api_load.py "$work/data" "$port" "$token" "$password" "$DURATION" "${LEVELS[@]}"
)
