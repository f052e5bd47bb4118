#!/usr/bin/env python3
"""VM start / save / restore: vine against the same QEMU driven by hand, side by side in one run.

Called by bench/vm-start.sh with a running private `vine daemon`. For each round, alternately:

* start: `vine vm start` until the guest's userspace marker (VINE-BOOT-OK) is on its serial log,
  against the very command line vine gave QEMU (read from /proc/PID/cmdline, without vine's -S)
  started by hand until the same marker; also until the guest runs: `vine vm start` returned
  (QEMU up, QMP negotiated, `cont` given) against QEMU's QMP socket answering by hand (QEMU up,
  guest running), which leaves out the TCG boot and its noise;
* save: `vine vm save` until it returns, against raw QMP (stop, migrate to file:, poll
  query-migrate until completed, quit, wait for the process to end);
* restore: `vine vm restore` until it returns, against starting the same command line with
  -incoming defer by hand, migrate-incoming over QMP, poll until completed, cont.

One vine round runs first (to learn vine's command line) and is not counted; then rounds
alternate which side goes first.

The by-hand side runs twice: as a plain process, and inside a cgroup set up like vine's (cgroup
v1: cpu, cpuacct and memory with the same memory limit, guest memory + 384 MiB), so the table
separates what vine's daemon adds from what enforcing memory limits costs.

Prints a Markdown table of medians, vine / raw and vine − raw, then the per-round (paired)
differences with a 95 % bootstrap interval: the rounds run the sides back to back, so slow drifts
of the machine cancel and the interval says how well the run resolves vine's overhead.
"""

import json
import os
import random
import statistics
import subprocess
import sys
import time

from qmp_client import Qmp

VINE, SOCK, WORK, KIT, ROUNDS = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
ENV = dict(os.environ, VINE_SOCKET=SOCK)
VM = "bench"
MARKER = b"VINE-BOOT-OK"


def vine(*args):
    out = subprocess.run([VINE, *args], env=ENV, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"vine {' '.join(args)} failed: {out.stderr}")
    return out.stdout


def show():
    return json.loads(vine("vm", "show", VM, "--json"))


def wait_marker(path, offset, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                if MARKER in f.read():
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    sys.exit(f"no {MARKER!r} in {path} within {timeout} s")


def size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def raw_args(vine_args, vm_dir, raw_dir):
    """vine's QEMU arguments without -S, every file of the VM's directory (QMP and console sockets,
    console log, VNC socket) moved to `raw_dir`. Returns (args, QMP socket, console log)."""
    out = [a.replace(vm_dir, raw_dir) for a in vine_args if a != "-S"]
    qmp = out[out.index("-qmp") + 1].removeprefix("unix:").split(",")[0]
    serial = next(a for a in out if a.startswith("socket,id=serial0,") or a.startswith("file,id=serial0,"))
    opts = dict(kv.split("=", 1) for kv in serial.split(",")[1:] if "=" in kv)
    console = opts.get("logfile") or opts["path"]
    return out, qmp, console


CGROUP_DIRS = [f"/sys/fs/cgroup/{c}/vine-bench-raw" for c in ("cpu", "cpuacct", "memory")]


def make_cgroup():
    if not os.path.isdir("/sys/fs/cgroup/memory"):
        return False
    for d in CGROUP_DIRS:
        os.makedirs(d, exist_ok=True)
    with open(f"{CGROUP_DIRS[2]}/memory.limit_in_bytes", "w") as f:
        f.write(str((256 + 384) << 20))
    return True


def remove_cgroup():
    for d in CGROUP_DIRS:
        try:
            os.rmdir(d)
        except OSError:
            pass


def in_cgroup(argv):
    """`argv` run by a shell that first moves itself into the cgroups (as `cgexec` would): cheaper
    than a Python pre-exec hook, which forces a full fork of this interpreter."""
    joins = "; ".join(f"echo $$ > {d}/cgroup.procs" for d in CGROUP_DIRS)
    return ["/bin/sh", "-c", f'{joins}; exec "$@"', "sh", *argv]


def bootstrap_median(d, n=4000, seed=1):
    """95 % percentile-bootstrap interval of the median of `d` (fixed seed: reproducible)."""
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(d, k=len(d))) for _ in range(n))
    return meds[int(0.025 * n)], meds[int(0.975 * n) - 1]


def wait_exit(p, timeout=60):
    p.wait(timeout=timeout)


