#!/usr/bin/env python3
"""Containers: start latency against LXC by hand, and memory per idle container against per VM.

Called by bench/containers.sh (which starts a private vine daemon) as

    containers_bench.py run VINE WORK KIT IMAGE ROUNDS N
    containers_bench.py cleanup VINE WORK KIT IMAGE 0 N

Start: each round starts the busybox container both ways, in alternating order, timing from the
start command to "vine-ct: up NAME boot K" in its console log (LXC writes it), then kills it:

* vine, CLI: `vine ct start b1` (container made once beforehand with `vine ct create`);
* vine, API: `POST /api/vms/b1/actions/start` on the daemon's socket, from one kept-alive HTTP
  connection (what an orchestrator does);
* hand: `lxc-start -P HAND -n b2 -d`, with a configuration written once beforehand that gives
  it what vine gives its container (the same root, an id range of its own, the 128 MiB limit,
  the console log) and a root unpacked from the same image and shifted to its ids;
* hand, direct maps: the same `lxc-start` with the PATH vine gives LXC's commands (without
  shadow's newuidmap and newgidmap, so LXC writes the id maps itself, as vine's do): the floor
  for what vine does.

Memory: N busybox containers (64 MiB limit) and then N guest-kit VMs (128 MiB, diskless: the
kit's kernel and initramfs), each set started and left idle for 10 s once every instance
printed its marker; per instance, the mean of its cgroup's memory use (memory.usage_in_bytes:
for a container its processes and their page cache, for a VM QEMU with the guest's touched
memory, and its console logger) and the fall of MemAvailable divided by N.
"""

import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

MODE, VINE, WORK, KIT, IMAGE, ROUNDS, N = sys.argv[1:8]
ROUNDS, N = int(ROUNDS), int(N)
ENV = dict(os.environ, VINE_SOCKET=f"{WORK}/vine.sock")
HAND = f"{WORK}/hand"
HAND_BASE = 2_000_000_000 + 1999 * 65536  # the last slot of vine's range: no vine container uses it
TIMEOUT = 300
# What vine's LXC commands run with (crates/lxc/src/cmd.rs): PATH less the id-map helpers' folders.
DIRECT = dict(os.environ, PATH=os.pathsep.join(
    d for d in os.environ.get("PATH", "").split(os.pathsep)
    if not any(os.path.exists(os.path.join(d, h)) for h in ("newuidmap", "newgidmap"))))
LXC_START = shutil.which("lxc-start")


class UnixHTTP(http.client.HTTPConnection):
    """HTTP over the daemon's Unix socket (root there is the administrator)."""

    def __init__(self, path):
        super().__init__("localhost")
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.path)
        self.sock = s


def run(*cmd, env=None, check=True):
    out = subprocess.run(list(cmd), env=env, capture_output=True, text=True)
    if check and out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {out.stdout}{out.stderr}")
    return out.stdout


def vine(*args, check=True):
    return run(VINE, *args, env=ENV, check=check)


def wait_marker(log, marker, t0):
    while True:
        try:
            with open(log, "rb") as f:
                if marker in f.read():
                    return time.monotonic() - t0
        except FileNotFoundError:
            pass
        if time.monotonic() - t0 > TIMEOUT:
            sys.exit(f"no {marker!r} in {log} within {TIMEOUT} s")
        time.sleep(0.001)


def hand_rootfs():
    """The by-hand container's root: the image unpacked and shifted to its ids (not timed)."""
    root = f"{HAND}/b2/rootfs"
    os.makedirs(root)
    run("tar", "--numeric-owner", "-xpf", IMAGE, "-C", root)
    # Each path once: the root, then every entry as its directory lists it.
    for d, dirs, files in os.walk(root):
        for p in ([d] if d == root else []) + [os.path.join(d, x) for x in dirs + files]:
            st = os.lstat(p)
            os.lchown(p, HAND_BASE + st.st_uid, HAND_BASE + st.st_gid)
            if not os.path.islink(p):
                os.chmod(p, st.st_mode & 0o7777)
    os.chmod(f"{HAND}/b2", 0o755)
    os.chmod(HAND, 0o711)
    with open(f"{HAND}/b2/config", "w") as f:
        f.write(f"""lxc.uts.name = b2
lxc.rootfs.path = dir:{root}
lxc.idmap = u 0 {HAND_BASE} 65536
lxc.idmap = g 0 {HAND_BASE} 65536
lxc.init.cmd = /sbin/init
lxc.signal.halt = SIGUSR2
lxc.mount.auto = proc:mixed sys:ro cgroup:mixed
lxc.autodev = 1
lxc.pty.max = 64
lxc.tty.max = 0
lxc.cgroup.dir.container = vine-bench-hand/b2/ct
lxc.cgroup.dir.monitor = vine-bench-hand/b2/lxc-monitor
lxc.cgroup.dir.monitor.pivot = vine-bench-hand/_lxc
lxc.cgroup.memory.limit_in_bytes = {128 << 20}
lxc.console.logfile = {HAND}/b2/console.log
lxc.console.size = 2097152
lxc.console.rotate = 1
lxc.log.file = {HAND}/b2/lxc.log
lxc.log.level = WARN
lxc.net.0.type = empty
""")


