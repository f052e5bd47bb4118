#!/usr/bin/env python3
"""Where the cost of a cgroup lands in a restore: the same QEMU restore by hand (`-incoming defer`,
`migrate-incoming` of a file, `cont`), plain and placed into cgroup v1 controllers in two ways.

* plain: QEMU spawned directly.
* mem / cpu / all: a shell joins the memory, cpu+cpuacct or all three cgroups, then `exec`s QEMU
  (as `cgexec` does; what bench/vm-start.sh's "by hand in a cgroup" column does).
* after: QEMU spawned directly, then moved into all three cgroups while it initialises (what
  vine's daemon does).

The memory cgroup has the limit vine would give this guest (256 MiB + 384 MiB). Rounds shuffle the
order. Needs root, cgroup v1 and the guest kit (scripts/guest-kit.sh).

    python3 bench/restore_cgroup.py [ROUNDS]     (default 12)
"""

import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

from qmp_client import Qmp

KIT = os.environ.get("VINE_KIT_DIR", "/var/lib/vine/kit")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 12
WORK = tempfile.mkdtemp(prefix="vine-restore-cg.")
QMP_SOCK, CONSOLE, STATE = f"{WORK}/qmp.sock", f"{WORK}/console.log", f"{WORK}/state.bin"
BASE = ["qemu-system-x86_64", "-machine", "pc", "-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", "256M",
        "-nodefaults", "-no-user-config", "-display", "none", "-serial", f"file:{CONSOLE}",
        "-kernel", f"{KIT}/vmlinuz", "-initrd", f"{KIT}/initrd.img",
        "-append", "console=ttyS0 panic=-1 quiet vine.counter=1", "-qmp", f"unix:{QMP_SOCK},server=on,wait=off"]
CONTROLLERS = {"mem": ["memory"], "cpu": ["cpu", "cpuacct"], "all": ["cpu", "cpuacct", "memory"]}
CG = "vine-restore-cg"


def fresh_socket():
    if os.path.exists(QMP_SOCK):
        os.remove(QMP_SOCK)


def restore(kind):
    fresh_socket()
    argv = BASE + ["-S", "-incoming", "defer"]
    if kind in CONTROLLERS:
        joins = "; ".join(f"echo $$ > /sys/fs/cgroup/{c}/{CG}/cgroup.procs" for c in CONTROLLERS[kind])
        argv = ["/bin/sh", "-c", f'{joins}; exec "$@"', "sh", *argv]
    t = time.monotonic()
    p = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    try:
        if kind == "after":
            for c in CONTROLLERS["all"]:
                with open(f"/sys/fs/cgroup/{c}/{CG}/cgroup.procs", "w") as f:
                    f.write(str(p.pid))
        q = Qmp(QMP_SOCK, connect_poll_s=0.001)
        q.cmd("migrate-incoming", uri=f"file:{STATE}")
        q.wait_migration()
        q.cmd("cont")
        dt = time.monotonic() - t
        q.cmd("quit")
    finally:
        if p.wait(timeout=30) is None:
            p.kill()
    return dt


def main():
    for c in CONTROLLERS["all"]:
        os.makedirs(f"/sys/fs/cgroup/{c}/{CG}", exist_ok=True)
    with open(f"/sys/fs/cgroup/memory/{CG}/memory.limit_in_bytes", "w") as f:
        f.write(str((256 + 384) << 20))
    try:
        fresh_socket()
        p = subprocess.Popen(BASE, stderr=subprocess.DEVNULL)
        try:
            q = Qmp(QMP_SOCK, connect_poll_s=0.001)
            deadline = time.monotonic() + 120
            while b"VINE-BOOT-OK" not in open(CONSOLE, "rb").read():
                if time.monotonic() > deadline:
                    sys.exit("the guest did not boot within 120 s")
                time.sleep(0.05)
            q.cmd("stop")
            q.cmd("migrate", uri=f"file:{STATE}")
            q.wait_migration()
            q.cmd("quit")
        finally:
            p.wait(timeout=30)
        kinds = ["plain", "mem", "cpu", "all", "after"]
        res = {k: [] for k in kinds}
        for r in range(ROUNDS):
            order = kinds[:]
            random.Random(r).shuffle(order)
            for k in order:
                res[k].append(restore(k))
        print("| restore | median (ms) | samples (ms) |")
        print("|---|---:|---|")
        for k in kinds:
            print(f"| {k} | {statistics.median(res[k]) * 1000:.1f} | {' '.join(str(round(x * 1000)) for x in res[k])} |")
    finally:
        for c in CONTROLLERS["all"]:
            try:
                os.rmdir(f"/sys/fs/cgroup/{c}/{CG}")
            except OSError:
                pass
        subprocess.run(["rm", "-rf", WORK])


main()
