# Sourced by the benchmarks: for those that measure vine's API beside libvirt (bench/api.sh,
# bench/api-load.sh), installing and starting libvirt, starting a private vine daemon, logging in;
# for those on a lab of simulated hosts (bench/pool.sh, bench/migrate.sh), the lab's start and end.
# Each function says what it sets; the caller's cleanup stops what was started.

# Installs libvirt-daemon-system, libvirt-clients and python3-libvirt if any is missing.
libvirt_install() {
    local missing=() p
    for p in libvirt-daemon-system libvirt-clients python3-libvirt; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# libvirt_start WORK: starts virtlogd and libvirtd unless libvirt already answers; appends the
# pids of what it started to LIBVIRT_STARTED (an array).
libvirt_start() {
    local work=$1
    virsh -c qemu:///system version >/dev/null 2>&1 && return 0
    mkdir -p /var/log/libvirt /run/libvirt
    if [ ! -S /run/libvirt/virtlogd-sock ]; then
        virtlogd -d --pid-file "$work/virtlogd.pid"
        for _ in $(seq 50); do [ -s "$work/virtlogd.pid" ] && break; sleep 0.1; done
        LIBVIRT_STARTED+=("$(cat "$work/virtlogd.pid")")
    fi
    libvirtd -d --pid-file "$work/libvirtd.pid"
    for _ in $(seq 100); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.1; done
    LIBVIRT_STARTED+=("$(cat "$work/libvirtd.pid")")
}

# vine_start VINE WORK CGROUP: a private daemon in WORK (data, socket, log) on a free HTTPS port
# of 127.0.0.1; sets VINE_DAEMON (its pid) and VINE_PORT, exports VINE_SOCKET. The daemon runs in
# a session of its own, as a service does (and as `libvirtd -d` puts itself): in this script's
# session the kernel's autogroup would weigh it together with the benchmark's clients.
# VINE_DAEMON_ARGS: more options for the daemon (e.g. "--login-cpu 25").
vine_start() {
    local vine=$1 work=$2 cgroup=$3
    chmod o+x "$work" # the emulator user reaches the VMs' run directories through it
    # shellcheck disable=SC2086 # the extra options are words
    setsid "$vine" daemon --data-dir "$work/data" --socket "$work/vine.sock" --cgroup-parent "$cgroup" \
        --listen 127.0.0.1:0 ${VINE_DAEMON_ARGS:-} >"$work/daemon.log" 2>&1 &
    VINE_DAEMON=$!
    for _ in $(seq 100); do grep -q "https://" "$work/daemon.log" 2>/dev/null && break; sleep 0.1; done
    VINE_PORT=$(grep -o 'https://127.0.0.1:[0-9]*' "$work/daemon.log" | cut -d: -f3)
    export VINE_SOCKET=$work/vine.sock
}

# vine_token WORK PORT PASSWORD: logs in as admin over HTTPS and prints the session token.
vine_token() {
    /usr/bin/python3 - "$2" "$3" "$1" <<'PY'
import http.client, json, ssl, sys
port, pw, work = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = http.client.HTTPSConnection("127.0.0.1", port, context=ssl.create_default_context(cafile=f"{work}/data/tls/cert.pem"))
c.request("POST", "/api/login", json.dumps({"user": "admin", "password": pw}), {"Content-Type": "application/json"})
print(json.load(c.getresponse())["token"])
PY
}

# lab_bench TAG: the start of a benchmark on a lab of simulated hosts (scripts/pool-lab.sh, with
# VINE_LAB, VINE_LAB_DIR and VINE_LAB_NET set by the caller). Needs root. Sets VINE (the binary
# scripts/build.sh builds, unless VINE is set) and KIT (the guest kit, built if needed), takes
# down a lab left over from a failed run, and takes this one down on exit (after the caller's
# bench_cleanup, if it defines one). bench_log and bench_die say things prefixed with TAG.
lab_bench() {
    BENCH_TAG=$1
    [ "$(id -u)" -eq 0 ] || bench_die "must run as root (the lab makes network namespaces)"
    VINE=${VINE:-$(bash scripts/build.sh)/vine}
    export VINE
    [ -x "$VINE" ] || bench_die "no vine binary at $VINE"
    bash scripts/guest-kit.sh >/dev/null || bench_die "scripts/guest-kit.sh failed"
    KIT=${VINE_KIT_DIR:-/var/lib/vine/kit}
    bash scripts/pool-lab.sh down 2>/dev/null || true
    trap lab_bench_exit EXIT
}
bench_log() { printf '%s: %s\n' "$BENCH_TAG" "$*" >&2; }
bench_die() { printf '%s: error: %s\n' "$BENCH_TAG" "$*" >&2; exit 1; }
lab_bench_exit() {
    local rc=$?
    set +e
    if declare -F bench_cleanup >/dev/null; then bench_cleanup; fi
    [ $rc -eq 0 ] || bench_log "failed (exit $rc); the daemons' logs were in $VINE_LAB_DIR/hI/daemon.log"
    bash scripts/pool-lab.sh down
}
