#!/usr/bin/env bash
# Sets up this machine (as root), builds vine and runs its main job on embedded defaults: the
# host daemon (data in /var/lib/vine, socket /run/vine/vine.sock; VINE_DATA_DIR / VINE_SOCKET
# override) with a demo VM that boots from a VHD root disk served by vine's storage engine.
# Idempotent: a daemon already running is reused, the demo VM is created once and started if
# it is not running. The daemon keeps running afterwards (stop it with `kill PID`; VMs keep
# running and the next daemon reattaches to them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/guest-kit.sh >/dev/null
VINE=$(bash scripts/build.sh)/vine
DATA=${VINE_DATA_DIR:-/var/lib/vine}
export VINE_SOCKET=${VINE_SOCKET:-/run/vine/vine.sock}
KIT=${VINE_KIT_DIR:-/var/lib/vine/kit}
mkdir -p "$DATA/images" "$DATA/log"

if "$VINE" vm list >/dev/null 2>&1; then
    echo "== the vine daemon is already running on $VINE_SOCKET"
else
    echo "== starting the vine daemon (log: $DATA/log/daemon.log)"
    setsid "$VINE" -v daemon --data-dir "$DATA" --socket "$VINE_SOCKET" \
        >>"$DATA/log/daemon.log" 2>&1 </dev/null &
    for _ in $(seq 100); do "$VINE" vm list >/dev/null 2>&1 && break; sleep 0.1; done
    "$VINE" vm list >/dev/null || { tail -n 20 "$DATA/log/daemon.log"; exit 1; }
    grep -E "vine daemon|REST API|first start" "$DATA/log/daemon.log" | tail -n 3
fi
"$VINE" host info

ROOT=$DATA/images/demo-root.vhd
if [ ! -f "$ROOT" ]; then
    echo "== building the demo root disk $ROOT (MBR + syslinux + the guest kit's kernel)"
    raw=$(mktemp /tmp/vine-demo-root.XXXXXX)
    bash scripts/guest-bootdisk.sh "$KIT" "$raw" vine.counter=1
    "$VINE" disk convert "$raw" "$ROOT" --to dynamic
    rm -f "$raw"
fi
if ! "$VINE" vm show demo >/dev/null 2>&1; then
    "$VINE" vm create demo --cpus 1 --memory 256M --disk "$ROOT"
fi
state=$("$VINE" vm show demo --json | sed -n 's/^  "state": "\(.*\)",$/\1/p')
case "$state" in
    running) echo "== the demo VM is already running" ;;
    paused) "$VINE" vm resume demo ;;
    saved) "$VINE" vm restore demo ;;
    *) echo "== starting the demo VM"; "$VINE" vm start demo ;;
esac
log=$("$VINE" vm show demo --json | sed -n 's/^  "console_log": "\(.*\)",$/\1/p')
echo "== waiting for the guest's userspace (marker VINE-BOOT-OK on its serial console)"
for _ in $(seq 600); do grep -q VINE-BOOT-OK "$log" 2>/dev/null && break; sleep 0.2; done
grep -q VINE-BOOT-OK "$log" || { echo "the demo VM did not boot; console:"; tail "$log"; exit 1; }
"$VINE" vm list
"$VINE" vm console demo --log | tail -n 3
api=$(grep -o 'https://[^ ]*' "$DATA/log/daemon.log" | tail -n 1)
cat <<MSG
== vine is running: daemon on $VINE_SOCKET, demo VM 'demo' booted from $ROOT.
   Web UI and REST API: ${api:-https://127.0.0.1:8443}/ (OpenAPI at /api/openapi.json; user admin,
   password in $DATA/initial-admin-password; certificate $DATA/tls/cert.pem)
   Try: $VINE vm show demo | vm pause demo | vm save demo | vm restore demo | vm shutdown demo
        $VINE events --follow
MSG
