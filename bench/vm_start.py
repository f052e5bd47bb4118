#!/usr/bin/env python3
"""VM start / save / restore: vine against the same QEMU driven by hand, side by side in one run.

Called by bench/vm-start.sh with a running private `vine daemon`. The sides:

* vine: `vine vm start|save|restore` (each timed until the command returns, like a user's script);
* raw: the very command line vine gave QEMU (read from /proc/PID/cmdline, without vine's -S, every
  file of the VM's directory moved elsewhere) started by this script, driven over raw QMP;
* rawcg: the same, by a shell that first joins cgroups set up like vine's (cgroup v1: cpu, cpuacct
  and memory with vine's memory limit, guest memory + 384 MiB), so the table separates what vine's
  daemon adds from what enforcing memory limits costs.

Each round boots every side (start: until the guest's userspace marker VINE-BOOT-OK is on its
serial log; "ready": until the start command returns with QEMU up and the guest running, by hand
until QMP answers, which leaves out the TCG boot and its noise), lets the guests run 2 s, then runs
CYCLES save/restore cycles, each side back to back. While one side boots, saves or restores, the
other guests are paused (a paused guest costs no CPU), so each measurement has the machine to itself:

* save: until the command returns, against raw QMP (stop, migrate to file:, poll query-migrate
  until completed, fsync the file, quit, wait for the process to end);
* restore: until the command returns, against starting the same command line with -S -incoming
  defer, migrate-incoming over QMP, poll until completed, cont.

The order of the sides alternates from round to round and from cycle to cycle. This machine's CPU
speed drifts by up to 30 % over seconds (identical restores by hand take 80 or 115 ms), so the
operations compared run as close together in time as possible: within a cycle the sides save and
restore one right after the other, not a boot (~10 s) apart.

Prints a Markdown table of medians, vine / raw and vine − raw with a 95 % bootstrap interval of
the ratio of medians (each side resampled on its own: robust to the slow outliers this machine
gives either side at random), then the paired differences (start: per round; save and restore: per
cycle; robust to the drift) with a 95 % bootstrap interval of their median, then where a restore's
time goes on each side: QEMU's start until QMP answers, and the load of the state (for vine from
its daemon's debug log, when the daemon runs with RUST_LOG=daemon::actor=debug).
"""

import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time

from qmp_client import Qmp

VINE, SOCK, WORK, KIT = sys.argv[1:5]
ROUNDS, CYCLES = int(sys.argv[5]), int(sys.argv[6])
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


def raw_args(vine_args, vm_dir, raw_dir, fds):
    """vine's QEMU arguments without -S, every file of the VM's directory (QMP and console sockets,
    console log, VNC socket) moved to `raw_dir`, and the files vine passed as descriptors
    (`/proc/self/fd/N`, `-add-fd` sets; `fds` maps N to the file) named by their paths. Returns
    (args, QMP socket, console log)."""
    sets = {}
    out = []
    args = iter(a for a in vine_args if a != "-S")
    for a in args:
        if a == "-add-fd":
            opts = dict(kv.split("=", 1) for kv in next(args).split(","))
            sets[opts["set"]] = fds[int(opts["fd"])]
            continue
        out.append(a)
    for n, path in fds.items():
        out = [a.replace(f"/proc/self/fd/{n}", path) for a in out]
    for s, path in sets.items():
        out = [a.replace(f"/dev/fdset/{s}", path) for a in out]
    out = [a.replace(vm_dir, raw_dir) for a in out]
    qmp = out[out.index("-qmp") + 1].removeprefix("unix:").split(",")[0]
    # vine's serial port goes to its console logger; by hand, QEMU writes the console to a file.
    at = next(i for i, a in enumerate(out) if a.startswith("socket,id=serial0,") or a.startswith("file,id=serial0,"))
    console = f"{raw_dir}/console.log"
    out[at] = f"file,id=serial0,path={console},append=on"
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


