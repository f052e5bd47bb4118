#!/usr/bin/env bash
# Management API with 1,000 VMs defined (issue 5, must-show 8): vine's REST API and CLI against
# libvirt (Debian's libvirt-daemon: libvirtd with the QEMU driver, the same 1,000 domains
# defined) doing `virsh list --all` and `virsh dominfo`, side by side in one run
# (bench/api_bench.py does the timing).
#
#   bash bench/api.sh [VMS]      (default 1000)
#
# Needs root. Installs libvirt-daemon-system, libvirt-clients and python3-libvirt if missing,
# starts its own libvirtd unless one runs, defines VMS domains named bench-NNNN and undefines them
# afterwards; a private vine daemon in a temporary directory holds the same VMS VMs (diskless,
# direct kernel boot of the guest kit, never started).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
VINE=$(bash scripts/build.sh)/vine
bash scripts/guest-kit.sh >/dev/null
KIT=${VINE_KIT_DIR:-/var/lib/vine/kit}
source bench/lib.sh
libvirt_install
work=$(mktemp -d /var/tmp/vine-bench-api.XXXXXX)
VINE_DAEMON=""
LIBVIRT_STARTED=()
cleanup() {
    set +e
    if virsh -c qemu:///system list --all --name >/dev/null 2>&1; then
        virsh -c qemu:///system list --all --name | grep '^bench-' | while read -r d; do
            virsh -c qemu:///system undefine "$d" >/dev/null 2>&1 || true
        done
    fi
    for pid in "${LIBVIRT_STARTED[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ -n "$VINE_DAEMON" ]; then kill "$VINE_DAEMON" 2>/dev/null || true; wait "$VINE_DAEMON" 2>/dev/null || true; fi
    for d in /sys/fs/cgroup/*/vine-bench-api/*/ /sys/fs/cgroup/*/vine-bench-api/ /sys/fs/cgroup/*/vine-bench-api-daemon/; do
        rmdir "$d" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

libvirt_start "$work"
vine_start "$VINE" "$work" vine-bench-api
port=$VINE_PORT

echo "defining $N VMs in vine and in libvirt" >&2
/usr/bin/python3 - "$N" "$KIT" "$work" <<'PY'
import json, socket, sys, libvirt
n, kit, work = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def post(body):
    s = socket.socket(socket.AF_UNIX); s.connect(f"{work}/vine.sock")
    data = json.dumps(body).encode()
    s.sendall(b"POST /api/vms HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    answer = b""
    while chunk := s.recv(65536):
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
conn = libvirt.open("qemu:///system")
for i in range(n):
    name = f"bench-{i:04d}"
    post({"name": name, "memory": 256 << 20, "kernel": f"{kit}/vmlinuz", "initrd": f"{kit}/initrd.img",
          "append": "console=ttyS0"})
    conn.defineXML(f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>"
                   f"<os><type arch='x86_64' machine='pc'>hvm</type><kernel>{kit}/vmlinuz</kernel>"
                   f"<initrd>{kit}/initrd.img</initrd><cmdline>console=ttyS0</cmdline></os></domain>")
PY
password=$(cat "$work/data/initial-admin-password")
token=$(vine_token "$work" "$port" "$password")
echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%d), $(virsh --version | sed 's/^/libvirt /'), $N VMs"
/usr/bin/python3 bench/api_bench.py "$VINE" "$work/vine.sock" "$work/data" "$port" "$token" "$N"
