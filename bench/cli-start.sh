#!/usr/bin/env bash
# What one `vine` command costs its caller, from the spawn to the exit: the shipped build
# (scripts/build.sh: not position independent) against the same code built the default
# way (`cargo build --release`: position independent, dynamically linked), side by side in one
# run, with /bin/true as the floor of starting any process on this machine and the same HTTP
# request made by the script itself (no process at all) as the floor of asking the daemon.
#
#   bash bench/cli-start.sh [N]      (default 300 runs of each case, interleaved)
#
# A private daemon with no VMs answers `vine vm list`; it is stopped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-300}
SHIPPED=$(bash scripts/build.sh)/vine
cargo build --release --quiet -p vine
PIE=$PWD/target/release/vine
work=$(mktemp -d /var/tmp/vine-bench-cli.XXXXXX)
chmod o+x "$work" # the emulator user reaches the VMs' directories through it
daemon=""
cleanup() {
    if [ -n "$daemon" ]; then
        kill "$daemon" 2>/dev/null || true
        wait "$daemon" 2>/dev/null || true
    fi
    for c in cpu cpuacct memory; do rmdir /sys/fs/cgroup/$c/vine-bench-cli /sys/fs/cgroup/$c/vine-bench-cli-daemon 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
"$SHIPPED" daemon --data-dir "$work/data" --socket "$work/vine.sock" --cgroup-parent vine-bench-cli \
    --listen 127.0.0.1:0 >"$work/daemon.log" 2>&1 &
daemon=$!
for _ in $(seq 300); do [ -S "$work/vine.sock" ] && break; sleep 0.05; done
[ -S "$work/vine.sock" ] || { echo "the daemon did not start:" >&2; cat "$work/daemon.log" >&2; exit 1; }
echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%d), $N runs of each case"
python3 bench/cli_start.py "$SHIPPED" "$PIE" "$work/vine.sock" "$N"