def bootstrap_ratio(a, b, n=4000, seed=1):
    """95 % percentile-bootstrap interval of median(a) / median(b), each sample resampled on its
    own (fixed seed: reproducible)."""
    rng = random.Random(seed)
    rs = sorted(statistics.median(rng.choices(a, k=len(a))) / statistics.median(rng.choices(b, k=len(b)))
                for _ in range(n))
    return rs[int(0.025 * n)], rs[int(0.975 * n) - 1]


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def vine_phases(log_path):
    """From the daemon's debug log (the actor logs the time since a control, and a restore, began
    at each step), in ms: for each restore (QEMU start until QMP connected, state load, the whole
    control in the actor), and for each start the whole control in the actor."""
    restores, starts = [], []
    launched = loaded = None
    admitted = at_launch = 0.0
    try:
        lines = open(log_path, errors="replace").read().splitlines()
    except FileNotFoundError:
        return restores, starts
    for line in lines:
        line = ANSI.sub("", line)
        m = re.search(r"ms=([0-9.]+)", line)
        if not m:
            continue
        t = float(m.group(1))
        if "restore: definition loaded and admitted" in line:
            admitted = t
        elif "restore: QEMU launched" in line:
            launched = t - admitted
            at_launch = t
        elif "restore: state loaded, guest continued" in line and launched is not None:
            loaded = (launched, t - at_launch)
            launched = None
        elif re.search(r"restored '[^']*'", line) and loaded is not None:
            restores.append(loaded + (t,))
            loaded = None
        elif re.search(r"started '[^']*'", line):
            starts.append(t)
    return restores, starts


def wait_exit(p, timeout=60):
    p.wait(timeout=timeout)


class Vine:
    """The VM driven through `vine`: each method times one control."""

    name = "vine"

    def __init__(self, console):
        self.console = console
        self.state = f"{os.path.dirname(console)}/state.bin"
        self.argv = None

    def start(self, res):
        off = size(self.console)
        t = time.monotonic()
        vine("vm", "start", VM)
        res["ready_vine"].append(time.monotonic() - t)
        wait_marker(self.console, off)
        res["start_vine"].append(time.monotonic() - t)
        if self.argv is None:
            pid = show()["pid"]
            argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[:-1]
            self.argv = [a.decode() for a in argv]
            # The files vine opened for its QEMU (kernel, initrd, CD/DVDs), by their paths.
            self.fds = {int(n): os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")
                        if int(n) >= 10 and os.path.isfile(os.readlink(f"/proc/{pid}/fd/{n}"))}

    def save_restore(self, res):
        t = time.monotonic()
        vine("vm", "save", VM)
        res["save_vine"].append(time.monotonic() - t)
        res["state_vine"].append(size(self.state))
        t = time.monotonic()
        vine("vm", "restore", VM)
        res["restore_vine"].append(time.monotonic() - t)

    def pause(self):
        vine("vm", "pause", VM)

    def resume(self):
        vine("vm", "resume", VM)

    def stop(self):
        vine("vm", "off", VM)