def main():
    vine("vm", "create", VM, "--memory", "256M", "--kernel", f"{KIT}/vmlinuz", "--initrd", f"{KIT}/initrd.img",
         "--append", json.load(open(f"{KIT}/kit.json"))["cmdline"] + " vine.counter=1")
    console = show()["console_log"]
    vm_dir = os.path.dirname(console)
    raw_dir = f"{WORK}/raw"
    os.makedirs(raw_dir, exist_ok=True)
    sides = ("vine", "raw", "rawcg")
    res = {f"{op}_{side}": [] for op in ("ready", "start", "save", "restore") for side in sides}
    with_cgroup = make_cgroup()
    qemu_args = None
    qemu_bin = None
    def run_vine():
        nonlocal qemu_args, qemu_bin
        off = size(console)
        t = time.monotonic()
        vine("vm", "start", VM)
        res["ready_vine"].append(time.monotonic() - t)
        wait_marker(console, off)
        res["start_vine"].append(time.monotonic() - t)
        if qemu_args is None:
            argv = open(f"/proc/{show()['pid']}/cmdline", "rb").read().split(b"\0")[:-1]
            qemu_bin, qemu_args = argv[0].decode(), [a.decode() for a in argv[1:]]
        time.sleep(2)
        t = time.monotonic()
        vine("vm", "save", VM)
        res["save_vine"].append(time.monotonic() - t)
        t = time.monotonic()
        vine("vm", "restore", VM)
        res["restore_vine"].append(time.monotonic() - t)
        vine("vm", "off", VM)

    def run_raw(side="raw"):
        procs = []
        try:
            run_raw_procs(side, procs)
        finally:
            for p in procs:  # only after a failure: a finished side has reaped its QEMU
                if p.poll() is None:
                    p.kill()
                    p.wait()

    def run_raw_procs(side, procs):
        wrap = in_cgroup if side == "rawcg" else (lambda argv: argv)
        args, qmp, rawlog = raw_args(qemu_args, vm_dir, raw_dir)
        state = f"{WORK}/raw-state.bin"
        for p in (qmp, state):
            if os.path.exists(p):
                os.remove(p)
        log = open(f"{WORK}/raw-qemu.log", "ab")
        off = size(rawlog)
        t = time.monotonic()
        p = subprocess.Popen(wrap([qemu_bin, *args]), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        procs.append(p)
        c = Qmp(qmp)
        res[f"ready_{side}"].append(time.monotonic() - t)
        wait_marker(rawlog, off)
        res[f"start_{side}"].append(time.monotonic() - t)
        time.sleep(2)
        t = time.monotonic()
        c.cmd("stop")
        c.cmd("migrate", uri=f"file:{state}")
        c.wait_migration()
        fd = os.open(state, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        c.cmd("quit")
        wait_exit(p)
        res[f"save_{side}"].append(time.monotonic() - t)
        os.remove(qmp) if os.path.exists(qmp) else None
        t = time.monotonic()
        p = subprocess.Popen(wrap([qemu_bin, *args, "-S", "-incoming", "defer"]), stdin=subprocess.DEVNULL,
                             stdout=log, stderr=log)
        procs.append(p)
        c = Qmp(qmp)
        c.cmd("migrate-incoming", uri=f"file:{state}")
        c.wait_migration()
        c.cmd("cont")
        res[f"restore_{side}"].append(time.monotonic() - t)
        c.cmd("quit")
        wait_exit(p)

    # vine's command line is needed by the raw runs: vine goes first once, then the order alternates.
    run_vine()
    for k in res:
        res[k].clear()
    for r in range(ROUNDS):
        runs = [run_vine, run_raw] + ([lambda: run_raw("rawcg")] if with_cgroup else [])
        for run in (runs if r % 2 == 0 else runs[::-1]):
            run()
        print(f"round {r + 1}/{ROUNDS}: " + ", ".join(f"{k} {v[-1] * 1000:.0f} ms" for k, v in res.items()),
              file=sys.stderr)
    vine("vm", "delete", VM)

    print("| operation | by hand (median) | by hand in a cgroup like vine's | vine (median) | vine / by hand "
          "| vine − by hand | vine / by hand in cgroup | vine − by hand in cgroup |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    ops = (("ready", "start → QEMU ready, guest running"), ("start", "start → userspace marker"),
           ("save", "save (256 MiB guest)"), ("restore", "restore → running"))
    for op, label in ops:
        raw = statistics.median(res[f"{op}_raw"])
        v = statistics.median(res[f"{op}_vine"])
        if res[f"{op}_rawcg"]:
            cg = statistics.median(res[f"{op}_rawcg"])
            cg_tail = f"{v / cg:.3f} | {(v - cg) * 1000:+.0f} ms"
            cg_col = f"{cg * 1000:.0f} ms"
        else:
            cg_col, cg_tail = "n/a (not cgroup v1)", "n/a | n/a"
        print(f"| {label} | {raw * 1000:.0f} ms | {cg_col} | {v * 1000:.0f} ms | {v / raw:.3f} | "
              f"{(v - raw) * 1000:+.0f} ms | {cg_tail} |")
    remove_cgroup()
    print("\nPaired by round (each round runs the sides back to back): medians of vine − by hand and of "
          "(vine − by hand) / by hand, each with a 95 % bootstrap interval.\n")
    print("| operation | vine − by hand | relative | vine − by hand in cgroup | relative |")
    print("|---|---:|---:|---:|---:|")
    for op, label in ops:
        cells = []
        for other in ("raw", "rawcg"):
            pairs = list(zip(res[f"{op}_vine"], res[f"{op}_{other}"]))
            if pairs:
                d = [a - b for a, b in pairs]
                rel = [(a - b) / b for a, b in pairs]
                lo, hi = bootstrap_median(d)
                rlo, rhi = bootstrap_median(rel)
                cells += [f"{statistics.median(d) * 1000:+.0f} ms ({lo * 1000:+.0f} … {hi * 1000:+.0f})",
                          f"{statistics.median(rel) * 100:+.1f} % ({rlo * 100:+.1f} … {rhi * 100:+.1f})"]
            else:
                cells += ["n/a", "n/a"]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\n{ROUNDS} rounds; every sample (ms): " +
          json.dumps({k: [round(x * 1000) for x in v] for k, v in res.items()}))


main()
