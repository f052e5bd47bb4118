#!/usr/bin/env bash
# vine's main job on embedded defaults, from a fresh Debian bookworm machine, as root (a root
# shell; no sudo needed): sets the machine up (scripts/setup.sh), builds vine's Debian package
# and installs it (`vine` in /usr/bin, man pages, completions, the vine.service unit), starts the
# daemon (data /var/lib/vine, socket /run/vine/vine.sock, web UI and API on
# https://127.0.0.1:8443/) and boots a demo VM from a VHD root disk served by vine's storage
# engine. Under systemd the package's vine.service runs the daemon; on a machine whose PID 1 is
# not systemd (a container, this kind of build machine) the daemon is started directly, its PID in
# /run/vine/daemon.pid. Idempotent: run it again after a change to rebuild, reinstall and restart
# the daemon (VMs keep running across the restart); the demo VM is made once.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "run.sh: run this as root (it installs packages and starts the daemon)" >&2
    exit 1
fi
step() { printf '== %s\n' "$*"; }

step "setting up this machine (Debian packages, the guest kit)"
bash scripts/setup.sh
bash scripts/guest-kit.sh >/dev/null

step "building vine's Debian package (a release build: several minutes the first time)"
deb=$(bash scripts/package.sh)
step "installing $(basename "$deb")"
if ! dpkg -i "$deb" >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -f >/dev/null
fi
command -v vine >/dev/null || { echo "run.sh: vine is not on the PATH after installing" >&2; exit 1; }

DATA=/var/lib/vine
export VINE_SOCKET=/run/vine/vine.sock
PIDFILE=/run/vine/daemon.pid
LOG=$DATA/log/daemon.log
KIT=${VINE_KIT_DIR:-$DATA/kit}
mkdir -p "$DATA/images" "$DATA/log"
answers() { vine vm list >/dev/null 2>&1; }
wait_for_daemon() {
    for _ in $(seq 150); do answers && return 0; sleep 0.2; done
    return 1
}

if [ -d /run/systemd/system ]; then
    step "starting vine.service (systemd)"
    systemctl enable vine.service >/dev/null 2>&1
    systemctl restart vine.service
    stop_daemon="systemctl stop vine"
    wait_for_daemon || { journalctl -u vine --no-pager -n 20; exit 1; }
else
    stop_daemon="kill \$(cat $PIDFILE)"
    old=$(cat "$PIDFILE" 2>/dev/null || true)
    if [ -n "$old" ] && kill -0 "$old" 2>/dev/null; then
        step "restarting the daemon (pid $old) on the installed vine; VMs keep running"
        kill "$old"
        for _ in $(seq 100); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
    fi
    if answers; then
        step "a vine daemon not started by this script answers on $VINE_SOCKET: using it"
        stop_daemon="stop the daemon you started"
    else
        step "starting the daemon directly (PID 1 is not systemd; log: $LOG)"
        mkdir -p /run/vine
        VINE_WEB_DIR=/usr/share/vine/web setsid vine -v daemon --data-dir "$DATA" --socket "$VINE_SOCKET" \
            >>"$LOG" 2>&1 </dev/null &
        echo $! >"$PIDFILE"
        wait_for_daemon || { tail -n 20 "$LOG"; exit 1; }
    fi
fi
vine host info

ROOT=$DATA/images/demo-root.vhd
if [ ! -f "$ROOT" ]; then
    step "building the demo root disk $ROOT (MBR + syslinux + the guest kit's kernel)"
    raw=$(mktemp /tmp/vine-demo-root.XXXXXX)
    bash scripts/guest-bootdisk.sh "$KIT" "$raw" vine.counter=1
    vine disk convert "$raw" "$ROOT" --to dynamic
    rm -f "$raw"
fi
if ! vine vm show demo >/dev/null 2>&1; then
    vine vm create demo --cpus 1 --memory 256 --disk "$ROOT"
fi
state=$(vine vm show demo --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["state"])')
case "$state" in
    running) step "the demo VM is already running" ;;
    paused) vine vm resume demo ;;
    saved) vine vm restore demo ;;
    *) step "starting the demo VM"; vine vm start demo ;;
esac
log=$(vine vm show demo --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["console_log"])')
step "waiting for the guest's userspace (marker VINE-BOOT-OK on its serial console)"
for _ in $(seq 600); do grep -q VINE-BOOT-OK "$log" 2>/dev/null && break; sleep 0.2; done
grep -q VINE-BOOT-OK "$log" || { echo "the demo VM did not boot; its console:"; tail "$log" | tr -cd '[:print:]\n'; exit 1; }
vine vm list

# Plain text only from here: nothing of the guest's console (which holds terminal control
# sequences a terminal would answer into the prompt).
cat <<MSG

vine is running, with the demo VM 'demo' booted from $ROOT.

  Web UI and REST API:  https://127.0.0.1:8443/   (OpenAPI document at /api/openapi.json)
  User admin; its password is in $DATA/initial-admin-password
  The certificate is self-signed: $DATA/tls/cert.pem

Try:
  vine vm show demo
  vine vm console demo --log
  vine events --follow

Stop:
  the demo VM:   vine vm shutdown demo     (or at once: vine vm off demo)
  the daemon:    $stop_daemon
                 (VMs keep running without the daemon; the next daemon takes them back)

Learn more: man vine, man vine-vm, and the guides in /usr/share/doc/vine/docs.
MSG