class ByHand:
    """vine's QEMU command line run by hand (`raw`), or by a shell that first joins a cgroup set up
    like vine's (`rawcg`), driven over QMP by this script."""

    def __init__(self, name, argv, vm_dir, fds):
        self.name = name
        self.wrap = in_cgroup if name == "rawcg" else (lambda a: a)
        d = f"{WORK}/{name}"
        os.makedirs(d, exist_ok=True)
        self.bin = argv[0]
        self.args, self.qmp_path, self.console = raw_args(argv[1:], vm_dir, d, fds)
        self.state = f"{WORK}/{name}-state.bin"
        self.log = open(f"{WORK}/{name}-qemu.log", "ab")
        self.proc = None
        self.qmp = None

    def spawn(self, extra):
        if os.path.exists(self.qmp_path):
            os.remove(self.qmp_path)
        self.proc = subprocess.Popen(self.wrap([self.bin, *self.args, *extra]), stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        RAW_PROCS.append(self.proc)
        self.qmp = Qmp(self.qmp_path)

    def start(self, res):
        off = size(self.console)
        t = time.monotonic()
        self.spawn([])
        res[f"ready_{self.name}"].append(time.monotonic() - t)
        wait_marker(self.console, off)
        res[f"start_{self.name}"].append(time.monotonic() - t)

    def save_restore(self, res):
        if os.path.exists(self.state):
            os.remove(self.state)
        t = time.monotonic()
        self.qmp.cmd("stop")
        self.qmp.cmd("migrate", uri=f"file:{self.state}")
        self.qmp.wait_migration()
        fd = os.open(self.state, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        self.qmp.cmd("quit")
        wait_exit(self.proc)
        res[f"save_{self.name}"].append(time.monotonic() - t)
        res[f"state_{self.name}"].append(size(self.state))
        t = time.monotonic()
        self.spawn(["-S", "-incoming", "defer"])
        t_qmp = time.monotonic()
        self.qmp.cmd("migrate-incoming", uri=f"file:{self.state}")
        self.qmp.wait_migration()
        self.qmp.cmd("cont")
        t_end = time.monotonic()
        res[f"restore_{self.name}"].append(t_end - t)
        # The load ends when the guest runs again, as vine's actor logs it (after `cont`).
        PHASES[self.name].append(((t_qmp - t) * 1000, (t_end - t_qmp) * 1000))

    def pause(self):
        self.qmp.cmd("stop")

    def resume(self):
        self.qmp.cmd("cont")

    def stop(self):
        self.qmp.cmd("quit")
        wait_exit(self.proc)


RAW_PROCS = []
PHASES = {"raw": [], "rawcg": []}


def main():
    # A stopped run still reaps its QEMUs and removes its cgroups (the `finally` below): SIGTERM
    # ends it through that path, and SIGINT works even when a non-interactive shell started the
    # run in the background (which would leave SIGINT ignored).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    vine("vm", "create", VM, "--memory", "256M", "--kernel", f"{KIT}/vmlinuz", "--initrd", f"{KIT}/initrd.img",
         "--append", json.load(open(f"{KIT}/kit.json"))["cmdline"] + " vine.counter=1")
    console = show()["console_log"]
    vm_dir = os.path.dirname(console)
    with_cgroup = make_cgroup()
    names = ["vine", "raw"] + (["rawcg"] if with_cgroup else [])
    res = {f"{op}_{n}": [] for op in ("ready", "start", "save", "restore", "state") for n in names}
    v = Vine(console)
    # vine goes first once, to learn its QEMU command line; that round is not counted.
    v.start(res)
    v.stop()
    for k in res:
        res[k].clear()
    sides = [v] + [ByHand(n, v.argv, vm_dir, v.fds) for n in names[1:]]
    try:
        for r in range(ROUNDS):
            order = sides if r % 2 == 0 else sides[::-1]
            for i, s in enumerate(order):
                for o in order[:i]:
                    o.pause()
                s.start(res)
                for o in order[:i]:
                    o.resume()
            time.sleep(2)
            for c in range(CYCLES):
                for s in (order if c % 2 == 0 else order[::-1]):
                    others = [o for o in sides if o is not s]
                    for o in others:
                        o.pause()
                    s.save_restore(res)
                    for o in others:
                        o.resume()
            for s in sides:
                s.stop()
            print(f"round {r + 1}/{ROUNDS}: " + ", ".join(
                f"{k} {v[-1] * 1000:.0f} ms" for k, v in res.items() if not k.startswith("state")), file=sys.stderr)
    finally:
        for p in RAW_PROCS:  # only after a failure: a finished side has reaped its QEMU
            if p.poll() is None:
                p.kill()
                p.wait()
        remove_cgroup()  # empty only now
    vine("vm", "delete", VM)

    print("| operation | by hand (median) | by hand in a cgroup like vine's | vine (median) | vine / by hand "
          "(95 % interval) | vine − by hand | vine / by hand in cgroup | vine − by hand in cgroup |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    ops = (("ready", "start → QEMU ready, guest running"), ("start", "start → userspace marker"),
           ("save", "save (256 MiB guest)"), ("restore", "restore → running"))
    for op, label in ops:
        raw = statistics.median(res[f"{op}_raw"])
        v = statistics.median(res[f"{op}_vine"])
        if res.get(f"{op}_rawcg"):
            cg = statistics.median(res[f"{op}_rawcg"])
            cg_tail = f"{v / cg:.3f} | {(v - cg) * 1000:+.0f} ms"
            cg_col = f"{cg * 1000:.0f} ms"
        else:
            cg_col, cg_tail = "n/a (not cgroup v1)", "n/a | n/a"
        lo, hi = bootstrap_ratio(res[f"{op}_vine"], res[f"{op}_raw"])
        print(f"| {label} | {raw * 1000:.0f} ms | {cg_col} | {v * 1000:.0f} ms | {v / raw:.3f} ({lo:.3f} … {hi:.3f}) | "
              f"{(v - raw) * 1000:+.0f} ms | {cg_tail} |")
    print("\nPaired (start: the sides of one round; save and restore: the sides of one cycle, back to "
          "back): medians of vine − by hand and of (vine − by hand) / by hand, each with a 95 % bootstrap "
          "interval.\n")
    print("| operation | vine − by hand | relative | vine − by hand in cgroup | relative |")
    print("|---|---:|---:|---:|---:|")
    for op, label in ops:
        cells = []
        for other in ("raw", "rawcg"):
            pairs = list(zip(res[f"{op}_vine"], res.get(f"{op}_{other}", [])))
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
    vine_restores, vine_starts = vine_phases(f"{WORK}/daemon.log")
    phases = dict(PHASES, vine=vine_restores)
    print("\nWhere a restore's time goes (medians; QEMU start: spawn until QMP answers; load: migrate-incoming "
          "until the guest runs again, `cont` answered):\n")
    print("| side | QEMU start | load of the state | samples |")
    print("|---|---:|---:|---:|")
    for n in names:
        if phases.get(n):
            print(f"| {n} | {statistics.median(p[0] for p in phases[n]):.1f} ms | "
                  f"{statistics.median(p[1] for p in phases[n]):.1f} ms | {len(phases[n])} |")
    # The load is QEMU's own part, and this host slows it at random on either side (free memory is
    # handed back to the hypervisor, so QEMU's first touch of it may be slow): each side's restore
    # less its own load leaves QEMU's start and what the side adds, without that noise.
    if vine_restores and len(vine_restores) >= len(res["restore_vine"]):
        v_less = [r * 1000 - p[1] for r, p in zip(res["restore_vine"], vine_restores[-len(res["restore_vine"]):])]
        r_less = [r * 1000 - p[1] for r, p in zip(res["restore_raw"], PHASES["raw"])]
        d = [a - b for a, b in zip(v_less, r_less)]
        lo, hi = bootstrap_median(d)
        base = statistics.median(res["restore_raw"]) * 1000
        print(f"\nRestore less its load, paired: vine {statistics.median(v_less):.1f} ms, by hand "
              f"{statistics.median(r_less):.1f} ms; vine − by hand median {statistics.median(d):+.2f} ms "
              f"({lo:+.2f} … {hi:+.2f}), {statistics.median(d) / base * 100:+.1f} % of by hand's median restore "
              f"({lo / base * 100:+.1f} … {hi / base * 100:+.1f} %).")
    for op, key, inside in (("start", "ready_vine", vine_starts), ("restore", "restore_vine", [p[2] for p in vine_restores])):
        # The first start (learning the command line) is not among the samples.
        inside = inside[-len(res[key]):]
        if len(inside) == len(res[key]):
            outside = [r * 1000 - a for r, a in zip(res[key], inside)]
            print(f"\nvine's {op}: in its VM's actor median {statistics.median(inside):.1f} ms; outside it (the CLI "
                  f"process, the HTTP request and answer, the API's hand-over to the actor) median "
                  f"{statistics.median(outside):.1f} ms.")
    states = ", ".join(f"{n} {statistics.median(res[f'state_{n}']) / 2**20:.1f} MiB"
                       for n in names if res[f"state_{n}"])
    print(f"\nSaved state files (median): {states}.")
    print(f"\n{ROUNDS} rounds of {CYCLES} save/restore cycles; every sample (ms): " +
          json.dumps({k: [round(x * 1000) for x in v] for k, v in res.items() if not k.startswith("state")}))
    print("\nEvery restore's phases (ms; QEMU start, load; for vine also the whole control in its actor): " +
          json.dumps({n: [[round(x, 1) for x in p] for p in phases[n]] for n in names if phases.get(n)}))


main()