def start_latency():
    vine("pool", "create", "p1", "--path", f"{WORK}/p1")
    vine("ct", "image", "import", "p1/bb", IMAGE)
    vine("ct", "create", "b1", "--image", "p1/bb", "--memory", "128M")
    hand_rootfs()
    vine_log = f"{WORK}/data/vms/b1/run/console.log"
    hand_log = f"{HAND}/b2/console.log"
    boots = {"vine": 0, "hand": 0}
    conn = UnixHTTP(f"{WORK}/vine.sock")

    def once(side):
        key = "hand" if side in ("hand", "direct") else "vine"
        boots[key] += 1
        marker = f"vine-ct: up {'b2' if key == 'hand' else 'b1'} boot {boots[key]}".encode()
        t0 = time.monotonic()
        if side == "api":
            conn.request("POST", "/api/vms/b1/actions/start", body=b"{}", headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            body = r.read()
            if r.status != 200:
                sys.exit(f"start through the API: {r.status} {body!r}")
            t = wait_marker(vine_log, marker, t0)
            vine("ct", "off", "b1")
        elif side == "vine":
            vine("ct", "start", "b1")
            t = wait_marker(vine_log, marker, t0)
            vine("ct", "off", "b1")
        else:
            run(LXC_START, "-P", HAND, "-n", "b2", "-d", env=DIRECT if side == "direct" else None)
            t = wait_marker(hand_log, marker, t0)
            run("lxc-stop", "-P", HAND, "-n", "b2", "-k")
        times[side].append(t)
        return t

    sides = ["vine", "api", "hand", "direct"]
    times = {s: [] for s in sides}
    # One of each first, not counted (page cache of the root, LXC's first run).
    for side in sides:
        once(side)
    times = {s: [] for s in sides}
    for r in range(ROUNDS):
        order = sides[r % 4:] + sides[:r % 4]
        got = {side: once(side) for side in order}
        print(f"round {r + 1}: vine CLI {got['vine'] * 1e3:.1f} ms, vine API {got['api'] * 1e3:.1f} ms, "
              f"by hand {got['hand'] * 1e3:.1f} ms, by hand with direct maps {got['direct'] * 1e3:.1f} ms")
    v, a, h, d = (statistics.median(times[s]) for s in sides)
    print(f"start to the userspace marker, median of {ROUNDS}: vine CLI {v * 1e3:.1f} ms, vine API "
          f"{a * 1e3:.1f} ms, LXC by hand {h * 1e3:.1f} ms, LXC by hand with direct maps {d * 1e3:.1f} ms; "
          f"vine CLI / hand = {v / h:.3f}, vine API / hand = {a / h:.3f}; against direct maps: "
          f"CLI {v / d:.3f}, API {a / d:.3f}")
    vine("ct", "delete", "b1")


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def usage(name):
    with open(f"/sys/fs/cgroup/memory/vine-bench-ct/{name}/memory.usage_in_bytes") as f:
        return int(f.read())


def idle_set(kind):
    names = [f"{kind}{i}" for i in range(1, N + 1)]
    run("sync")
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")
    time.sleep(2)
    before = mem_available()
    t0 = time.monotonic()
    for n in names:
        if kind == "ct":
            vine("ct", "create", n, "--image", "p1/bb", "--memory", "64M", "--start")
        else:
            vine("vm", "create", n, "--memory", "128M", "--kernel", f"{KIT}/vmlinuz",
                 "--initrd", f"{KIT}/initrd.img", "--append", kit_cmdline())
            vine("vm", "start", n)
    marker = b"vine-ct: up" if kind == "ct" else b"VINE-BOOT-OK"
    for n in names:
        wait_marker(f"{WORK}/data/vms/{n}/run/console.log", marker, t0)
    time.sleep(10)
    per = statistics.mean(usage(n) for n in names)
    fall = (before - mem_available()) / N
    for n in names:
        vine("ct" if kind == "ct" else "vm", "off", n)
        vine("ct" if kind == "ct" else "vm", "delete", n)
    return per, fall


def kit_cmdline():
    import json
    with open(f"{KIT}/kit.json") as f:
        return json.load(f)["cmdline"]


def memory():
    ct = idle_set("ct")
    vm = idle_set("vm")
    print(f"memory per idle instance, {N} of each: container {ct[0] / 2**20:.1f} MiB (cgroup), "
          f"{ct[1] / 2**20:.1f} MiB (MemAvailable); guest-kit VM {vm[0] / 2**20:.1f} MiB (cgroup), "
          f"{vm[1] / 2**20:.1f} MiB (MemAvailable); container / VM = {ct[0] / vm[0]:.3f} (cgroup), "
          f"{ct[1] / vm[1]:.3f} (MemAvailable)")


def cleanup():
    for name in ["b2"]:
        run("lxc-stop", "-P", HAND, "-n", name, "-k", check=False)
    out = vine("vm", "list", "--json", check=False)
    import json
    try:
        for v in json.loads(out or "[]"):
            vine("vm", "off", v["name"], check=False)
            vine("vm", "delete", v["name"], check=False)
    except ValueError:
        pass
    shutil.rmtree(HAND, ignore_errors=True)


if MODE == "run":
    try:
        start_latency()
        if N > 0:
            memory()
    finally:
        cleanup()
elif MODE == "cleanup":
    cleanup()
