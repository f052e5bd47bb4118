#!/usr/bin/env bash
# VM start, save and restore (issue 3, must-show 7): `vine vm start|save|restore` against the
# same QEMU command line and the same QMP commands driven by hand, side by side in one run
# (bench/vm_start.py does the timing). A private daemon in a temporary data directory is used
# and stopped afterwards; the guest is the guest kit (TCG on this machine).
#
#   bash bench/vm-start.sh [ROUNDS [CYCLES]]      (defaults 21 and 6 save/restore cycles per round)
#
# Prints a Markdown table of medians with vine / raw and the difference in milliseconds.
# VINE_BIN=PATH uses that vine binary instead of building the shipped one (scripts/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-21}
CYCLES=${2:-6}
bash scripts/guest-kit.sh >/dev/null
if [ -n "${VINE_BIN:-}" ]; then
    VINE=$VINE_BIN      # e.g. the test suite's smoke run with the debug build
else
    VINE=$(bash scripts/build.sh)/vine     # as shipped (scripts/build.sh)
fi
KIT=${VINE_KIT_DIR:-/var/lib/vine/kit}
work=$(mktemp -d /var/tmp/vine-bench-vm.XXXXXX)
chmod 711 "$work"  # vine's QEMU runs as the emulator user, who crosses it to its VM's directory
daemon=""
cleanup() {
    if [ -n "$daemon" ]; then
        VINE_SOCKET=$work/vine.sock "$VINE" vm off bench >/dev/null 2>&1 || true
        kill "$daemon" 2>/dev/null || true
        wait "$daemon" 2>/dev/null || true
    fi
    for c in cpu cpuacct memory; do rmdir /sys/fs/cgroup/$c/vine-bench /sys/fs/cgroup/$c/vine-bench-daemon 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
# The actor's debug lines time each step of a restore (the phase table at the end).
RUST_LOG=warn,daemon::actor=debug "$VINE" daemon --data-dir "$work/data" --socket "$work/vine.sock" --cgroup-parent vine-bench \
    >"$work/daemon.log" 2>&1 &
daemon=$!
for _ in $(seq 100); do [ -S "$work/vine.sock" ] && break; sleep 0.05; done
echo "commit $(git rev-parse --short HEAD), $(date -u +%Y-%m-%d), $(qemu-system-x86_64 --version | head -n1), accelerator $("$VINE" host info --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accelerator"]["kind"])')"
python3 bench/vm_start.py "$VINE" "$work/vine.sock" "$work" "$KIT" "$ROUNDS" "$CYCLES"
